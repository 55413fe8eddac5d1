"""All SQL of the audit log. Rows are only ever inserted (the database refuses the rest)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from nespay.kit.pagination import page_query
from nespay.models import AuditLog


async def insert_entry(executor: AsyncSession | AsyncConnection, values: dict[str, Any]) -> None:
    await executor.execute(insert(AuditLog).values(**values))


async def list_entries(
    session: AsyncSession,
    *,
    limit: int,
    starting_after: int | None = None,
    merchant_id: str | None = None,
    actor_id: str | None = None,
    action: str | None = None,
    target_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Sequence[AuditLog]:
    """Newest first; `starting_after` is the id of the last row of the previous page."""
    query = page_query(select(AuditLog), AuditLog.id, limit=limit, starting_after=starting_after)
    filters = {
        AuditLog.merchant_id: merchant_id,
        AuditLog.actor_id: actor_id,
        AuditLog.action: action,
        AuditLog.target_id: target_id,
    }
    for column, value in filters.items():
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(AuditLog.at >= since)
    if until is not None:
        query = query.where(AuditLog.at < until)
    return (await session.scalars(query)).all()
