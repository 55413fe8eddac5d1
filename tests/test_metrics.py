"""HTTP metrics by route template, the /metrics endpoint and the job helper, through a real
FastAPI app over httpx's ASGI transport."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from prometheus_client import REGISTRY

from nespay.metrics import (
    JOB_RUNS,
    LOG_LINES_DROPPED,
    REDIS_DEGRADED,
    MetricsMiddleware,
    add_metrics_route,
    track_job,
)
from nespay.requestid import RequestIdMiddleware


def build_app(process: str) -> FastAPI:
    app = FastAPI()
    invoices = APIRouter(prefix="/invoices")

    @invoices.get("/{id}")
    async def get_invoice(id: str) -> dict[str, str]:
        return {"id": id}

    @invoices.get("/{id}/boom")
    async def boom(id: str) -> None:
        raise RuntimeError("boom")

    orgs = APIRouter(prefix="/orgs/{org}")

    @orgs.get("/members/{member:int}")
    async def member(org: str, member: int) -> dict[str, int]:
        return {"member": member}

    api = APIRouter()
    api.include_router(invoices)
    api.include_router(orgs)
    app.include_router(api, prefix="/api/v1")

    @app.get("/ping")
    async def ping() -> str:
        return "pong"

    mounted = FastAPI()

    @mounted.get("/things/{thing}")
    async def thing(thing: str) -> dict[str, str]:
        return {"thing": thing}

    app.mount("/sub", mounted)
    add_metrics_route(app)
    app.add_middleware(MetricsMiddleware, process=process)
    app.add_middleware(RequestIdMiddleware, access_log=False)
    return app


def client(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def requests_total(process: str, method: str, route: str, status: str) -> float | None:
    labels = {"process": process, "method": method, "route": route, "status": status}
    return REGISTRY.get_sample_value("nespay_http_requests_total", labels)


@pytest.fixture
def process() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"  # the registry is global: each test its own series


async def test_counts_requests_by_route_template(process: str) -> None:
    async with client(build_app(process)) as http:
        for invoice in ("inv_1", "inv_2", "inv_3"):
            assert (await http.get(f"/api/v1/invoices/{invoice}")).status_code == 200
        assert (await http.get("/api/v1/orgs/acme/members/7")).status_code == 200
        assert (await http.get("/ping")).status_code == 200
        assert (await http.get("/sub/things/x1")).status_code == 200
        scrape = await http.get("/metrics")

    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain")
    text = scrape.text
    lines = text.splitlines()
    assert (  # the exposition sorts labels by name
        f'nespay_http_requests_total{{method="GET",process="{process}",'
        f'route="/api/v1/invoices/{{id}}",status="200"}} 3.0'
    ) in lines
    assert (
        f'nespay_http_request_duration_seconds_count{{method="GET",process="{process}",'
        f'route="/api/v1/invoices/{{id}}"}} 3.0'
    ) in lines
    assert requests_total(process, "GET", "/api/v1/orgs/{org}/members/{member}", "200") == 1
    assert requests_total(process, "GET", "/ping", "200") == 1
    assert requests_total(process, "GET", "/sub/things/{thing}", "200") == 1
    # Raw paths never become labels.
    own = [line for line in lines if process in line]
    assert own and not any(re.search(r"inv_\d|acme|/7\b|x1", line) for line in own)


async def test_unmatched_errors_and_odd_methods(process: str) -> None:
    async with client(build_app(process)) as http:
        assert (await http.get("/no/such/path")).status_code == 404
        assert (await http.get("/no/other/path")).status_code == 404
        assert (await http.get("/api/v1/invoices/inv_9/boom")).status_code == 500
        assert (await http.post("/ping")).status_code == 405
        assert (await http.request("BREW", "/ping")).status_code == 405

    assert requests_total(process, "GET", "<unmatched>", "404") == 2
    assert requests_total(process, "GET", "/api/v1/invoices/{id}/boom", "500") == 1
    assert requests_total(process, "POST", "/ping", "405") == 1
    assert requests_total(process, "OTHER", "/ping", "405") == 1
    assert requests_total(process, "BREW", "/ping", "405") is None


async def test_metrics_route_is_not_in_the_schema(process: str) -> None:
    app = build_app(process)
    assert "/metrics" not in app.openapi()["paths"]
    async with client(app) as http:
        await http.get("/metrics")
        text = (await http.get("/metrics")).text
    assert (
        f'nespay_http_requests_total{{method="GET",process="{process}",route="/metrics",'
        f'status="200"}} 1.0'
    ) in text.splitlines()
    assert "# TYPE nespay_job_runs_total counter" in text
    assert "# TYPE nespay_redis_degraded gauge" in text


def test_track_job_counts_outcomes() -> None:
    job = f"job-{uuid.uuid4().hex[:8]}"
    with track_job(job):
        pass
    with pytest.raises(ValueError), track_job(job):
        raise ValueError("nope")
    with pytest.raises(TimeoutError), track_job(job):
        raise TimeoutError

    def runs(outcome: str) -> float | None:
        return REGISTRY.get_sample_value("nespay_job_runs_total", {"job": job, "outcome": outcome})

    assert (runs("ok"), runs("error"), runs("timeout")) == (1, 1, 1)
    assert REGISTRY.get_sample_value("nespay_job_duration_seconds_count", {"job": job}) == 3
    # The names other modules import directly.
    JOB_RUNS.labels(job, "ok").inc()
    assert runs("ok") == 2
    REDIS_DEGRADED.set(1)
    assert REGISTRY.get_sample_value("nespay_redis_degraded") == 1
    REDIS_DEGRADED.set(0)
    assert LOG_LINES_DROPPED.labels("loki", "queue_full") is LOG_LINES_DROPPED.labels(
        "loki", "queue_full"
    )
