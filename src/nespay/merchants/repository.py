"""All SQL of merchants and their users."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from nespay.kit.pagination import page_query
from nespay.kit.search import contains_pattern
from nespay.models import Merchant, MerchantUser


async def get(
    session: AsyncSession, merchant_id: str, *, for_update: bool = False
) -> Merchant | None:
    query = select(Merchant).where(Merchant.id == merchant_id)
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


# Through the driver, outside a transaction: every request signed in with a Cognito token.
_USER_PRINCIPAL = """
SELECT u.id, u.merchant_id, u.role, m.status, m.default_expiry_s, m.underpayment_tolerance_bps
FROM merchant_users u JOIN merchants m ON m.id = u.merchant_id
WHERE u.cognito_sub = $1
"""
_READ = """
SELECT id, name, email, country, status, underpayment_tolerance_bps, default_expiry_s,
       withdrawal_approval_threshold_usd, created_at
FROM merchants WHERE id = $1
"""


async def user_principal(conn: Any, sub: str) -> Any:
    """The merchant user of a Cognito `sub` with its merchant's status and settings, or None."""
    return await conn.fetchrow(_USER_PRINCIPAL, sub)


async def read(conn: Any, merchant_id: str) -> Any:
    """The merchant as the API shows it (a record), or None."""
    return await conn.fetchrow(_READ, merchant_id)


async def user_by_sub(session: AsyncSession, sub: str) -> MerchantUser | None:
    return await session.scalar(select(MerchantUser).where(MerchantUser.cognito_sub == sub))


async def users(
    session: AsyncSession, merchant_id: str, *, limit: int, starting_after: str | None
) -> Sequence[MerchantUser]:
    query = select(MerchantUser).where(MerchantUser.merchant_id == merchant_id)
    page = page_query(query, MerchantUser.id, limit=limit, starting_after=starting_after)
    return (await session.scalars(page)).all()


async def user(session: AsyncSession, merchant_id: str, user_id: str) -> MerchantUser | None:
    return await session.scalar(
        select(MerchantUser).where(
            MerchantUser.id == user_id, MerchantUser.merchant_id == merchant_id
        )
    )


async def search(
    session: AsyncSession,
    q: str | None,
    *,
    status: str | None,
    limit: int,
    starting_after: str | None,
) -> Sequence[Merchant]:
    """Fragment search over id, name and email (trigram indexes make `ILIKE '%…%'` cheap)."""
    query = page_query(select(Merchant), Merchant.id, limit=limit, starting_after=starting_after)
    if q:
        pattern = contains_pattern(q)
        query = query.where(
            or_(
                Merchant.name.ilike(pattern),
                Merchant.email.ilike(pattern),
                Merchant.id == q,
            )
        )
    if status is not None:
        query = query.where(Merchant.status == status)
    return (await session.scalars(query)).all()


async def count_by_status(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(Merchant.status, func.count()).group_by(Merchant.status))
    return {status: count for status, count in rows.tuples()}
