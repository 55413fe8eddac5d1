"""What every process shares: lifespan, logging, request ids, errors, CORS, health, metrics,
Swagger UI at `/api` when `SWAGGER_ENABLE=1`, and the refusal of text PostgreSQL cannot store."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware

from nespay import logshipping
from nespay.config import Settings, get_settings
from nespay.errors import install_error_handlers
from nespay.health import health_router
from nespay.kit.openapi import document_answers
from nespay.kit.text import may_hold_unstorable, printable, unstorable, unstorable_locations
from nespay.logging import configure_logging
from nespay.metrics import MetricsMiddleware, add_metrics_route
from nespay.operator import require_operator
from nespay.requestid import RequestIdMiddleware
from nespay.runtime import Runtime

log = structlog.get_logger("nespay.app")
Hook = Callable[[FastAPI, Runtime], Awaitable[None]]

TITLES = {
    "api": "Nespay API",
    "webhook": "Nespay provider webhooks",
    "jobs": "Nespay jobs",
}


def build_app(
    process: str,
    settings: Settings | None = None,
    *,
    routers: list[tuple[str, APIRouter]] = (),  # type: ignore[assignment]
    on_start: Hook | None = None,
    on_stop: Hook | None = None,
    refuse_unstorable: bool = True,
    middleware: Sequence[tuple[type, dict[str, Any]]] = (),
) -> FastAPI:
    """`refuse_unstorable`: every route refuses text PostgreSQL cannot store (see
    `refuse_unstorable_text`); off only for the webhook process, whose provider routes will
    decide for themselves what to do with a payload they must keep as received.
    `middleware`: (class, options) of the process's own, innermost: inside request ids and
    metrics, so what they answer has both."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings, process)
        shipping = logshipping.install(settings, process)
        runtime = Runtime(settings, process)
        app.state.runtime = runtime
        try:
            await runtime.start()
            if on_start is not None:
                await on_start(app, runtime)
            settle_garbage_collector()
            log.info("process_started", port=port_of(settings, process))
            yield
        finally:
            if on_stop is not None:
                await on_stop(app, runtime)
            await runtime.close()
            log.info("process_stopped")
            await asyncio.to_thread(shipping.shutdown)

    swagger = settings.swagger_enable
    app = FastAPI(
        title=TITLES[process],
        version=settings.service_version,
        lifespan=lifespan,
        docs_url="/api" if swagger else None,
        redoc_url=None,
        openapi_url="/api-json" if swagger else None,
        # Our metrics and logs are our own (Prometheus, JSON lines, log shipping); FastAPI's
        # native OpenTelemetry would look up the global providers on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # App-level, so it runs before every route's own dependencies (auth, rate limits,
        # the session) and covers routes added later.
        dependencies=[Depends(refuse_unstorable_text)] if refuse_unstorable else None,
    )
    install_error_handlers(app)
    prefix = "/" + settings.public_api_prefix
    app.include_router(health_router(lambda request: request.app.state.runtime), prefix=prefix)
    for router_prefix, router in routers:
        app.include_router(router, prefix=router_prefix)
    add_metrics_route(app, dependencies=[Depends(require_operator)])
    document_answers(app)
    for middleware_class, options in middleware:
        app.add_middleware(middleware_class, **options)
    if settings.enable_cors_urls:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.enable_cors_urls,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["x-request-id", "retry-after"],
        )
    app.add_middleware(MetricsMiddleware, process=process)
    app.add_middleware(RequestIdMiddleware)
    return app


async def refuse_unstorable_text(request: Request) -> None:
    """422 naming every query parameter, path parameter, header, JSON string or JSON object
    key (at any depth) that holds NUL or an unpaired surrogate: PostgreSQL cannot store them,
    and they would otherwise reach it as a 500. Nothing is read or written before this runs.
    Raw bytes are scanned first, so a clean request (nearly all) costs a few byte searches."""
    scope = request.scope
    errors: list[dict[str, object]] = []
    query = scope["query_string"]
    if b"%00" in query or b"\x00" in query:  # decoded as UTF-8 with replacement: no surrogates
        for name, value in request.query_params.multi_items():
            if unstorable(name) or unstorable(value):
                errors.append(_unstorable(("query", printable(name))))
    if "\x00" in scope["path"]:  # the server decodes %XX there; a surrogate becomes U+FFFD
        for name, value in request.path_params.items():
            if isinstance(value, str) and unstorable(value):
                errors.append(_unstorable(("path", name)))
    for name, value in scope["headers"]:
        if b"\x00" in value:
            errors.append(_unstorable(("header", name.decode("latin-1"))))
    body = await request.body()
    if body and may_hold_unstorable(body):
        try:
            parsed = await request.json()
        except ValueError:
            parsed = None  # not JSON: the route refuses it, or reads bytes it does not store
        errors.extend(_unstorable(("body", *loc)) for loc in unstorable_locations(parsed))
    if errors:
        raise RequestValidationError(errors[:50])


def _unstorable(loc: tuple[str | int, ...]) -> dict[str, object]:
    return {
        "loc": loc,
        "msg": "must not contain NUL (\\u0000) or unpaired surrogate characters",
        "type": "string_unstorable",
    }


def settle_garbage_collector() -> None:
    """Move everything alive after start-up (mostly imported modules) out of the collector's
    reach and make young collections rarer: profiling showed full collections over those
    ~150k long-lived objects costing a sixth of a busy process's CPU."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 50)


def port_of(settings: Settings, process: str) -> int:
    return {"api": settings.api_port, "webhook": settings.webhook_port, "jobs": settings.job_port}[
        process
    ]
