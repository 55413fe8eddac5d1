"""All SQL of API keys."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nespay.kit.pagination import page_query
from nespay.models import ApiKey


@dataclass(frozen=True)
class KeyRecord:
    """What authentication needs, in one indexed lookup by prefix (with the merchant's status
    and the settings invoice creation reads, so no second query is needed)."""

    id: str
    merchant_id: str
    secret_hash: bytes
    scopes: frozenset[str]
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    merchant_status: str
    default_expiry_s: int
    underpayment_tolerance_bps: int


# Through the driver (asyncpg), outside a transaction: the hot path of every keyed request.
_FIND_BY_PREFIX = """
SELECT k.id, k.merchant_id, k.secret_hash, k.scopes, k.expires_at, k.revoked_at, k.last_used_at,
       m.status, m.default_expiry_s, m.underpayment_tolerance_bps
FROM api_keys k JOIN merchants m ON m.id = k.merchant_id
WHERE k.prefix = $1
"""
_TOUCH = "UPDATE api_keys SET last_used_at = $2 WHERE id = $1"


async def find_by_prefix(conn: Any, prefix: str) -> KeyRecord | None:
    row = await conn.fetchrow(_FIND_BY_PREFIX, prefix)
    if row is None:
        return None
    return KeyRecord(
        row[0],
        row[1],
        bytes(row[2]),
        frozenset(row[3]),
        row[4],
        row[5],
        row[6],
        row[7],
        row[8],
        row[9],
    )


async def touch(conn: Any, key_id: str, moment: datetime) -> None:
    """`last_used_at`, committed on its own (never inside a request's transaction, where the
    row lock would queue every other request of the key until that request commits)."""
    await conn.execute(_TOUCH, key_id, moment)


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
