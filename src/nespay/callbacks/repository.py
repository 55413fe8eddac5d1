"""All SQL of webhook endpoints."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nespay.kit.pagination import page_query
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
    query = select(WebhookEndpoint).where(WebhookEndpoint.merchant_id == merchant_id)
    page = page_query(query, WebhookEndpoint.id, limit=limit, starting_after=starting_after)
    return (await session.scalars(page)).all()
