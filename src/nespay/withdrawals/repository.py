"""All SQL of withdrawals, `$n` statements on the caller's transaction (`nespay.db.sql`)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from nespay.db import Sql

COLUMNS = """
w.id, w.merchant_id, w.kind, w.status, w.network_code, w.currency_id, c.code AS currency,
c.decimals, c.contract, w.amount, w.address, w.invoice_id, w.requires_approval, w.requested_by,
w.requested_by_email, w.tx_hash, w.decision_reason, w.failure_reason, w.created_at,
w.updated_at, w.broadcast_at, w.confirmed_at, w.ended_at, w.request_hash, w.outgoing_tx_id
"""

_CURRENCY = """
SELECT c.id, c.code, c.decimals, c.contract, n.code AS network, n.chain_family
FROM currencies c JOIN networks n ON n.code = c.network_code
WHERE n.code = $1 AND c.code = $2
"""

# Claims the merchant's Idempotency-Key with the row: a concurrent request with the same key
# waits for this one's commit and then inserts nothing (and answers with this withdrawal).
_INSERT = """
INSERT INTO withdrawals (id, merchant_id, kind, invoice_id, network_code, currency_id, amount,
                         address, status, requires_approval, requested_by, requested_by_email,
                         idempotency_key, request_hash)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (merchant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id
"""

# Column lists are constants: no value is ever formatted into these statements.
_GET = f"""
SELECT {COLUMNS} FROM withdrawals w JOIN currencies c ON c.id = w.currency_id
WHERE w.id = $1 AND ($2::text IS NULL OR w.merchant_id = $2)
"""  # noqa: S608

_LOCK = _GET + " FOR UPDATE OF w"

_BY_KEY = f"""
SELECT {COLUMNS} FROM withdrawals w JOIN currencies c ON c.id = w.currency_id
WHERE w.merchant_id = $1 AND w.idempotency_key = $2
"""  # noqa: S608

_SET_STATUS = """
UPDATE withdrawals SET status = $2::text, updated_at = now(),
    decided_by = coalesce($3::text, decided_by),
    decided_at = CASE WHEN $3::text IS NULL THEN decided_at ELSE now() END,
    decision_reason = coalesce($4::text, decision_reason),
    failure_reason = coalesce($5::text, failure_reason),
    tx_hash = coalesce($6::text, tx_hash),
    broadcast_at = CASE WHEN $2::text = 'broadcast' THEN now() ELSE broadcast_at END,
    confirmed_at = CASE WHEN $2::text = 'confirmed' THEN now() ELSE confirmed_at END,
    ended_at = CASE WHEN $2::text IN ('confirmed', 'rejected', 'cancelled', 'failed') THEN now()
               ELSE ended_at END
WHERE id = $1
"""

_LIST = f"""
SELECT {COLUMNS} FROM withdrawals w JOIN currencies c ON c.id = w.currency_id
WHERE ($1::text IS NULL OR w.merchant_id = $1) AND ($2::text IS NULL OR w.status = $2)
  AND ($3::text IS NULL OR w.id < $3) AND ($4::text IS NULL OR w.invoice_id = $4)
ORDER BY w.id DESC LIMIT $5
"""  # noqa: S608

# What an invoice received per currency (counted, confirmed payments) and what its refunds
# already hold or sent (those not ended without sending).
_REFUNDABLE = """
SELECT p.currency_id, c.code AS currency, c.decimals, p.network_code, sum(p.amount) AS paid,
       coalesce((SELECT sum(w.amount) FROM withdrawals w
                 WHERE w.invoice_id = $1 AND w.currency_id = p.currency_id
                   AND w.status NOT IN ('rejected', 'cancelled', 'failed')), 0) AS refunded
FROM payments p JOIN currencies c ON c.id = p.currency_id
WHERE p.invoice_id = $1 AND p.status = 'confirmed'
GROUP BY p.currency_id, c.code, c.decimals, p.network_code
"""

# A deposit address, or one of the hot wallets (sending to ourselves moves nothing and would
# look like a payment or a top-up).
_OWN_ADDRESS = """
SELECT EXISTS (SELECT 1 FROM deposit_addresses WHERE chain_family = $1 AND address = $2)
    OR EXISTS (SELECT 1 FROM hot_wallets WHERE address = $2)
    OR EXISTS (SELECT 1 FROM networks WHERE treasury_address = $2)
"""


async def currency(db: Sql, network: str, code: str) -> Any | None:
    rows = await db.fetch(_CURRENCY, network, code)
    return rows[0] if rows else None


async def insert(db: Sql, values: Sequence[Any]) -> str | None:
    return await db.fetchval(_INSERT, *values)


async def get(db: Sql, withdrawal_id: str, merchant_id: str | None) -> Any | None:
    rows = await db.fetch(_GET, withdrawal_id, merchant_id)
    return rows[0] if rows else None


async def lock(db: Sql, withdrawal_id: str, merchant_id: str | None = None) -> Any | None:
    rows = await db.fetch(_LOCK, withdrawal_id, merchant_id)
    return rows[0] if rows else None


async def by_key(db: Sql, merchant_id: str, key: str) -> Any | None:
    rows = await db.fetch(_BY_KEY, merchant_id, key)
    return rows[0] if rows else None


async def set_status(
    db: Sql,
    withdrawal_id: str,
    status: str,
    *,
    decided_by: str | None = None,
    reason: str | None = None,
    failure: str | None = None,
    tx_hash: str | None = None,
) -> None:
    await db.execute(_SET_STATUS, withdrawal_id, status, decided_by, reason, failure, tx_hash)


async def list_(
    db: Sql,
    *,
    merchant_id: str | None,
    status: str | None,
    starting_after: str | None,
    invoice_id: str | None,
    limit: int,
) -> Sequence[Any]:
    return await db.fetch(_LIST, merchant_id, status, starting_after, invoice_id, limit)


async def refundable(db: Sql, invoice_id: str) -> Sequence[Any]:
    return await db.fetch(_REFUNDABLE, invoice_id)


async def is_own_address(db: Sql, chain_family: str, address: str) -> bool:
    return bool(await db.fetchval(_OWN_ADDRESS, chain_family, address))


async def lock_invoice(db: Sql, invoice_id: str, merchant_id: str) -> bool:
    """Lock the merchant's invoice (its refunds are judged one at a time); False if none."""
    return bool(
        await db.fetchval(
            "SELECT true FROM invoices WHERE id = $1 AND merchant_id = $2 FOR UPDATE",
            invoice_id,
            merchant_id,
        )
    )


async def approval_threshold(db: Sql, merchant_id: str) -> Decimal:
    """The merchant's withdrawal approval threshold, in USD."""
    return Decimal(
        await db.fetchval(
            "SELECT withdrawal_approval_threshold_usd FROM merchants WHERE id = $1", merchant_id
        )
    )


async def set_outgoing(db: Sql, withdrawal_id: str, tx_id: str) -> None:
    await db.execute(
        "UPDATE withdrawals SET outgoing_tx_id = $2 WHERE id = $1", withdrawal_id, tx_id
    )
