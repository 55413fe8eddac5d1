"""All SQL of webhook endpoints (and what changing one does to its pending deliveries)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from nespay.callbacks.events import subscribes
from nespay.kit.pagination import page_query
from nespay.models import WebhookDelivery, WebhookEndpoint


async def get(
    session: AsyncSession, merchant_id: str, endpoint_id: str, *, for_update: bool = False
) -> WebhookEndpoint | None:
    query = select(WebhookEndpoint).where(
        WebhookEndpoint.id == endpoint_id, WebhookEndpoint.merchant_id == merchant_id
    )
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


async def list_for_merchant(
    session: AsyncSession, merchant_id: str, *, limit: int, starting_after: str | None
) -> Sequence[WebhookEndpoint]:
    query = select(WebhookEndpoint).where(WebhookEndpoint.merchant_id == merchant_id)
    page = page_query(query, WebhookEndpoint.id, limit=limit, starting_after=starting_after)
    return (await session.scalars(page)).all()


_SUBSCRIBED = text(
    "SELECT w.id FROM webhook_endpoints w WHERE w.merchant_id = :merchant_id AND "  # noqa: S608
    + subscribes("w", "CAST(:event_type AS varchar)")  # the rule's SQL; values are bound
    + " ORDER BY w.id"
)


async def subscribed(session: AsyncSession, merchant_id: str, event_type: str) -> list[str]:
    """Ids of the merchant's endpoints that get `event_type` (the relay's rule)."""
    result = await session.scalars(
        _SUBSCRIBED, {"merchant_id": merchant_id, "event_type": event_type}
    )
    return list(result.all())


async def resume_pending(session: AsyncSession, endpoint_id: str) -> list[str]:
    """Make the endpoint's pending deliveries due now; their ids."""
    result = await session.scalars(
        update(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == "pending")
        .values(next_attempt_at=func.now())
        .returning(WebhookDelivery.id)
    )
    return list(result.all())
