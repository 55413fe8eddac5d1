"""All SQL of invoices: the creation inserts (Core, on the hot path), reads with their options
and payments, the merchant's list with filters, and the expiry query."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from nespay.models import Currency, IdempotencyKey, Invoice, InvoiceOption, Payment

_CLAIM_KEY = text(
    """
    INSERT INTO idempotency_keys (merchant_id, key, request_hash, invoice_id)
    VALUES (:merchant_id, :key, :request_hash, :invoice_id)
    ON CONFLICT (merchant_id, key) DO NOTHING
    RETURNING invoice_id
    """
)


async def claim_idempotency_key(
    session: AsyncSession, merchant_id: str, key: str, request_hash: str, invoice_id: str
) -> bool:
    """True if this request now owns the key. A concurrent request with the same key waits on
    the unique index until the owner commits, then finds the key taken."""
    params = {
        "merchant_id": merchant_id,
        "key": key,
        "request_hash": request_hash,
        "invoice_id": invoice_id,
    }
    return (await session.execute(_CLAIM_KEY, params)).scalar_one_or_none() is not None


async def idempotency_record(
    session: AsyncSession, merchant_id: str, key: str
) -> IdempotencyKey | None:
    return await session.scalar(
        select(IdempotencyKey).where(
            IdempotencyKey.merchant_id == merchant_id, IdempotencyKey.key == key
        )
    )


async def insert_invoice(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(Invoice).values(**values))


async def insert_options(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    await session.execute(insert(InvoiceOption), rows)


async def get(
    session: AsyncSession, invoice_id: str, *, merchant_id: str | None, for_update: bool = False
) -> Invoice | None:
    query = select(Invoice).where(Invoice.id == invoice_id)
    if merchant_id is not None:
        query = query.where(Invoice.merchant_id == merchant_id)
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


async def options_of(
    session: AsyncSession, invoice_ids: Sequence[str]
) -> list[tuple[InvoiceOption, Currency]]:
    rows = await session.execute(
        select(InvoiceOption, Currency)
        .join(Currency, Currency.id == InvoiceOption.currency_id)
        .where(InvoiceOption.invoice_id.in_(invoice_ids))
        .order_by(InvoiceOption.invoice_id, InvoiceOption.id)
    )
    return [(option, currency) for option, currency in rows.tuples()]


async def payments_of(session: AsyncSession, invoice_ids: Sequence[str]) -> Sequence[Payment]:
    return (
        await session.scalars(
            select(Payment)
            .where(Payment.invoice_id.in_(invoice_ids))
            .order_by(Payment.block_number, Payment.log_index)
        )
    ).all()


async def list_for_merchant(
    session: AsyncSession,
    merchant_id: str,
    *,
    limit: int,
    starting_after: str | None,
    status: str | None,
    order_id: str | None,
    created_gte: datetime | None,
    created_lt: datetime | None,
) -> Sequence[Invoice]:
    query = (
        select(Invoice)
        .where(Invoice.merchant_id == merchant_id)
        .order_by(Invoice.id.desc())
        .limit(limit)
    )
    if starting_after is not None:
        query = query.where(Invoice.id < starting_after)
    if status is not None:
        query = query.where(Invoice.status == status)
    if order_id is not None:
        query = query.where(Invoice.order_id == order_id)
    if created_gte is not None:
        query = query.where(Invoice.created_at >= created_gte)
    if created_lt is not None:
        query = query.where(Invoice.created_at < created_lt)
    return (await session.scalars(query)).all()


_DUE_FOR_EXPIRY = text(
    """
    SELECT id FROM invoices
    WHERE status IN ('pending', 'partially_paid') AND expires_at <= now()
    ORDER BY expires_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
    """
)


async def lock_due_for_expiry(conn: AsyncConnection | AsyncSession, limit: int) -> list[str]:
    """Invoices past their expiry, through the partial index on open invoices; rows another
    transaction holds (a payment being recorded) are skipped and seen on the next run."""
    return list((await conn.execute(_DUE_FOR_EXPIRY, {"limit": limit})).scalars())


async def set_fields(session: AsyncSession, invoice_id: str, **values: Any) -> None:
    await session.execute(
        update(Invoice).where(Invoice.id == invoice_id).values(updated_at=text("now()"), **values)
    )
