"""Ship the process's log lines to an OTLP/HTTP collector and/or Loki, never at a request's cost.

`install(settings, process)` adds one handler per configured sink to the root logger (next to
the stdout handler `nespay.logging.configure_logging` sets up) and returns a `LogShipping`
whose `shutdown()` flushes for a bounded time and stops. Both sinks render the record with
the stdout handler's formatter, so what is shipped is the JSON line on stdout:

- OTLP (`OTLP_LOGS_ENDPOINT`, e.g. `http://localhost:4318/v1/logs`): OpenTelemetry SDK
  `LoggerProvider` + `BatchLogRecordProcessor` + `OTLPLogExporter`. Body: the event; attributes:
  the line's other fields (`request_id`, `logger`, bound fields…); resource: service, version,
  environment, cluster, process. The SDK is imported only when this sink is configured.
- Loki (`LOKI_URL`): a bounded queue and one daemon thread pushing batches as JSON to
  `{LOKI_URL}/loki/api/v1/push`, labels `service`, `process`, `environment`, `level` (and
  `cluster` when set).

`emit` only renders and enqueues: when a queue is full the line is dropped and counted
(`nespay_log_lines_dropped_total{sink,reason}`); accepted lines are counted in
`nespay_log_lines_shipped_total{sink}`. A sink that is down, refuses or hangs costs its own
thread a bounded timeout, never the caller.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import orjson
import structlog

from nespay.config import Settings
from nespay.logging import SHARED_PROCESSORS
from nespay.metrics import LOG_LINES_DROPPED, LOG_LINES_SHIPPED
from nespay.requestid import current_request_id

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import LoggerProvider

_log = logging.getLogger(__name__)

# Records from these loggers or threads are never shipped: they are the shippers' own
# diagnostics, and shipping them could feed back into the sink that is failing.
_INTERNAL_LOGGERS = ("opentelemetry", "urllib3", "requests", __name__)
_INTERNAL_THREADS = ("OtelBatch", "nespay-logship")
_LINE_ATTR = "_nespay_json_line"
_DEFAULT_SHUTDOWN_TIMEOUT = 3.0
_WAKE = object()

# Python level → (OTel severity number, OTel severity text).
_SEVERITY = {
    logging.DEBUG: (5, "DEBUG"),
    logging.INFO: (9, "INFO"),
    logging.WARNING: (13, "WARN"),
    logging.ERROR: (17, "ERROR"),
    logging.CRITICAL: (21, "FATAL"),
}


# --- shared --------------------------------------------------------------------------------
def _serialize(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def _find_formatter() -> logging.Formatter:
    """The stdout handler's formatter (same JSON line), or an equivalent one."""
    for handler in logging.getLogger().handlers:
        if getattr(handler, "_nespay", False) and handler.formatter is not None:
            return handler.formatter
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=SHARED_PROCESSORS,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_serialize),
        ],
    )


class _Renderer:
    """Formats a record once for all shipping handlers (the line is cached on the record)."""

    def __init__(self, formatter: logging.Formatter) -> None:
        self.formatter = formatter

    def __call__(self, record: logging.LogRecord) -> str:
        line = record.__dict__.get(_LINE_ATTR)
        if line is None:
            line = self.formatter.format(record)
            record.__dict__[_LINE_ATTR] = line
        return line


