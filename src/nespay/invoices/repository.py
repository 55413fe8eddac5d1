"""All SQL of invoices: creation (one statement through the driver), reads with their options
and payments, the merchant's list with filters, and the expiry query."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from nespay.models import Currency, IdempotencyKey, Invoice, InvoiceOption, Payment
from nespay.wallets.provider import ReservedAddress


async def idempotency_record(
    session: AsyncSession, merchant_id: str, key: str
) -> IdempotencyKey | None:
    return await session.scalar(
        select(IdempotencyKey).where(
            IdempotencyKey.merchant_id == merchant_id, IdempotencyKey.key == key
        )
    )


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


# Invoice creation in one statement, through the driver, outside any transaction (a statement
# is atomic by itself): the idempotency claim, the invoice, its deposit addresses (reserved
# beforehand by whichever wallet provider), its options and its `invoice.created` event (the
# same columns `nespay.events.service.emit` writes). With a key that is already taken the claim
# inserts nothing and neither does anything after it; a concurrent request with the same key
# waits on the unique index until the owner's statement commits (microseconds: nothing slow
# runs inside it).
_CREATE = """
WITH claim AS (
    INSERT INTO idempotency_keys (merchant_id, key, request_hash, invoice_id)
    SELECT $2::text, $12::text, $13::text, $1::text WHERE $12::text IS NOT NULL
    ON CONFLICT (merchant_id, key) DO NOTHING
    RETURNING invoice_id
), proceed AS (
    SELECT 1 WHERE $12::text IS NULL OR EXISTS (SELECT 1 FROM claim)
), invoice AS (
    INSERT INTO invoices (id, merchant_id, status, price_amount, price_currency, order_id,
                          description, metadata, redirect_url, underpayment_tolerance_bps,
                          expires_at, created_at, updated_at)
    SELECT $1::text, $2::text, 'pending', $3::numeric, $4::text, $5::text, $6::text, $7::jsonb,
           $8::text, $9::int, $10::timestamptz, $11::timestamptz, $11::timestamptz
    FROM proceed
    RETURNING id
), addresses AS (
    INSERT INTO deposit_addresses (id, chain_family, address, provider, derivation_index,
                                   provider_wallet_id, invoice_id, merchant_id)
    SELECT a.id, a.family, a.address, a.provider, a.idx, a.wallet, invoice.id, $2::text
    FROM invoice, unnest($14::text[], $15::text[], $16::text[], $17::text[], $18::bigint[],
                         $19::text[])
         AS a(id, family, address, provider, idx, wallet)
), options AS (
    INSERT INTO invoice_options (id, invoice_id, network_code, currency_id, chain_family,
                                 address, amount, rate, amount_paid)
    SELECT o.id, invoice.id, o.network, o.currency_id, o.family, o.address, o.amount, o.rate, 0
    FROM invoice, unnest($20::text[], $21::text[], $22::text[], $23::text[], $24::text[],
                         $25::numeric[], $26::numeric[])
         AS o(id, network, currency_id, family, address, amount, rate)
), event AS (
    INSERT INTO events (id, merchant_id, type, subject_id, data, request_id)
    SELECT $27::text, $2::text, 'invoice.created', invoice.id, $28::jsonb, $29::text
    FROM invoice
)
SELECT count(*) FROM invoice
"""


async def create_in_one_statement(
    conn: Any,
    invoice: dict[str, Any],
    claim: tuple[str, str] | None,
    addresses: Sequence[ReservedAddress],
    options: list[dict[str, Any]],
    event: tuple[str, str, str | None],
) -> bool:
    """Insert everything a new invoice needs; false if the idempotency key was already taken
    (nothing is written then). `event` is (id, data JSON, request id)."""
    key, digest = claim if claim is not None else (None, None)
    created = await conn.fetchval(
        _CREATE,
        invoice["id"],
        invoice["merchant_id"],
        invoice["price_amount"],
        invoice["price_currency"],
        invoice["order_id"],
        invoice["description"],
        invoice["metadata_json"],
        invoice["redirect_url"],
        invoice["underpayment_tolerance_bps"],
        invoice["expires_at"],
        invoice["created_at"],
        key,
        digest,
        [a.id for a in addresses],
        [a.chain_family for a in addresses],
        [a.address for a in addresses],
        [a.provider for a in addresses],
        [a.derivation_index for a in addresses],
        [a.provider_wallet_id for a in addresses],
        [o["id"] for o in options],
        [o["network_code"] for o in options],
        [o["currency_id"] for o in options],
        [o["chain_family"] for o in options],
        [o["address"] for o in options],
        [o["amount"] for o in options],
        [o["rate"] for o in options],
        *event,
    )
    return bool(created)
