"""Log shipping against real local receivers: an OTLP/HTTP one decoding protobuf, a Loki one
parsing the JSON push, a closed port and a server that accepts and never answers."""

from __future__ import annotations

import gzip
import json
import logging
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import structlog
from fastapi import FastAPI
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from prometheus_client import REGISTRY

from nespay import logshipping
from nespay.config import Settings
from nespay.logging import configure_logging
from nespay.requestid import RequestIdMiddleware

FAST = {"flush_interval": 0.05, "timeout": 1.0}


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "app_env": "test",
        "log_level": "info",
        "otlp_logs_endpoint": None,
        "loki_url": None,
        "service_name": "nespay-test",
        "cluster_name": None,
        "environment": None,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def dropped(sink: str, reason: str | None = None) -> float:
    reasons = [reason] if reason else ["queue_full", "send_failed", "shutdown", "error"]
    return sum(metric("nespay_log_lines_dropped_total", sink=sink, reason=r) for r in reasons)


# --- receivers -------------------------------------------------------------------------------
class Receiver:
    """A threaded HTTP server recording POST bodies; answers `statuses` in turn, then 200/204."""

    def __init__(self, kind: str, statuses: list[int] | None = None) -> None:
        self.kind = kind
        self.statuses = list(statuses or [])
        self.bodies: list[bytes] = []
        self.paths: list[str] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                with receiver.lock:
                    receiver.paths.append(self.path)
                    status = receiver.statuses.pop(0) if receiver.statuses else 0
                    if not status:
                        receiver.bodies.append(body)
                if status:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif receiver.kind == "otlp":
                    payload = ExportLogsServiceResponse().SerializeToString()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/x-protobuf")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                else:
                    self.send_response(204)
                    self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # OTLP
    def otlp_records(self) -> list[tuple[dict[str, Any], Any]]:
        """(resource attributes, LogRecord) for every record received."""
        out = []
        for body in self.bodies:
            request = ExportLogsServiceRequest()
            request.ParseFromString(body)
            for resource_logs in request.resource_logs:
                resource = {a.key: _any(a.value) for a in resource_logs.resource.attributes}
                for scope_logs in resource_logs.scope_logs:
                    out.extend((resource, record) for record in scope_logs.log_records)
        return out

    # Loki
    def loki_lines(self) -> list[tuple[dict[str, str], str, dict[str, Any]]]:
        """(stream labels, timestamp, parsed line) for every line received."""
        out = []
        for body in self.bodies:
            for stream in json.loads(body)["streams"]:
                for ts, line in stream["values"]:
                    out.append((stream["stream"], ts, json.loads(line)))
        return out


def _any(value: Any) -> Any:
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


def attributes(record: Any) -> dict[str, Any]:
    return {a.key: _any(a.value) for a in record.attributes}


@pytest.fixture
def otlp_receiver() -> Iterator[Receiver]:
    receiver = Receiver("otlp")
    yield receiver
    receiver.close()


@pytest.fixture
def loki_receiver() -> Iterator[Receiver]:
    receiver = Receiver("loki")
    yield receiver
    receiver.close()


@pytest.fixture
def refused_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there any more: connections are refused
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def hanging_url() -> Iterator[str]:
    sock = socket.create_server(("127.0.0.1", 0), backlog=64)  # listens, never accepts or answers
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Leave the root logger and structlog as the test found them."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    config = structlog.get_config()
    try:
        yield
    finally:
        for handler in set(root.handlers) - set(handlers):
            handler.close()  # a shipping handler's close() is a bounded flush and stop
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.configure(**config)
        structlog.contextvars.clear_contextvars()


def start(settings: Settings, **options: Any) -> logshipping.LogShipping:
    configure_logging(settings, "api")
    return logshipping.install(settings, "api", **options)


def noisy_app(lines: int) -> FastAPI:
    app = FastAPI()
    log = structlog.get_logger("nespay.test.app")

    @app.get("/noisy")
    async def noisy() -> dict[str, int]:
        for number in range(lines):
            log.info("noisy_line", number=number)
        log.error("noisy_done", lines=lines)
        return {"lines": lines}

    app.add_middleware(RequestIdMiddleware)
    return app


async def call(app: FastAPI, path: str, **kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path, **kwargs)


