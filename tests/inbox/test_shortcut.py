"""The provider routes' direct dispatch (`nespay.inbox.shortcut`): it answers as FastAPI would
(same bytes, same status, errors in the one error shape, the route template in the metrics),
and leaves to FastAPI any route it could not call the same way."""

from __future__ import annotations

from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel

from nespay.errors import NotFound, install_error_handlers
from nespay.inbox.endpoints import router as inbox_router
from nespay.inbox.shortcut import ProviderRouteShortcut, direct_call
from nespay.metrics import HTTP_REQUESTS, MetricsMiddleware
from nespay.requestid import RequestIdMiddleware
from tests.inbox.rig import HOOKS, inbox_settings, rain_request, webhook_client

pytestmark = pytest.mark.own_database


class Answer(BaseModel):
    value: str
    seen: bool = False


async def verified(request: Request) -> str:
    if request.headers.get("x-refuse"):
        raise NotFound("refused by the dependency")
    return (await request.body()).decode()


async def extra(request: Request) -> bool:
    request.state.extra_ran = True
    return True


def toy_router() -> APIRouter:
    router = APIRouter()

    @router.post("/simple", response_model=Answer)
    async def simple(request: Request, body: Annotated[str, Depends(verified)]) -> Answer:
        return Answer(value=body)

    @router.post("/as-dict", response_model=Answer)
    async def as_dict(request: Request, body: Annotated[str, Depends(verified)]) -> dict:
        return {"value": body, "seen": True, "dropped": "not in the model"}

    @router.post("/two-dependencies", response_model=Answer)
    async def two(
        request: Request,
        body: Annotated[str, Depends(verified)],
        ran: Annotated[bool, Depends(extra)],
    ) -> Answer:
        return Answer(value=body, seen=ran)

    @router.post("/with-query", response_model=Answer)
    async def with_query(
        request: Request, body: Annotated[str, Depends(verified)], q: str = "x"
    ) -> Answer:
        return Answer(value=body + q)

    return router


def toy_app(shortcut: bool) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    router = toy_router()
    app.include_router(router, prefix="/hooks")
    if shortcut:
        app.add_middleware(ProviderRouteShortcut, routers=[("/hooks", router)])
    app.add_middleware(MetricsMiddleware, process="toy")
    app.add_middleware(RequestIdMiddleware, access_log=False)
    return app


async def post_all(app: FastAPI) -> list[tuple[int, bytes, str]]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://toy") as client:
        answers = [
            await client.post(f"/hooks/{path}", content=b"abc", headers=headers)
            for path in ("simple", "as-dict", "two-dependencies", "with-query")
            for headers in ({}, {"x-refuse": "1", "x-request-id": "fixed-request-id-1"})
        ]
    return [(a.status_code, a.content, a.headers["content-type"]) for a in answers]


async def test_the_shortcut_answers_every_route_exactly_as_fastapi_does():
    assert await post_all(toy_app(shortcut=True)) == await post_all(toy_app(shortcut=False))


def test_only_request_plus_one_request_dependency_is_called_directly():
    routes = {route.path: route for route in toy_router().routes}
    assert direct_call(routes["/simple"], "/hooks/simple") is not None
    assert direct_call(routes["/as-dict"], "/hooks/as-dict") is not None
    assert direct_call(routes["/two-dependencies"], "/hooks/two-dependencies") is None
    assert direct_call(routes["/with-query"], "/hooks/with-query") is None
    # The provider routes as they are now are called directly. A route whose signature grows
    # (a session, a second dependency) is served by FastAPI instead, correctly but slower:
    # then this fails, to say so; see docs/webhooks.md, "The intake's hot path".
    for route in inbox_router.routes:
        assert direct_call(route, HOOKS + route.path) is not None, (
            f"{route.path} is no longer dispatched directly: the intake benchmark will show it"
        )


async def test_a_route_left_to_fastapi_still_runs_all_its_dependencies():
    transport = httpx.ASGITransport(app=toy_app(shortcut=True))
    async with httpx.AsyncClient(transport=transport, base_url="http://toy") as client:
        answer = await client.post("/hooks/two-dependencies", content=b"abc")
    assert answer.json() == {"value": "abc", "seen": True}


async def test_a_shortcut_request_is_counted_under_its_route_template(database_url):
    counted = HTTP_REQUESTS.labels("webhook", "POST", f"{HOOKS}/rain", "200")
    before = counted._value.get()  # noqa: SLF001 - the counter's own value
    raw, headers = rain_request("evt-counted")
    async with webhook_client(inbox_settings(database_url)) as client:
        answer = await client.post(f"{HOOKS}/rain", content=raw, headers=headers)
    assert answer.status_code == 200 and answer.headers["x-request-id"]
    assert counted._value.get() == before + 1  # noqa: SLF001
