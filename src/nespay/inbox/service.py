"""The inbox's behaviour: store a verified webhook (once), list and replay stored ones."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from nespay.audit import service as audit
from nespay.auth.principals import Actor
from nespay.db import after_commit, sql
from nespay.inbox import repository
from nespay.inbox.errors import ProviderWebhookNotFound
from nespay.inbox.schemas import ProviderWebhook
from nespay.inbox.verify import Received
from nespay.kit.faults import fault_point
from nespay.kit.ids import new_id
from nespay.kit.pagination import fetch_size, split_page
from nespay.metrics import PROVIDER_WEBHOOKS_RECEIVED
from nespay.runtime import Runtime

log = structlog.get_logger("nespay.inbox")


async def ingest(runtime: Runtime, worker: Any, received: Received) -> tuple[str, bool]:
    """Store `received` raw (one statement, committed by itself) and queue it if it is new;
    returns (the row's id, whether it was a duplicate). A duplicate is not queued again."""
    async with runtime.db.driver() as conn:
        stored = await repository.insert(
            conn,
            new_id("pwh"),
            received.provider,
            received.external_id,
            received.event_type,
            received.body,
            received.headers,
            received.source_ip,
        )
        if stored is None:
            existing = await repository.existing_id(conn, received.provider, received.external_id)
    if stored is None:
        _received(received.provider, "duplicate").inc()
        log.info(
            "provider_webhook_duplicate",
            provider=received.provider,
            webhook_id=existing,
            event_type=received.event_type,
        )
        return existing, True
    _received(received.provider, "new").inc()
    # A crash here (stored, not yet queued) is what the sweep is for.
    fault_point(runtime.settings, "inbox.after_store")
    worker.enqueue(stored)
    return stored, False


@lru_cache(maxsize=16)
def _received(provider: str, outcome: str) -> Any:
    """The counter's child, looked up once (`.labels()` takes a lock and builds a key)."""
    return PROVIDER_WEBHOOKS_RECEIVED.labels(provider, outcome)


RAW = {"body", "headers"}


def _view(row: Any) -> ProviderWebhook:
    return ProviderWebhook(
        **{name: row[name] for name in ProviderWebhook.model_fields if name not in RAW},
        headers=repository.headers_of(row["headers"]),
        body=bytes(row["body"]).decode("utf-8", errors="replace"),
    )


async def list_webhooks(
    session: AsyncSession,
    *,
    provider: str | None,
    status: str | None,
    event_type: str | None,
    limit: int,
    starting_after: str | None,
) -> tuple[list[ProviderWebhook], bool]:
    rows = await repository.search(
        sql(session),
        provider=provider,
        status=status,
        event_type=event_type,
        limit=fetch_size(limit),
        starting_after=starting_after,
    )
    page, has_more = split_page(rows, limit)
    return [_view(row) for row in page], has_more


async def replay(
    session: AsyncSession, runtime: Runtime, webhook_id: str, actor: Actor
) -> ProviderWebhook:
    """Make a stored webhook pending and due now, whatever its status (a handled one is
    handled again: handlers are idempotent), with a fresh count of tries; audit-logged; the
    webhook process is woken once this has committed (else its sweep finds it)."""
    conn = sql(session)
    before = await repository.get(conn, webhook_id, for_update=True)
    if before is None:
        raise ProviderWebhookNotFound()
    await repository.replay(conn, webhook_id)
    after = await repository.get(conn, webhook_id)
    await audit.record(
        session,
        actor,
        "provider_webhook.replayed",
        target_type="provider_webhook",
        target_id=webhook_id,
        before={"status": before["status"], "attempts": before["attempts"]},
        after={"status": after["status"], "attempts": after["attempts"]},
        detail={"provider": before["provider"], "event_type": before["event_type"]},
    )

    async def wake_it() -> None:
        from nespay.inbox.worker import wake

        await wake(runtime, [webhook_id])

    after_commit(session, wake_it)
    return _view(after)