class _NotInternal(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(_INTERNAL_LOGGERS):
            return False
        thread = record.threadName or threading.current_thread().name
        return not thread.startswith(_INTERNAL_THREADS)


class _ShippingHandler(logging.Handler):
    sink = ""

    def __init__(self, render: _Renderer) -> None:
        super().__init__()
        self._render = render
        self._stopping = False
        self._deadline = float("inf")
        self.addFilter(_NotInternal())
        self._dropped_full = LOG_LINES_DROPPED.labels(self.sink, "queue_full")
        self._dropped_error = LOG_LINES_DROPPED.labels(self.sink, "error")
        self._dropped_shutdown = LOG_LINES_DROPPED.labels(self.sink, "shutdown")
        self._dropped_send = LOG_LINES_DROPPED.labels(self.sink, "send_failed")
        self._shipped = LOG_LINES_SHIPPED.labels(self.sink)

    def stop(self, deadline: float) -> None:
        """Stop accepting lines and start flushing what is queued until `deadline` (monotonic)."""
        raise NotImplementedError

    def wait(self) -> None:
        """Wait for the flush started by `stop`, at most until its deadline."""
        raise NotImplementedError

    def close(self) -> None:
        # Also reached from `logging.shutdown()` at interpreter exit.
        if not self._stopping:
            self.stop(time.monotonic() + _DEFAULT_SHUTDOWN_TIMEOUT)
        self.wait()
        super().close()


# --- Loki ------------------------------------------------------------------------------------
class LokiHandler(_ShippingHandler):
    """Queue lines for Loki; one daemon thread pushes them in batches.

    `emit` never blocks: when the queue is full the line is dropped and counted. A batch that
    fails (connection error, timeout, 429, 5xx) is retried `retries` times with exponential
    backoff, then dropped; a 4xx other than 429 is dropped at once (Loki will not take it).
    """

    sink = "loki"

    def __init__(
        self,
        url: str,
        labels: dict[str, str],
        render: _Renderer,
        *,
        queue_size: int = 4096,
        batch_size: int = 500,
        max_batch_bytes: int = 1_000_000,
        flush_interval: float = 1.0,
        timeout: float = 3.0,
        retries: int = 2,
        backoff: float = 0.5,
    ) -> None:
        super().__init__(render)
        self.url = push_url(url)
        self.labels = dict(labels)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._batch_size = batch_size
        self._max_batch_bytes = max_batch_bytes
        self._flush_interval = flush_interval
        self._timeout = timeout
        self._retries = retries
        self._backoff = backoff
        self._stop_event = threading.Event()
        self._last_warning = 0.0
        self._thread = threading.Thread(target=self._run, name="nespay-logship-loki", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self._stopping:
                self._dropped_shutdown.inc()
                return
            line = self._render(record)
            item = (record.levelname.lower(), str(int(record.created * 1e9)), line)
            self._queue.put_nowait(item)
        except queue.Full:
            self._dropped_full.inc()
        except Exception:  # a log call must never fail because of shipping
            self._dropped_error.inc()

    def stop(self, deadline: float) -> None:
        if self._stopping:
            return
        self._deadline = deadline
        self._stopping = True
        self._stop_event.set()
        with contextlib.suppress(queue.Full):  # when full, the worker is busy anyway
            self._queue.put_nowait(_WAKE)  # wake the worker if it waits for lines

    def wait(self) -> None:
        self._thread.join(max(0.0, self._deadline - time.monotonic()))

    # -- worker thread --------------------------------------------------------------------
    def _run(self) -> None:
        with httpx.Client(timeout=self._timeout) as client:
            while True:
                batch = self._collect()
                if batch:
                    self._send(client, batch)
                elif self._stopping:
                    break
                if self._stopping and time.monotonic() >= self._deadline:
                    self._drop_rest()
                    break

    def _collect(self) -> list[tuple[str, str, str]]:
        batch: list[tuple[str, str, str]] = []
        size = 0
        try:
            item = self._queue.get_nowait() if self._stopping else self._queue.get()
        except queue.Empty:
            return batch
        flush_at = time.monotonic() + self._flush_interval
        while True:
            if item is not _WAKE:
                batch.append(item)
                size += len(item[2])
                if len(batch) >= self._batch_size or size >= self._max_batch_bytes:
                    return batch
            remaining = flush_at - time.monotonic()
            try:
                if self._stopping or remaining <= 0:
                    item = self._queue.get_nowait()
                else:
                    item = self._queue.get(timeout=remaining)
            except queue.Empty:
                return batch

    def _send(self, client: httpx.Client, batch: list[tuple[str, str, str]]) -> None:
        body = self._payload(batch)
        problem = ""
        for attempt in range(self._retries + 1):
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                self._dropped_shutdown.inc(len(batch))
                return
            try:
                response = client.post(
                    self.url,
                    content=body,
                    headers={"Content-Type": "application/json"},
                    timeout=min(self._timeout, remaining),
                )
            except Exception as exc:  # any transport failure is retried
                problem = type(exc).__name__
            else:
                if response.is_success:
                    self._shipped.inc(len(batch))
                    return
                problem = f"HTTP {response.status_code}"
                if response.status_code < 500 and response.status_code != 429:
                    break  # Loki refuses this batch; retrying will not change its mind
            if attempt < self._retries:
                # Back off; a shutdown cuts the wait short (the deadline still bounds retries).
                self._stop_event.wait(self._backoff * 2**attempt)
        self._dropped_send.inc(len(batch))
        self._warn(f"loki push failed ({problem}); dropped {len(batch)} log lines")

    def _payload(self, batch: Sequence[tuple[str, str, str]]) -> bytes:
        streams: dict[str, list[list[str]]] = {}
        for level, ts, line in batch:
            streams.setdefault(level, []).append([ts, line])
        return orjson.dumps(
            {
                "streams": [
                    {"stream": {**self.labels, "level": level}, "values": sorted(values)}
                    for level, values in streams.items()
                ]
            }
        )

    def _drop_rest(self) -> None:
        dropped = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _WAKE:
                dropped += 1
        if dropped:
            self._dropped_shutdown.inc(dropped)

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_warning >= 60:  # one line a minute while Loki is unhappy
            self._last_warning = now
            _log.warning(message)


def push_url(url: str) -> str:
    """`LOKI_URL` is Loki's base URL; accept the full push URL as well."""
    url = url.rstrip("/")
    return url if url.endswith("/loki/api/v1/push") else url + "/loki/api/v1/push"


# --- OTLP ------------------------------------------------------------------------------------
def otlp_logs_url(url: str) -> str:
    """`OTLP_LOGS_ENDPOINT` is the full logs URL; a bare collector URL gets `/v1/logs`."""
    return url.rstrip("/") + "/v1/logs" if urlsplit(url).path in ("", "/") else url


def _attribute(value: Any) -> Any:
    if isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else str(value)
    return _serialize(value)


class OtlpHandler(_ShippingHandler):
    """Hand records to an OpenTelemetry `LoggerProvider` (batching and export happen there).

    Used instead of the SDK's `LoggingHandler` (deprecated in opentelemetry-sdk 1.45, and it
    would put structlog's internals, not the line's fields, into the attributes).
    """

    sink = "otlp"

    def __init__(
        self,
        provider: LoggerProvider,
        exporter: _CountingExporter,
        pending: Callable[[], int],
        max_queue: int,
        render: _Renderer,
    ) -> None:
        super().__init__(render)
        self.provider = provider
        self._exporter = exporter
        self._otel_logger = provider.get_logger("nespay")
        self._pending = pending
        self._max_queue = max_queue
        self._stopper: threading.Thread | None = None
        from opentelemetry._logs import SeverityNumber

        self._severity = {
            level: (SeverityNumber(number), text) for level, (number, text) in _SEVERITY.items()
        }
        self._default_severity = (SeverityNumber.INFO, "INFO")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self._stopping:
                self._dropped_shutdown.inc()
                return
            if self._pending() >= self._max_queue:
                # The SDK would drop the oldest line and log a warning per line: count instead.
                self._dropped_full.inc()
                return
            fields = orjson.loads(self._render(record))
            if not isinstance(fields, dict):
                fields = {"event": fields}
            body = fields.pop("event", None)
            if body is None:
                body = record.getMessage() if isinstance(record.msg, str) else ""
            fields.pop("level", None)
            fields.pop("time", None)
            if "exception" in fields:
                fields["exception.stacktrace"] = fields.pop("exception")
            if "request_id" not in fields:
                request_id = current_request_id()
                if request_id:
                    fields["request_id"] = request_id
            number, text = self._severity.get(record.levelno, self._default_severity)
            self._otel_logger.emit(
                timestamp=int(record.created * 1e9),
                observed_timestamp=time.time_ns(),
                severity_number=number,
                severity_text=text,
                body=body if isinstance(body, str) else _serialize(body),
                attributes={k: _attribute(v) for k, v in fields.items() if v is not None},
            )
        except Exception:  # a log call must never fail because of shipping
            self._dropped_error.inc()

    def stop(self, deadline: float) -> None:
        if self._stopping:
            return
        self._deadline = deadline
        self._stopping = True
        # `LoggerProvider.shutdown` drains the queue through the exporter and may take long
        # against a hanging collector: run it aside and wait at most until the deadline.
        self._stopper = threading.Thread(
            target=self.provider.shutdown, name="nespay-logship-otlp-stop", daemon=True
        )
        self._stopper.start()

    def wait(self) -> None:
        if self._stopper is None:
            return
        self._stopper.join(max(0.0, self._deadline - time.monotonic()))
        if self._stopper.is_alive():
            # Out of time: whatever the SDK still holds is dropped (and counted) right away.
            self._exporter.abort()


class _CountingExporter:
    """Wraps the OTLP exporter: counts shipped/failed lines; after `abort` it fails at once.

    Duck-types the SDK's `LogRecordExporter` (export / shutdown / force_flush), which is all
    `BatchLogRecordProcessor` calls.
    """

    def __init__(self, inner: Any, success: Any, failure: Any) -> None:
        self._inner = inner
        self._success = success
        self._failure = failure
        self._aborted = False
        self._closed = False
        self._lock = threading.Lock()
        self._shipped = LOG_LINES_SHIPPED.labels("otlp")
        self._failed = LOG_LINES_DROPPED.labels("otlp", "send_failed")
        self._dropped_shutdown = LOG_LINES_DROPPED.labels("otlp", "shutdown")

    def export(self, batch: Sequence[Any]) -> Any:
        if self._aborted:
            self._dropped_shutdown.inc(len(batch))
            return self._failure
        try:
            result = self._inner.export(batch)
        except Exception:  # counted as failed like any other failure
            result = self._failure
        if result == self._success:
            self._shipped.inc(len(batch))
        else:
            self._failed.inc(len(batch))
        return result

    def abort(self) -> None:
        self._aborted = True
        self.shutdown()  # also interrupts the inner exporter's retry backoff

    def shutdown(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(Exception):  # best effort on the way out
            self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _otlp_handler(
    settings: Settings,
    process: str,
    render: _Renderer,
    *,
    queue_size: int,
    batch_size: int,
    flush_interval: float,
    timeout: float,
) -> OtlpHandler:
    # Imported here: processes without an OTLP endpoint do not load the SDK.
    import socket

    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExportResult
    from opentelemetry.sdk.resources import Resource

    environment = settings.environment or settings.app_env
    attributes: dict[str, str] = {
        "service.name": settings.service_name,
        "service.version": settings.service_version,
        "deployment.environment": environment,
        "deployment.environment.name": environment,
        "process": process,
        "host.name": socket.gethostname(),
    }
    if settings.cluster_name:
        attributes["k8s.cluster.name"] = settings.cluster_name
        attributes["cluster"] = settings.cluster_name
    exporter = _CountingExporter(
        OTLPLogExporter(endpoint=otlp_logs_url(settings.otlp_logs_endpoint or ""), timeout=timeout),
        LogRecordExportResult.SUCCESS,
        LogRecordExportResult.FAILURE,
    )
    processor = BatchLogRecordProcessor(
        exporter,
        schedule_delay_millis=flush_interval * 1000,
        max_export_batch_size=min(batch_size, queue_size),
        max_queue_size=queue_size,
    )
    # Our `shutdown` bounds the flush; the SDK's own at-exit hook would wait up to 30 s.
    provider = LoggerProvider(resource=Resource.create(attributes), shutdown_on_exit=False)
    provider.add_log_record_processor(processor)
    # The SDK's queue (a bounded deque) is not public; peek at its length when it is there.
    sdk_queue = getattr(getattr(processor, "_batch_processor", None), "_queue", None)
    pending: Callable[[], int] = (lambda: len(sdk_queue)) if sdk_queue is not None else (lambda: 0)
    return OtlpHandler(provider, exporter, pending, queue_size, render)


# --- install ---------------------------------------------------------------------------------
class LogShipping:
    """The handlers `install` added; `shutdown()` flushes them (bounded) and detaches them."""

    def __init__(self, handlers: Sequence[_ShippingHandler]) -> None:
        self.handlers: tuple[_ShippingHandler, ...] = tuple(handlers)
        self._lock = threading.Lock()
        self._done = False

    @property
    def sinks(self) -> tuple[str, ...]:
        return tuple(handler.sink for handler in self.handlers)

    def shutdown(self, timeout: float = _DEFAULT_SHUTDOWN_TIMEOUT) -> None:
        """Flush queued lines for at most `timeout` seconds (all sinks together), then stop.

        Safe to call more than once. Lines still queued at the deadline are dropped (counted).
        """
        with self._lock:
            if self._done:
                return
            self._done = True
        root = logging.getLogger()
        for handler in self.handlers:
            root.removeHandler(handler)
        deadline = time.monotonic() + timeout
        for handler in self.handlers:
            handler.stop(deadline)
        for handler in self.handlers:
            handler.wait()
        for handler in self.handlers:
            handler.close()


_current: LogShipping | None = None
_install_lock = threading.Lock()


def install(
    settings: Settings,
    process: str,
    *,
    queue_size: int = 4096,
    batch_size: int = 500,
    flush_interval: float = 1.0,
    timeout: float = 3.0,
) -> LogShipping:
    """Add the configured shipping handlers to the root logger.

    Call after `configure_logging` (its formatter is reused). A previous `install` in this
    process is shut down first. `queue_size` bounds the lines held per sink, `batch_size` and
    `flush_interval` (seconds) shape the batches, `timeout` (seconds) bounds each export.
    """
    global _current
    with _install_lock:
        if _current is not None:
            _current.shutdown()
            _current = None
        render = _Renderer(_find_formatter())
        handlers: list[_ShippingHandler] = []
        if settings.otlp_logs_endpoint:
            handlers.append(
                _otlp_handler(
                    settings,
                    process,
                    render,
                    queue_size=queue_size,
                    batch_size=batch_size,
                    flush_interval=flush_interval,
                    timeout=timeout,
                )
            )
        if settings.loki_url:
            labels = {
                "service": settings.service_name,
                "process": process,
                "environment": settings.environment or settings.app_env,
            }
            if settings.cluster_name:
                labels["cluster"] = settings.cluster_name
            handlers.append(
                LokiHandler(
                    settings.loki_url,
                    labels,
                    render,
                    queue_size=queue_size,
                    batch_size=batch_size,
                    flush_interval=flush_interval,
                    timeout=timeout,
                )
            )
        root = logging.getLogger()
        for handler in handlers:
            root.addHandler(handler)
        _current = LogShipping(handlers)
        return _current
