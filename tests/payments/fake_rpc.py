"""Local JSON-RPC endpoints that misbehave, for the scanner's resilience tests: a server that
answers every request with HTTP 429, and a proxy in front of a real node that garbles chosen
answers once. They run in a thread (the test itself blocks on anvil calls), on a free
loopback port."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson

Answer = tuple[int, dict[str, str], bytes]


class FakeRpc:
    """A loopback HTTP server answering each POST with `respond(body)`."""

    def __init__(self, respond: Callable[[bytes], Answer]) -> None:
        self.respond = respond
        self.requests = 0
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with fake._lock:
                    fake.requests += 1
                status, headers, content = fake.respond(body)
                self.send_response(status)
                for name, value in {"content-type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@contextmanager
def serve(respond: Callable[[bytes], Answer]) -> Iterator[FakeRpc]:
    fake = FakeRpc(respond)
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()
        thread.join(timeout=5)


def rate_limited(body: bytes) -> Answer:
    """Every request: 429 Too Many Requests, come back in a second."""
    return 429, {"retry-after": "1"}, b'{"error": "rate limited"}'


# A garbling takes (request calls, the node's raw answer) and returns the garbled answer, or
# None when this exchange is not one it applies to (it then stays armed for the next one).
Garbling = Callable[[list[dict[str, Any]], bytes], bytes | None]


def _logs_answer(calls: list[dict[str, Any]], raw: bytes) -> tuple[list[Any], int] | None:
    """The node's batch answer and the position of the `eth_getLogs` answer in it."""
    ids = [call["id"] for call in calls if call.get("method") == "eth_getLogs"]
    if not ids:
        return None
    answers = orjson.loads(raw)
    position = next(i for i, answer in enumerate(answers) if answer.get("id") == ids[0])
    return answers, position


def truncated_json(calls: list[dict[str, Any]], raw: bytes) -> bytes | None:
    """The answer of a batch with `eth_getLogs`, cut in the middle: not JSON."""
    if _logs_answer(calls, raw) is None:
        return None
    return raw[: len(raw) // 2]


def garbled_log_data(calls: list[dict[str, Any]], raw: bytes) -> bytes | None:
    """The first log of a non-empty `eth_getLogs` answer gets `data` that is not hex."""
    found = _logs_answer(calls, raw)
    if found is None or not found[0][found[1]].get("result"):
        return None
    answers, position = found
    answers[position]["result"][0]["data"] = "0xnot-hex-at-all"
    return orjson.dumps(answers)


def non_object_log(calls: list[dict[str, Any]], raw: bytes) -> bytes | None:
    """An `eth_getLogs` answer whose list starts with a string instead of a log object."""
    found = _logs_answer(calls, raw)
    if found is None:
        return None
    answers, position = found
    answers[position]["result"] = ["garbage", *(answers[position]["result"] or [])]
    return orjson.dumps(answers)


class GarblingProxy:
    """Forwards to `target`; each armed garbling spoils the first exchange it applies to."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.armed: list[tuple[str, Garbling]] = []
        self.fired: list[str] = []
        self._lock = threading.Lock()

    def arm(self, garbling: Garbling) -> None:
        with self._lock:
            self.armed.append((garbling.__name__, garbling))

    def __call__(self, body: bytes) -> Answer:
        response = httpx.post(
            self.target, content=body, headers={"content-type": "application/json"}, timeout=10
        )
        raw = response.content
        calls = orjson.loads(body)
        calls = calls if isinstance(calls, list) else [calls]
        with self._lock:
            for index, (name, garbling) in enumerate(self.armed):
                garbled = garbling(calls, raw)
                if garbled is not None:
                    self.armed.pop(index)
                    self.fired.append(name)
                    return response.status_code, {}, garbled
        return response.status_code, {}, raw


class LaggingReplica:
    """Forwards to `target` like a load-balanced provider whose `eth_getLogs` lands on a
    replica that lags while `lagging`: a range query answers an empty list (what such a node
    says for blocks it does not have yet), a query by block hash answers "unknown block"."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.lagging = True
        self.hidden = 0  # range answers emptied
        self.by_hash = 0  # block-hash queries seen

    def __call__(self, body: bytes) -> Answer:
        response = httpx.post(
            self.target, content=body, headers={"content-type": "application/json"}, timeout=10
        )
        calls = orjson.loads(body)
        batch = isinstance(calls, list)
        calls = calls if batch else [calls]
        answers = orjson.loads(response.content)
        answers = answers if isinstance(answers, list) else [answers]
        by_id = {answer.get("id"): answer for answer in answers}
        for call in calls:
            if call.get("method") != "eth_getLogs" or not self.lagging:
                continue
            answer = by_id[call["id"]]
            if "blockHash" in call["params"][0]:
                self.by_hash += 1
                answer.pop("result", None)
                answer["error"] = {"code": -32000, "message": "unknown block"}
            elif answer.get("result"):
                self.hidden += 1
                answer["result"] = []
        return response.status_code, {}, orjson.dumps(answers if batch else answers[0])
