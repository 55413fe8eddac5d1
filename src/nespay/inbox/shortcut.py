"""The provider routes' direct dispatch: a pure ASGI middleware of the webhook process, inside
the request-id and metrics middleware, that answers `POST` to a provider route by calling the
route's own verification dependency and endpoint function itself.

Why: FastAPI's per-request work around them — routing through the included routers, solving
the dependency, validating the returned model against the response model — cost about a third
of the intake's CPU (docs/benchmarks.md, "Provider webhook intake"); what the routes do is the
same either way. The routes stay FastAPI routes: they are what OpenAPI describes, what every
other method and path goes through, and the fallback for an endpoint this cannot call the
same way FastAPI would — anything but `(request: Request, x: Annotated[T, Depends(f)])` with
`f(request)` a coroutine function and no other dependency or parameter. Such a route is left
to FastAPI (logged once at the first request), so a changed signature never changes behaviour.

Errors raised by the dependency or the endpoint go to the app's own exception handlers (the
one error shape); anything else propagates to the request-id middleware, as from a route."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from fastapi import APIRouter
from fastapi.routing import APIRoute
from pydantic import TypeAdapter
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from nespay.metrics import ROUTE_TEMPLATE_KEY

log = structlog.get_logger("nespay.inbox")


@dataclass(frozen=True)
class _Direct:
    path: str
    route: APIRoute
    verify: Callable[[Request], Any]
    verified_name: str
    request_name: str
    adapter: TypeAdapter[Any] | None
    status_code: int


def direct_call(route: APIRoute, path: str) -> _Direct | None:
    """How to call `route` directly, or None when FastAPI must (see the module's docstring)."""
    dependant = route.dependant
    if (
        "POST" not in route.methods
        or not inspect.iscoroutinefunction(route.endpoint)
        or dependant.request_param_name is None
        or len(dependant.dependencies) != 1
        or _has_parameters(dependant)
    ):
        return None
    verify = dependant.dependencies[0]
    if (
        verify.call is None
        or verify.name is None
        or not inspect.iscoroutinefunction(verify.call)
        or verify.request_param_name is None
        or verify.dependencies
        or _has_parameters(verify)
    ):
        return None
    model = route.response_model
    return _Direct(
        path=path,
        route=route,
        verify=lambda request: verify.call(**{verify.request_param_name: request}),  # type: ignore[misc]
        verified_name=verify.name,
        request_name=dependant.request_param_name,
        adapter=TypeAdapter(model) if model is not None else None,
        status_code=route.status_code or 200,
    )


def _has_parameters(dependant: Any) -> bool:
    return bool(
        dependant.path_params
        or dependant.query_params
        or dependant.header_params
        or dependant.cookie_params
        or dependant.body_params
        or dependant.websocket_param_name
        or dependant.http_connection_param_name
        or dependant.response_param_name
        or dependant.background_tasks_param_name
        or dependant.security_scopes_param_name
    )


class ProviderRouteShortcut:
    """See the module's docstring. `routers`: (path prefix, router) of the provider routes."""

    def __init__(self, app: ASGIApp, routers: Sequence[tuple[str, APIRouter]]) -> None:
        self.app = app
        self.routers = routers
        self._direct: dict[str, _Direct] | None = None

    def _plan(self) -> dict[str, _Direct]:
        direct: dict[str, _Direct] = {}
        for prefix, router in self.routers:
            for route in router.routes:
                if not isinstance(route, APIRoute) or "POST" not in route.methods:
                    continue
                path = prefix + route.path
                call = direct_call(route, path)
                if call is None:
                    log.info("provider_route_left_to_fastapi", path=path)
                else:
                    direct[path] = call
        return direct

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        if self._direct is None:
            self._direct = self._plan()
        call = self._direct.get(scope["path"])
        if call is None:
            await self.app(scope, receive, send)
            return
        scope[ROUTE_TEMPLATE_KEY] = call.path
        scope["route"] = call.route
        request = Request(scope, receive, send)
        try:
            verified = await call.verify(request)
            result = await call.route.endpoint(
                **{call.request_name: request, call.verified_name: verified}
            )
            response = result if isinstance(result, Response) else _render(call, result)
        except Exception as error:
            handler = _handler_for(scope["app"], error)
            if handler is None:
                raise
            response = await handler(request, error)
        await response(scope, receive, send)


def _render(call: _Direct, result: Any) -> Response:
    if call.adapter is None:
        raise TypeError(f"{call.path} returned {type(result).__name__} without a response model")
    content = call.adapter.dump_json(call.adapter.validate_python(result))
    return Response(content, status_code=call.status_code, media_type="application/json")


def _handler_for(app: Any, error: Exception) -> Any:
    """The app's handler for `error`'s class or its nearest base (as Starlette looks it up)."""
    handlers = app.exception_handlers
    for cls in type(error).__mro__:
        if cls in handlers and cls is not Exception:
            return handlers[cls]
    return None
