"""All SQL of the Intrajasa integration, `$n` statements on the caller's connection."""

from __future__ import annotations

from typing import Any

from nespay.db import Sql

# A VA is an invoice option of the `va` family whose address is the VA number, and the
# `deposit_addresses` row that holds Intrajasa's merchant reference (`provider_wallet_id`).
# The columns `nespay.payments.service.record_settled` reads of an option are included.
_VA = """
SELECT o.id AS option_id, o.invoice_id, o.network_code, o.currency_id, o.address AS va_number,
       o.amount, i.merchant_id, extract(epoch FROM i.expires_at) AS expires_epoch,
       d.provider_wallet_id AS merchant_ref_code
FROM invoice_options o
JOIN invoices i ON i.id = o.invoice_id
JOIN deposit_addresses d ON d.invoice_id = o.invoice_id AND d.chain_family = 'va'
                        AND d.address = o.address
WHERE o.chain_family = 'va' AND o.address = $1
"""

_PAID_BY = """
SELECT tx_hash FROM payments WHERE option_id = $1 AND status <> 'orphaned'
ORDER BY detected_at, id LIMIT 1
"""

_HOLDER = (
    "SELECT provider_wallet_id FROM deposit_addresses WHERE chain_family = 'va' AND address = $1"
)


async def virtual_account(db: Sql, va_number: str) -> Any:
    """The VA with this number (with its option, invoice and merchant reference), or None."""
    rows = await db.fetch(_VA, va_number)
    return rows[0] if rows else None


async def paid_by(db: Sql, option_id: str) -> str | None:
    """The transaction reference of the payment counted on this VA's option, if any."""
    rows = await db.fetch(_PAID_BY, option_id)
    return rows[0]["tx_hash"] if rows else None


async def holder_of(db: Sql, va_number: str) -> str | None:
    """The merchant reference an existing VA with this number was made for, if any."""
    return await db.fetchval(_HOLDER, va_number)
