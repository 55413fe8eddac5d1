"""All SQL of invoices: creation (one statement through the driver), reads with their options
and payments, the merchant's list with filters, and the expiry query."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nespay.db import Sql
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


# --- status changes (nespay.invoices.states), `$n` SQL on `nespay.db.Sql` ---------------------

# In id order, so concurrent changers (two networks' scanners for one fiat invoice, the expiry
# job, a cancel) cannot deadlock. NO KEY: payments inserted for these invoices hold KEY SHARE
# on them (foreign key).
_LOCK = "SELECT id FROM invoices WHERE id = ANY($1::text[]) ORDER BY id FOR NO KEY UPDATE"

_LOCK_ONE = """
SELECT id, merchant_id, status, marked_at IS NOT NULL AS marked, paid_ppm, overpaid, paid_late
FROM invoices WHERE id = $1 AND ($2::text IS NULL OR merchant_id = $2)
FOR NO KEY UPDATE
"""

# `ix_payments_option_id` makes each option's sum an index lookup, not a scan of every payment.
_REFRESH_OPTIONS = """
UPDATE invoice_options o SET amount_paid = COALESCE(
    (SELECT sum(p.amount) FROM payments p WHERE p.option_id = o.id AND p.status <> 'orphaned'),
    0)
WHERE o.invoice_id = ANY($1::text[])
"""

# Per option (in id order): amount due, counted and, for a confirmed invoice, confirmed base
# units; whether a payment still confirms, whether a counted one came after expiry.
_FACTS = """
SELECT i.id, i.merchant_id, i.status, i.underpayment_tolerance_bps AS tolerance_bps,
       i.expired_at IS NOT NULL AS expired, i.marked_at IS NOT NULL AS marked,
       i.overpaid, i.paid_late, o.due, o.paid, o.confirmed,
       EXISTS (SELECT 1 FROM payments p WHERE p.invoice_id = i.id AND p.status = 'pending')
           AS any_pending,
       EXISTS (SELECT 1 FROM payments p WHERE p.invoice_id = i.id AND p.late
               AND p.status <> 'orphaned') AS any_late
FROM invoices i
CROSS JOIN LATERAL (
    SELECT array_agg(o.amount ORDER BY o.id) AS due,
           array_agg(o.amount_paid ORDER BY o.id) AS paid,
           array_agg(CASE WHEN i.status = 'confirmed' THEN
                         (SELECT COALESCE(sum(p.amount), 0) FROM payments p
                          WHERE p.option_id = o.id AND p.status = 'confirmed')
                     ELSE 0 END ORDER BY o.id) AS confirmed
    FROM invoice_options o WHERE o.invoice_id = i.id
) o
WHERE i.id = ANY($1::text[])
ORDER BY i.id
"""

_SET_STATUSES = """
UPDATE invoices i SET status = c.status, paid_ppm = c.ppm,
    overpaid = c.overpaid, paid_late = c.paid_late, updated_at = now(),
    paid_at = CASE WHEN c.status IN ('paid', 'confirmed')
                   THEN COALESCE(i.paid_at, now()) ELSE i.paid_at END,
    confirmed_at = CASE WHEN c.status = 'confirmed'
                        THEN COALESCE(i.confirmed_at, now()) ELSE i.confirmed_at END,
    invalid_at = CASE WHEN c.status = 'invalid' AND i.status <> 'invalid'
                      THEN now() ELSE i.invalid_at END,
    cancelled_at = CASE WHEN c.status = 'cancelled' THEN now() ELSE i.cancelled_at END,
    marked_at = CASE WHEN c.marked THEN now() ELSE i.marked_at END,
    status_reason = COALESCE(c.reason, i.status_reason)
FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bool[], $5::bool[], $6::bool[],
            $7::text[]) AS c(id, status, ppm, overpaid, paid_late, marked, reason)
WHERE i.id = c.id
"""

# Open invoices past their expiry whose every option's network the scanner has read up to
# the expiry (chain time): a payment mined before `expires_at` but not yet read (scanner lag,
# an RPC outage, the jobs process down) finds its invoice still open. A virtual account's
# option (`va`: no chain, no scanner) does not wait: its payments arrive by callback, and one
# that comes late is credited and flagged (docs/intrajasa.md). Rows another transaction holds
# (a payment being recorded) are skipped and seen on the next run.
_MARK_EXPIRED = """
WITH due AS (
    SELECT i.id FROM invoices i
    WHERE i.status IN ('pending', 'partially_paid') AND i.expires_at <= now()
      AND NOT EXISTS (
          SELECT 1 FROM invoice_options o
          LEFT JOIN chain_cursors c ON c.network_code = o.network_code
          WHERE o.invoice_id = i.id AND o.chain_family <> 'va'
            AND (c.block_timestamp IS NULL
                 OR c.block_timestamp < extract(epoch FROM i.expires_at)))
    ORDER BY i.expires_at
    LIMIT $1
    FOR NO KEY UPDATE OF i SKIP LOCKED
)
UPDATE invoices i SET expired_at = now() FROM due WHERE i.id = due.id
RETURNING i.id
"""


# Due invoices held open because a scanner has not read their network up to the expiry, by
# network: what the expiry job's outcome tells operators.
_WAITING = """
SELECT o.network_code, count(DISTINCT i.id) AS invoices
FROM invoices i
JOIN invoice_options o ON o.invoice_id = i.id
LEFT JOIN chain_cursors c ON c.network_code = o.network_code
WHERE i.status IN ('pending', 'partially_paid') AND i.expires_at <= now()
  AND o.chain_family <> 'va'
  AND (c.block_timestamp IS NULL OR c.block_timestamp < extract(epoch FROM i.expires_at))
GROUP BY o.network_code ORDER BY o.network_code
"""


async def due_waiting_for_scanners(db: Sql) -> dict[str, int]:
    return {row["network_code"]: row["invoices"] for row in await db.fetch(_WAITING)}


async def lock_invoices(db: Sql, ids: Sequence[str]) -> None:
    await db.execute(_LOCK, list(ids))


async def lock_invoice(db: Sql, invoice_id: str, merchant_id: str | None) -> Any:
    """The invoice's status row, locked; None if there is none (for this merchant)."""
    rows = await db.fetch(_LOCK_ONE, invoice_id, merchant_id)
    return rows[0] if rows else None


async def refresh_option_sums(db: Sql, ids: Sequence[str]) -> None:
    await db.execute(_REFRESH_OPTIONS, list(ids))


async def settlement_facts(db: Sql, ids: Sequence[str]) -> Sequence[Any]:
    return await db.fetch(_FACTS, list(ids))


async def set_statuses(db: Sql, rows: Sequence[tuple[Any, ...]]) -> None:
    """(id, status, paid ppm, overpaid, paid late, marked, reason) rows."""
    if rows:
        await db.execute(_SET_STATUSES, *(list(column) for column in zip(*rows, strict=True)))


async def mark_expired_due(db: Sql, limit: int) -> list[str]:
    """Stamp `expired_at` on up to `limit` invoices that are due (see `_MARK_EXPIRED`), locked
    until the caller's transaction ends."""
    return [row["id"] for row in await db.fetch(_MARK_EXPIRED, limit)]