# --- OTLP ------------------------------------------------------------------------------------
def test_otlp_ships_structured_records(otlp_receiver: Receiver) -> None:
    settings = make_settings(
        otlp_logs_endpoint=otlp_receiver.url + "/v1/logs",
        cluster_name="eu-1",
        service_version="9.9",
    )
    shipped_before = metric("nespay_log_lines_shipped_total", sink="otlp")
    shipping = start(settings, **FAST)
    assert shipping.sinks == ("otlp",)

    structlog.contextvars.bind_contextvars(request_id="req-otlp-000001")
    structlog.get_logger("nespay.test").info("invoice_created", invoice_id="inv_1", amount=12.5)
    logging.getLogger("thirdparty").warning("plain %s message", "stdlib")
    structlog.contextvars.unbind_contextvars("request_id")
    structlog.get_logger("nespay.test").info("after_request", password="hunter2")
    logging.getLogger("opentelemetry.test").error("internal diagnostics are not shipped")
    shipping.shutdown()

    assert otlp_receiver.paths and set(otlp_receiver.paths) == {"/v1/logs"}
    records = otlp_receiver.otlp_records()
    by_body = {record.body.string_value: (resource, record) for resource, record in records}
    assert set(by_body) == {"invoice_created", "plain stdlib message", "after_request"}

    resource, record = by_body["invoice_created"]
    assert resource["service.name"] == "nespay-test"
    assert resource["service.version"] == "9.9"
    assert resource["deployment.environment"] == "test"
    assert resource["k8s.cluster.name"] == "eu-1"
    assert resource["process"] == "api"
    attrs = attributes(record)
    assert attrs["request_id"] == "req-otlp-000001"
    assert attrs["invoice_id"] == "inv_1"
    assert attrs["amount"] == 12.5
    assert attrs["logger"] == "nespay.test"
    assert record.severity_text == "INFO"
    assert record.time_unix_nano > 0

    _, foreign = by_body["plain stdlib message"]
    assert attributes(foreign)["request_id"] == "req-otlp-000001"
    assert foreign.severity_text == "WARN"

    _, after = by_body["after_request"]
    assert "request_id" not in attributes(after)
    assert attributes(after)["password"] == "[redacted]"
    assert metric("nespay_log_lines_shipped_total", sink="otlp") - shipped_before == 3


# --- Loki ------------------------------------------------------------------------------------
async def test_loki_ships_labelled_json_lines(loki_receiver: Receiver) -> None:
    settings = make_settings(loki_url=loki_receiver.url, environment="staging-eu")
    shipped_before = metric("nespay_log_lines_shipped_total", sink="loki")
    shipping = start(settings, **FAST)
    assert shipping.sinks == ("loki",)

    response = await call(noisy_app(3), "/noisy", headers={"x-request-id": "req-loki-000001"})
    assert response.status_code == 200
    logging.getLogger("nespay.logshipping").warning("shipper diagnostics are not shipped")
    shipping.shutdown()

    assert set(loki_receiver.paths) == {"/loki/api/v1/push"}
    lines = loki_receiver.loki_lines()
    events = [line["event"] for _, _, line in lines]
    # 3 lines, the error line, and RequestIdMiddleware's access line.
    assert sorted(events) == ["noisy_done", "noisy_line", "noisy_line", "noisy_line", "request"]
    for labels, ts, line in lines:
        assert line["request_id"] == "req-loki-000001"
        assert labels == {
            "service": "nespay-test",
            "process": "api",
            "environment": "staging-eu",
            "level": line["level"],
        }
        assert ts.isdigit() and len(ts) == 19
    assert {labels["level"] for labels, _, _ in lines} == {"info", "error"}
    numbers = [line["number"] for _, _, line in lines if line["event"] == "noisy_line"]
    assert sorted(numbers) == [0, 1, 2]
    assert metric("nespay_log_lines_shipped_total", sink="loki") - shipped_before == 5


def test_loki_retries_a_failed_batch() -> None:
    receiver = Receiver("loki", statuses=[503, 502])
    try:
        shipping = start(make_settings(loki_url=receiver.url), **FAST)
        structlog.get_logger("nespay.test").info("retried_line")
        shipping.shutdown(timeout=5.0)
        assert len(receiver.paths) == 3  # two failures, then delivered
        assert [line["event"] for _, _, line in receiver.loki_lines()] == ["retried_line"]
    finally:
        receiver.close()


