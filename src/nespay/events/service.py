"""The event log: writing events, reading them with their deliveries, redelivering.

An event is written in the caller's transaction, so it commits with the state change it
describes; the relay (callbacks) publishes what is committed. Reads and redeliveries take an
optional `merchant_id`: merchants' routes always pass theirs (another merchant's event is then
not found), the backoffice passes None."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from nespay.audit.service import record
from nespay.auth.principals import Actor
from nespay.callbacks import messages
from nespay.callbacks import repository as endpoints
from nespay.callbacks import service as callbacks_service
from nespay.db import Sql, after_commit, sql
from nespay.errors import Conflict, NotFound
from nespay.events import repository
from nespay.events.schemas import Attempt, Delivery, DeliveryCounts, EventFilters, Redeliver
from nespay.kit.ids import new_ordered_ids
from nespay.kit.pagination import PageParams, fetch_size, split_page
from nespay.models import Event
from nespay.requestid import current_request_id

if TYPE_CHECKING:
    from nespay.runtime import Runtime


class EventNotFound(NotFound):
    code = "event_not_found"
    message = "No such event."


class WebhookEndpointDisabled(Conflict):
    code = "webhook_endpoint_disabled"
    message = "The webhook endpoint is disabled; re-enable it first."  # raised with its id


class NoWebhookEndpoints(Conflict):
    code = "no_webhook_endpoints"
    message = "No enabled webhook endpoint is subscribed to this event type."


# (merchant id, type, subject id, data): an event to write.
NewEvent = tuple[str, str, str, dict[str, Any]]


async def emit_all(
    db: Sql | AsyncSession | AsyncConnection, events: Sequence[NewEvent]
) -> list[str]:
    """The one writer of events: all of `events` in one statement, in list order (their
    `seq` follows it), in the caller's transaction. Callers that change an invoice hold its
    row lock while they write its events, so one invoice's events commit in order."""
    if not events:
        return []
    ids = new_ordered_ids("evt", len(events))  # listed by id: in the order they happened
    rows = [(e[0], e[1], e[2], orjson.dumps(e[3]).decode()) for e in events]
    await repository.insert_events(sql(db), ids, rows, current_request_id())
    return ids


async def emit(
    executor: AsyncSession | AsyncConnection,
    *,
    merchant_id: str,
    type: str,
    subject_id: str,
    data: dict[str, Any],
) -> str:
    """One event (see `emit_all`)."""
    (event_id,) = await emit_all(executor, [(merchant_id, type, subject_id, data)])
    return event_id


async def get(session: AsyncSession, event_id: str, *, merchant_id: str | None) -> Event:
    event = await repository.get(session, event_id, merchant_id=merchant_id)
    if event is None:
        raise EventNotFound()
    return event


async def get_with_counts(
    session: AsyncSession, event_id: str, *, merchant_id: str | None
) -> tuple[Event, DeliveryCounts]:
    """The event and how many of its deliveries are pending, succeeded, failed."""
    event = await get(session, event_id, merchant_id=merchant_id)
    counts = await repository.delivery_counts(session, event_id)
    return event, DeliveryCounts(total=sum(counts.values()), **counts)


async def list_events(
    session: AsyncSession,
    *,
    merchant_id: str | None,
    filters: EventFilters,
    page: PageParams,
) -> tuple[list[Event], bool]:
    """Newest first; filters combine."""
    rows = await repository.list_events(
        session,
        merchant_id=merchant_id,
        filters=filters,
        limit=fetch_size(page.limit),
        starting_after=page.starting_after,
    )
    return split_page(rows, page.limit)


async def list_deliveries(
    session: AsyncSession, event_id: str, *, merchant_id: str | None
) -> list[Delivery]:
    """One delivery per endpoint the event went (or goes) to, each with its newest attempts."""
    await get(session, event_id, merchant_id=merchant_id)
    return await _deliveries(session, event_id)


async def _deliveries(
    session: AsyncSession, event_id: str, delivery_ids: list[str] | None = None
) -> list[Delivery]:
    rows = await repository.deliveries(session, event_id, delivery_ids=delivery_ids)
    log: dict[str, list[Attempt]] = defaultdict(list)
    for attempt in await repository.attempts(session, [row.id for row, _ in rows]):
        log[attempt.delivery_id].append(Attempt.model_validate(attempt))
    return [
        Delivery(
            id=row.id,
            endpoint_id=row.endpoint_id,
            url=url,
            status=row.status,
            attempts=row.attempts,
            next_attempt_at=row.next_attempt_at,
            last_attempt_at=row.last_attempt_at,
            succeeded_at=row.succeeded_at,
            failed_at=row.failed_at,
            attempt_log=log[row.id],
        )
        for row, url in rows
    ]


async def redeliver(
    session: AsyncSession,
    runtime: Runtime,
    event_id: str,
    actor: Actor,
    *,
    merchant_id: str | None,
    body: Redeliver | None = None,
) -> list[Delivery]:
    """Send the event again now: to `endpoint_id` (one of the event's merchant's, enabled), or
    else to every enabled endpoint of the merchant subscribed to its type. Each delivery is
    made pending and due with a fresh retry window, and its next attempt counts as manual.
    `body.endpoint_id` (if any) names the endpoint."""
    event = await get(session, event_id, merchant_id=merchant_id)
    targets = await _targets(session, event, body.endpoint_id if body else None)
    delivery_ids = await repository.upsert_manual_deliveries(session, event, targets)
    await record(
        session,
        actor,
        "event.redelivered",
        target_type="event",
        target_id=event.id,
        merchant_id=event.merchant_id,
        detail={"endpoints": targets, "deliveries": delivery_ids},
    )
    after_commit(session, lambda: messages.wake(runtime, delivery_ids))
    return await _deliveries(session, event.id, delivery_ids)


async def _targets(session: AsyncSession, event: Event, endpoint_id: str | None) -> list[str]:
    if endpoint_id is None:
        subscribed = await endpoints.subscribed(session, event.merchant_id, event.type)
        if not subscribed:
            raise NoWebhookEndpoints()
        return subscribed
    endpoint = await callbacks_service.get(session, event.merchant_id, endpoint_id)
    if not endpoint.enabled:
        raise WebhookEndpointDisabled(
            f"The webhook endpoint {endpoint_id} is disabled; re-enable it first with "
            f'PATCH /webhook-endpoints/{endpoint_id} {{"enabled": true}}.'
        )
    return [endpoint_id]
