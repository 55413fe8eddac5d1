// Nespay checkout: the countdown, copy buttons and live status (Server-Sent Events, else
// polling). Without JavaScript the page works as is and refreshes itself while live.
(function () {
  "use strict";
  var body = document.body;
  var data = body.dataset;
  document.documentElement.classList.add("js");

  function announce(text) {
    var region = document.getElementById("announce");
    if (region) { region.textContent = ""; window.setTimeout(function () { region.textContent = text; }, 50); }
  }

  // Copy buttons (shown only where the clipboard can be written).
  if (navigator.clipboard && window.isSecureContext !== false) {
    document.querySelectorAll("button.copy").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        var target = document.getElementById(button.dataset.copyTarget);
        if (!target) { return; }
        navigator.clipboard.writeText(target.textContent.trim()).then(function () {
          button.textContent = data.copied;
          announce(data.copied);
          window.setTimeout(function () { button.textContent = data.copy; }, 2000);
        });
      });
    });
  }

  // Countdown to expiry.
  var countdown = document.getElementById("countdown");
  function tick() {
    if (!countdown) { return; }
    var left = Math.max(0, Math.floor((Date.parse(countdown.getAttribute("datetime")) - Date.now()) / 1000));
    var h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
    var text = (h > 0 ? h + ":" + String(m).padStart(2, "0") : String(m)) + ":" + String(s).padStart(2, "0");
    countdown.textContent = text;
  }
  if (countdown) { tick(); window.setInterval(tick, 1000); }

  // Live status.
  function apply(state) {
    var status = document.getElementById("status");
    if (data.status !== state.status || status.textContent !== state.message) {
      status.textContent = state.message;
      status.className = "status-" + state.status;
    }
    data.status = state.status;
    document.getElementById("payable").hidden = !state.payable;
    var back = document.getElementById("return");
    if (back && back.querySelector("a")) {
      back.hidden = !(state.status === "paid" || state.status === "confirmed");
    }
    (state.options || []).forEach(function (option, index) {
      var amount = document.getElementById("amount-" + index);
      var qr = document.getElementById("qr-" + index);
      if (amount && amount.textContent !== option.amount_due) {
        amount.textContent = option.amount_due;
      }
      if (qr && qr.dataset.uri !== option.uri) {
        qr.dataset.uri = option.uri;
        qr.src = qr.src.split("&v=")[0] + "&v=" + encodeURIComponent(option.amount_due);
      }
    });
    if (!state.live && stream) { stream.close(); }
  }

  var stream = null;
  function poll() {
    // No event stream: ask the public view every 5 s and rebuild the page on a change.
    var last = null;
    window.setInterval(function () {
      fetch(data.poll, { headers: { "Accept": "application/json" } }).then(function (r) {
        return r.ok ? r.json() : null;
      }).then(function (view) {
        if (!view) { return; }
        var seen = view.status + "/" + view.amount_due;
        if (last !== null && seen !== last) { window.location.reload(); }
        last = seen;
      }).catch(function () {});
    }, 5000);
  }
  if (data.live === "true") {
    if (window.EventSource) {
      var failures = 0;
      stream = new EventSource(data.events);
      stream.addEventListener("invoice", function (event) { failures = 0; apply(JSON.parse(event.data)); });
      stream.onerror = function () {
        failures += 1;
        if (failures >= 5) { stream.close(); poll(); }
      };
    } else {
      poll();
    }
  }
})();
