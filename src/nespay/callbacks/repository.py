"""All SQL of webhook endpoints."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nespay.models import WebhookEndpoint


async def get(session: AsyncSession, merchant_id: str, endpoint_id: str) -> WebhookEndpoint | None:
    return await session.scalar(
        select(WebhookEndpoint).where(
            WebhookEndpoint.id == endpoint_id, WebhookEndpoint.merchant_id == merchant_id
        )
    )


async def list_for_merchant(
    session: AsyncSession, merchant_id: str, *, limit: int, starting_after: str | None
) -> Sequence[WebhookEndpoint]:
    query = (
        select(WebhookEndpoint)
        .where(WebhookEndpoint.merchant_id == merchant_id)
        .order_by(WebhookEndpoint.id.desc())
        .limit(limit)
    )
    if starting_after is not None:
        query = query.where(WebhookEndpoint.id < starting_after)
    return (await session.scalars(query)).all()
