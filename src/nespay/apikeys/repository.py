"""All SQL of API keys."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from nespay.kit.pagination import page_query
from nespay.models import ApiKey, Merchant


@dataclass(frozen=True)
class KeyRecord:
    """What authentication needs, in one indexed lookup by prefix."""

    id: str
    merchant_id: str
    secret_hash: bytes
    scopes: frozenset[str]
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    merchant_status: str


async def find_by_prefix(session: AsyncSession, prefix: str) -> KeyRecord | None:
    row = (
        await session.execute(
            select(
                ApiKey.id,
                ApiKey.merchant_id,
                ApiKey.secret_hash,
                ApiKey.scopes,
                ApiKey.expires_at,
                ApiKey.revoked_at,
                ApiKey.last_used_at,
                Merchant.status,
            )
            .join(Merchant, Merchant.id == ApiKey.merchant_id)
            .where(ApiKey.prefix == prefix)
        )
    ).one_or_none()
    if row is None:
        return None
    return KeyRecord(row[0], row[1], row[2], frozenset(row[3]), row[4], row[5], row[6], row[7])


async def touch(session: AsyncSession, key_id: str, moment: datetime) -> None:
    await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=moment))


async def get(session: AsyncSession, merchant_id: str, key_id: str) -> ApiKey | None:
    return await session.scalar(
        select(ApiKey).where(ApiKey.id == key_id, ApiKey.merchant_id == merchant_id)
    )


async def list_for_merchant(
    session: AsyncSession, merchant_id: str, *, limit: int, starting_after: str | None
) -> Sequence[ApiKey]:
    query = select(ApiKey).where(ApiKey.merchant_id == merchant_id)
    page = page_query(query, ApiKey.id, limit=limit, starting_after=starting_after)
    return (await session.scalars(page)).all()
