"""Minimal invoice rows for the deposit_addresses foreign key."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nespay.kit.ids import new_id

INSERT_INVOICE = text(
    "INSERT INTO invoices (id, merchant_id, price_amount, price_currency, expires_at) "
    "VALUES (:id, :merchant_id, 10, 'USD', now() + interval '15 minutes')"
)


async def insert_invoices(session: AsyncSession, merchant_id: str, count: int = 1) -> list[str]:
    ids = [new_id("inv") for _ in range(count)]
    await session.execute(INSERT_INVOICE, [{"id": i, "merchant_id": merchant_id} for i in ids])
    return ids
