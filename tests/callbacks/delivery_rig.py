"""What the delivery tests share: a merchant with a callback endpoint on the test receiver,
events emitted the way the domains emit them, the pipeline running in-process (or the jobs
process for real), and reads of the delivery and attempt rows."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from standardwebhooks.webhooks import Webhook

from nespay.auth.principals import Actor
from nespay.callbacks import service as endpoints
from nespay.callbacks.pipeline import CallbackPipeline
from nespay.callbacks.schemas import WebhookEndpointCreate
from nespay.config import Settings
from nespay.db import Database
from nespay.events.service import emit
from nespay.kit.ids import new_id
from nespay.runtime import Runtime
from tests.fixtures.factories import MerchantWithKey, merchant_with_key
from tests.fixtures.receiver import Received

ACTOR = Actor(type="system", id="tests")


@dataclass
class Hook:
    merchant_id: str
    endpoint_id: str
    secret: str
    url: str
    api_key: str

    def verify(self, request: Received) -> dict[str, Any]:
        """Verified with the Standard Webhooks reference library, as a merchant would."""
        return Webhook(self.secret).verify(request.body, request.headers)


async def hook(
    database: Database,
    settings: Settings,
    url: str,
    events: list[str] | None = None,
    owner: MerchantWithKey | None = None,
) -> Hook:
    """A callback endpoint at `url` for `owner` (by default a new merchant)."""
    owner = owner or await merchant_with_key(database)
    async with database.session() as session:
        endpoint, secret = await endpoints.create(
            session,
            settings,
            owner.merchant_id,
            ACTOR,
            WebhookEndpointCreate(url=url, events=events or ["*"]),
        )
    return Hook(owner.merchant_id, endpoint.id, secret, url, owner.key)


async def event(
    database: Database, merchant_id: str, type: str = "invoice.paid", subject: str | None = None
) -> str:
    subject = subject or new_id("inv")
    async with database.session() as session:
        return await emit(
            session,
            merchant_id=merchant_id,
            type=type,
            subject_id=subject,
            data={"id": subject, "status": type.split(".", 1)[1], "amount": "10.5"},
        )


@asynccontextmanager
async def pipeline(settings: Settings) -> AsyncIterator[CallbackPipeline]:
    """The jobs process's callback pipeline, in this process."""
    runtime = Runtime(settings, "jobs")
    await runtime.start()
    running = CallbackPipeline(runtime)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()
        await runtime.close()


async def rows(database: Database, sql: str, **params: Any) -> list[Any]:
    async with database.engine.connect() as conn:
        return list((await conn.execute(text(sql), params)).mappings())


async def delivery(database: Database, event_id: str) -> Any:
    found = await rows(database, "SELECT * FROM webhook_deliveries WHERE event_id = :e", e=event_id)
    assert len(found) == 1, found
    return found[0]


async def attempts(database: Database, event_id: str) -> list[Any]:
    return await rows(
        database,
        "SELECT a.* FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id "
        "WHERE d.event_id = :e ORDER BY a.id",
        e=event_id,
    )


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout_s: float = 30.0, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} not met within {timeout_s} s (last: {last!r})")


def body(request: Received) -> dict[str, Any]:
    return json.loads(request.body)
