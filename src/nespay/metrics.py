"""Prometheus metrics: HTTP requests by route template, jobs, Redis degraded state, log shipping,
reconciliation and the ledger's invariants.

Every process serves its own registry at `/metrics` (`add_metrics_route`). Labels are kept
low-cardinality on purpose: the `route` label is the route *template* (`/api/v1/invoices/{id}`),
never the raw path, and unknown HTTP methods are folded into `OTHER`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from fastapi import FastAPI

# `*_created` series double the series count and nobody graphs them.
disable_created_metrics()

UNMATCHED = "<unmatched>"
# Set in the scope by a middleware that dispatches a route itself (`nespay.inbox.shortcut`).
ROUTE_TEMPLATE_KEY = "nespay.route_template"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_REQUESTS = Counter(
    "nespay_http_requests_total",
    "HTTP requests handled, by route template and response status.",
    ["process", "method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "nespay_http_request_duration_seconds",
    "Time from receiving an HTTP request to the end of its response, by route template.",
    ["process", "method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
JOB_RUNS = Counter(
    "nespay_job_runs_total",
    "Job runs finished, by job and outcome (ok, error, timeout).",
    ["job", "outcome"],
)
JOB_DURATION = Histogram(
    "nespay_job_duration_seconds",
    "Job run duration.",
    ["job"],
    buckets=(0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0),
)
CALLBACK_ATTEMPTS = Counter(
    "nespay_callback_attempts_total",
    "Callback POSTs, by what they led to (succeeded, retry, failed).",
    ["outcome"],
)
CALLBACK_ATTEMPT_DURATION = Histogram(
    "nespay_callback_attempt_duration_seconds",
    "Time a merchant's server took to answer a callback (or to time out).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
CALLBACK_EVENTS_RELAYED = Counter(
    "nespay_callback_events_relayed_total", "Event rows the outbox relay dispatched and published."
)
CALLBACK_ENDPOINTS_DISABLED = Counter(
    "nespay_callback_endpoints_disabled_total",
    "Callback endpoints disabled after failing for CALLBACK_DISABLE_AFTER_H.",
)
PROVIDER_WEBHOOKS_RECEIVED = Counter(
    "nespay_provider_webhooks_received_total",
    "Provider webhooks accepted, by provider and whether they were new or a duplicate.",
    ["provider", "outcome"],
)
PROVIDER_WEBHOOKS_HANDLED = Counter(
    "nespay_provider_webhooks_handled_total",
    "Handlings of stored provider webhooks, by provider and outcome (handled, ignored, "
    "pending: failed and retried later, dead).",
    ["provider", "outcome"],
)
REDIS_DEGRADED = Gauge(
    "nespay_redis_degraded",
    "1 while Redis is configured but unreachable and the process runs degraded, else 0.",
)
SCANNER_LAG = Gauge(
    "nespay_scanner_lag_blocks",
    "Blocks between a network's head and its scanner's cursor, on the replica scanning it.",
    ["network"],
)
SCANNER_FAILURES = Counter(
    "nespay_scanner_failures_total", "Scanner steps that failed and will be retried.", ["network"]
)
LOG_LINES_SHIPPED = Counter(
    "nespay_log_lines_shipped_total",
    "Log lines accepted by a log shipping sink (otlp, loki).",
    ["sink"],
)
LOG_LINES_DROPPED = Counter(
    "nespay_log_lines_dropped_total",
    "Log lines a log shipping sink gave up on, by reason "
    "(queue_full, send_failed, shutdown, error).",
    ["sink", "reason"],
)


class MetricsMiddleware:
    """Pure ASGI middleware counting requests and timing them by route template.

    The template is read from the scope after the app has routed the request. FastAPI 0.163
    no longer flattens `include_router`: `scope["route"].path` lacks the include prefixes, so
    the full template comes from FastAPI's effective route context (used only when it belongs
    to the matched route); otherwise the route's `path_format` (`{id:int}` → `{id}`) or `path`,
    behind the prefix of any `Mount` the request went through. Nothing matched → `<unmatched>`.
    """

    def __init__(self, app: ASGIApp, process: str) -> None:
        self.app = app
        self.process = process
        # (method, route, status) → (counter child, histogram child): skips `.labels()` (a lock
        # and a tuple build per call) on the hot path. Bounded: methods are folded into a fixed
        # set, routes are templates, statuses are HTTP codes.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        root_path = scope.get("root_path", "")
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            elapsed = time.perf_counter() - started
            method = scope["method"]
            if method not in _METHODS:
                method = "OTHER"
            key = (method, route_template(scope, root_path), status)
            children = self._children.get(key)
            if children is None:
                children = self._make_children(key)
            children[0].inc()
            children[1].observe(elapsed)

    def _make_children(self, key: tuple[str, str, int]) -> tuple[Any, Any]:
        method, route, status = key
        children = (
            HTTP_REQUESTS.labels(self.process, method, route, str(status)),
            HTTP_DURATION.labels(self.process, method, route),
        )
        if len(self._children) < 10_000:  # belt and braces against an unforeseen label source
            self._children[key] = children
        return children


def route_template(scope: Scope, root_path: str = "") -> str:
    """The route template a routed request matched, `<unmatched>` when none did."""
    template = scope.get(ROUTE_TEMPLATE_KEY)
    if template is not None:
        return template
    mounted = scope.get("root_path", "")
    prefix = mounted[len(root_path) :] if len(mounted) > len(root_path) else ""
    route = scope.get("route")
    if route is None or isinstance(route, Mount):
        # A mounted app without routes of its own (static files) or a 404 inside a mount.
        return prefix + "/{path}" if prefix else UNMATCHED
    fastapi_scope = scope.get("fastapi")
    if fastapi_scope:
        context = fastapi_scope.get("effective_route_context")
        if context is not None and getattr(context, "original_route", None) is route:
            path = getattr(context, "path_format", None)
            if path:
                return prefix + path
    return prefix + (getattr(route, "path_format", None) or getattr(route, "path", UNMATCHED))


RECONCILIATION_DIFFERENCES = Gauge(
    "nespay_reconciliation_differences",
    "Lines (currency and account) where the last reconciliation found the ledger and the chain "
    "apart, per network (0: they agree)",
    ["network"],
)


def reconciliation(network: str, differing_lines: int) -> None:
    RECONCILIATION_DIFFERENCES.labels(network).set(differing_lines)


LEDGER_INVARIANT_VIOLATIONS = Gauge(
    "nespay_ledger_invariant_violations",
    "What the last ledger.invariants run found wrong, per check: currencies out of balance "
    "(balance), accounts whose counters differ from their transfers (projection), limited "
    "accounts short with no recorded deficit (shortfall), pending transfers resolved twice or "
    "beyond what they held (resolution); 0: the invariant holds",
    ["check"],
)


def ledger_invariants(counts: dict[str, int]) -> None:
    for check, count in counts.items():
        LEDGER_INVARIANT_VIOLATIONS.labels(check).set(count)


def scanner_lag(network: str, blocks: int) -> None:
    SCANNER_LAG.labels(network).set(blocks)


def scanner_stopped(network: str) -> None:
    """This replica no longer scans `network`: its lag series goes (another replica's is
    the truth now)."""
    with contextlib.suppress(KeyError):
        SCANNER_LAG.remove(network)


@contextmanager
def track_job(job: str) -> Iterator[None]:
    """Count and time one run of `job`: outcome `ok`, `timeout` (TimeoutError) or `error`."""
    started = time.perf_counter()
    outcome = "error"
    try:
        yield
        outcome = "ok"
    except TimeoutError:
        outcome = "timeout"
        raise
    finally:
        JOB_RUNS.labels(job, outcome).inc()
        JOB_DURATION.labels(job).observe(time.perf_counter() - started)


async def metrics_endpoint(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_PLAIN_0_0_4)


def add_metrics_route(app: FastAPI, dependencies: Sequence[Any] = ()) -> None:
    """Serve the process's metrics at `/metrics` (kept out of the OpenAPI schema)."""
    app.add_api_route(
        "/metrics",
        metrics_endpoint,
        methods=["GET"],
        include_in_schema=False,
        dependencies=list(dependencies),
    )
