"""All SQL of the event log: writing events, reading them, and the deliveries as the event
routes see them (listing with their attempts, and the upsert of a manual redelivery)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Row, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from nespay.db import Sql
from nespay.events.schemas import EventFilters
from nespay.kit.ids import new_id
from nespay.kit.pagination import page_query
from nespay.models import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint

ATTEMPT_LOG_LIMIT = 50

_INSERT = """
INSERT INTO events (id, merchant_id, type, subject_id, data, request_id)
SELECT e.id, e.merchant_id, e.type, e.subject_id, e.data::jsonb, $6
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
     WITH ORDINALITY AS e(id, merchant_id, type, subject_id, data, n)
ORDER BY e.n
"""


async def insert_events(
    db: Sql,
    ids: list[str],
    rows: Sequence[tuple[str, str, str, str]],
    request_id: str | None,
) -> None:
    """(merchant id, type, subject id, data as JSON) rows in one statement, in list order
    (their `seq` follows it)."""
    await db.execute(
        _INSERT,
        ids,
        [row[0] for row in rows],
        [row[1] for row in rows],
        [row[2] for row in rows],
        [row[3] for row in rows],
        request_id,
    )


async def get(session: AsyncSession, event_id: str, *, merchant_id: str | None) -> Event | None:
    query = select(Event).where(Event.id == event_id)
    if merchant_id is not None:
        query = query.where(Event.merchant_id == merchant_id)
    return await session.scalar(query)


async def list_events(
    session: AsyncSession,
    *,
    merchant_id: str | None,
    filters: EventFilters,
    limit: int,
    starting_after: str | None,
) -> Sequence[Event]:
    query = select(Event)
    for column, value in (
        (Event.merchant_id, merchant_id),
        (Event.type, filters.type),
        (Event.subject_id, filters.subject_id),
    ):
        if value is not None:
            query = query.where(column == value)
    if filters.created_gte is not None:
        query = query.where(Event.created_at >= filters.created_gte)
    if filters.created_lte is not None:
        query = query.where(Event.created_at <= filters.created_lte)
    page = page_query(query, Event.id, limit=limit, starting_after=starting_after)
    return (await session.scalars(page)).all()


async def delivery_counts(session: AsyncSession, event_id: str) -> dict[str, int]:
    rows = await session.execute(
        select(WebhookDelivery.status, func.count())
        .where(WebhookDelivery.event_id == event_id)
        .group_by(WebhookDelivery.status)
    )
    return {status: count for status, count in rows.tuples()}


async def deliveries(
    session: AsyncSession, event_id: str, *, delivery_ids: Sequence[str] | None = None
) -> Sequence[Row[tuple[WebhookDelivery, str]]]:
    """The event's deliveries (or only `delivery_ids`) with their endpoint's URL, oldest first."""
    query = (
        select(WebhookDelivery, WebhookEndpoint.url)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookDelivery.event_id == event_id)
        .order_by(WebhookDelivery.id)
    )
    if delivery_ids is not None:
        query = query.where(WebhookDelivery.id.in_(delivery_ids))
    return (await session.execute(query)).all()


async def attempts(session: AsyncSession, delivery_ids: Sequence[str]) -> Sequence[WebhookAttempt]:
    """The newest ATTEMPT_LOG_LIMIT attempts of each delivery, newest first."""
    if not delivery_ids:
        return []
    ranked = (
        select(
            WebhookAttempt.id,
            func.row_number()
            .over(partition_by=WebhookAttempt.delivery_id, order_by=WebhookAttempt.id.desc())
            .label("rank"),
        )
        .where(WebhookAttempt.delivery_id.in_(delivery_ids))
        .subquery()
    )
    query = (
        select(WebhookAttempt)
        .join(ranked, ranked.c.id == WebhookAttempt.id)
        .where(ranked.c.rank <= ATTEMPT_LOG_LIMIT)
        .order_by(WebhookAttempt.id.desc())
    )
    return (await session.scalars(query)).all()


async def upsert_manual_deliveries(
    session: AsyncSession, event: Event, endpoint_ids: Sequence[str]
) -> list[str]:
    """Make the event's delivery to each endpoint pending and due now, as a manual
    redelivery with a fresh retry window (a new row where there was none); their ids."""
    now = func.now()
    statement = insert(WebhookDelivery).values(
        [
            {
                "id": new_id("whd"),
                "event_id": event.id,
                "endpoint_id": endpoint_id,
                "merchant_id": event.merchant_id,
                "subject_id": event.subject_id,
                "event_seq": event.seq,
                "status": "pending",
                "manual": True,
            }
            for endpoint_id in endpoint_ids
        ]
    )
    statement = statement.on_conflict_do_update(
        index_elements=[WebhookDelivery.event_id, WebhookDelivery.endpoint_id],
        set_={
            "status": "pending",
            "next_attempt_at": now,
            "window_started_at": now,
            "lease_until": None,
            "failed_at": None,
            "manual": True,
        },
    ).returning(WebhookDelivery.id)
    return list((await session.scalars(statement)).all())