@pytest.mark.parametrize(("status", "attempts"), [(503, 3), (400, 1)])
def test_loki_drops_a_batch_it_cannot_deliver(status: int, attempts: int) -> None:
    receiver = Receiver("loki", statuses=[status] * 10)
    try:
        before = dropped("loki", "send_failed")
        shipping = start(make_settings(loki_url=receiver.url), **FAST)
        for number in range(4):
            structlog.get_logger("nespay.test").info("doomed_line", number=number)
        shipping.shutdown(timeout=5.0)
        assert len(receiver.paths) == attempts  # retried a couple of times, or not at all on 4xx
        assert receiver.bodies == []
        assert dropped("loki", "send_failed") - before == 4
    finally:
        receiver.close()


# --- sinks down ------------------------------------------------------------------------------
@pytest.mark.parametrize("down", ["refused", "hanging"])
async def test_sinks_down_never_block_a_request(down: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(f"{down}_url")
    settings = make_settings(otlp_logs_endpoint=url + "/v1/logs", loki_url=url)
    otlp_before = dropped("otlp")
    otlp_full_before = dropped("otlp", "queue_full")
    loki_full_before = dropped("loki", "queue_full")
    shipping = start(settings, queue_size=20, batch_size=5, flush_interval=0.05, timeout=0.5)
    assert shipping.sinks == ("otlp", "loki")

    response = await call(noisy_app(200), "/noisy")
    assert response.status_code == 200
    assert response.json() == {"lines": 200}
    shipping.shutdown(timeout=1.0)

    # Loki's worker holds one batch of 5 while it retries; the queue holds 20; the rest drop.
    assert dropped("loki", "queue_full") - loki_full_before > 0
    assert dropped("otlp") - otlp_before > 0
    if down == "hanging":
        assert dropped("otlp", "queue_full") - otlp_full_before > 0
    assert not set(shipping.handlers) & set(logging.getLogger().handlers)


# --- lifecycle -------------------------------------------------------------------------------
def test_shutdown_is_idempotent_and_detaches(
    loki_receiver: Receiver, otlp_receiver: Receiver
) -> None:
    settings = make_settings(loki_url=loki_receiver.url, otlp_logs_endpoint=otlp_receiver.url)
    shipping = start(settings, **FAST)
    root = logging.getLogger()
    assert set(shipping.handlers) <= set(root.handlers)
    shipping.shutdown()
    shipping.shutdown()
    assert not set(shipping.handlers) & set(root.handlers)
    structlog.get_logger("nespay.test").info("after_shutdown")  # goes to stdout only
    assert all(line["event"] != "after_shutdown" for _, _, line in loki_receiver.loki_lines())


def test_install_replaces_a_previous_install(loki_receiver: Receiver) -> None:
    settings = make_settings(loki_url=loki_receiver.url)
    first = start(settings, **FAST)
    second = logshipping.install(settings, "api", **FAST)
    root = logging.getLogger()
    assert not set(first.handlers) & set(root.handlers)
    assert set(second.handlers) <= set(root.handlers)
    structlog.get_logger("nespay.test").info("once")
    second.shutdown()
    assert [line["event"] for _, _, line in loki_receiver.loki_lines()] == ["once"]


def test_without_endpoints_nothing_is_added_and_the_sdk_is_not_loaded() -> None:
    code = (
        "import sys, logging\n"
        "from nespay.config import Settings\n"
        "from nespay.logging import configure_logging\n"
        "from nespay import logshipping\n"
        "s = Settings(_env_file=None, app_env='test', otlp_logs_endpoint=None, loki_url=None)\n"
        "configure_logging(s, 'api')\n"
        "before = list(logging.getLogger().handlers)\n"
        "shipping = logshipping.install(s, 'api')\n"
        "assert shipping.handlers == () and logging.getLogger().handlers == before\n"
        "shipping.shutdown(); shipping.shutdown()\n"
        "print('sdk' if 'opentelemetry.sdk' in sys.modules else 'no-sdk')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "no-sdk"


def test_url_forms() -> None:
    assert logshipping.push_url("http://loki:3100") == "http://loki:3100/loki/api/v1/push"
    assert logshipping.push_url("http://loki:3100/loki/api/v1/push/") == (
        "http://loki:3100/loki/api/v1/push"
    )
    assert logshipping.otlp_logs_url("http://otel:4318") == "http://otel:4318/v1/logs"
    assert logshipping.otlp_logs_url("http://otel:4318/v1/logs") == "http://otel:4318/v1/logs"
