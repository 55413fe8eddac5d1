"""All SQL of webhook endpoints (and what changing one does to its pending deliveries)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import any_, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from nespay.callbacks.events import WILDCARD
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


async def subscribed(session: AsyncSession, merchant_id: str, event_type: str) -> list[str]:
    """Ids of the merchant's enabled endpoints that take `event_type` (listed, or `*`)."""
    query = (
        select(WebhookEndpoint.id)
        .where(
            WebhookEndpoint.merchant_id == merchant_id,
            WebhookEndpoint.enabled.is_(True),
            or_(
                literal(event_type) == any_(WebhookEndpoint.events),
                literal(WILDCARD) == any_(WebhookEndpoint.events),
            ),
        )
        .order_by(WebhookEndpoint.id)
    )
    return list((await session.scalars(query)).all())


async def resume_pending(session: AsyncSession, endpoint_id: str) -> list[str]:
    """Make the endpoint's pending deliveries due now; their ids."""
    result = await session.scalars(
        update(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == "pending")
        .values(next_attempt_at=func.now())
        .returning(WebhookDelivery.id)
    )
    return list(result.all())
