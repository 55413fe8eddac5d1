"""All SQL of payments, `$n` statements on the scanner's driver (asyncpg) connection: matching
transfers to deposit addresses, recording payments, counting confirmations, orphaning the
payments of reorged blocks. Each is one statement, whatever the number of blocks and
transfers in the batch."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from nespay.db import Sql

_MATCH = """
SELECT o.id AS option_id, o.invoice_id, o.address, o.currency_id, i.merchant_id,
       extract(epoch FROM i.expires_at) AS expires_epoch
FROM invoice_options o JOIN invoices i ON i.id = o.invoice_id
WHERE o.chain_family = $3 AND o.network_code = $1 AND o.address = ANY($2::text[])
"""

# A payment read already deep enough (catching up) is inserted confirmed: updating it again
# in the same transaction would rewrite the row and every index of it (payments has six).
# A payment a reorg had orphaned and that is mined again is revived with its new block.
_INSERT = """
INSERT INTO payments AS p (id, invoice_id, option_id, merchant_id, network_code, currency_id,
                           tx_hash, log_index, block_number, block_hash, from_address,
                           to_address, amount, status, confirmations, late, confirmed_at)
SELECT t.id, t.invoice_id, t.option_id, t.merchant_id, $1, t.currency_id, t.tx_hash,
       t.log_index, t.block_number, t.block_hash, t.from_address, t.to_address, t.amount,
       CASE WHEN $15 - t.block_number + 1 >= $16 THEN 'confirmed' ELSE 'pending' END,
       GREATEST(0, $15 - t.block_number + 1), t.late,
       CASE WHEN $15 - t.block_number + 1 >= $16 THEN now() END
FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::int[], $9::bigint[], $10::text[], $11::text[], $12::text[], $13::numeric[],
            $14::bool[])
     WITH ORDINALITY AS t(id, invoice_id, option_id, merchant_id, currency_id, tx_hash,
                          log_index, block_number, block_hash, from_address, to_address,
                          amount, late, n)
ORDER BY t.n
ON CONFLICT (network_code, tx_hash, log_index) DO UPDATE
    SET status = excluded.status, block_number = excluded.block_number,
        block_hash = excluded.block_hash, orphaned_at = NULL, late = excluded.late,
        confirmations = excluded.confirmations, confirmed_at = excluded.confirmed_at,
        ledger_generation = p.ledger_generation + 1
    WHERE p.status = 'orphaned'
RETURNING p.id, p.invoice_id, p.merchant_id, p.status, p.tx_hash, p.log_index, p.block_number,
          p.amount, p.currency_id, p.ledger_generation
"""

_CONFIRM = """
UPDATE payments SET confirmations = $2 - block_number + 1,
    status = CASE WHEN $2 - block_number + 1 >= $3 THEN 'confirmed' ELSE status END,
    confirmed_at = CASE WHEN $2 - block_number + 1 >= $3 THEN now() END
WHERE network_code = $1 AND status = 'pending' AND block_number <= $2
  -- a re-read of the same tip changes nothing (unless the network's threshold was lowered)
  AND (confirmations <> $2 - block_number + 1 OR $2 - block_number + 1 >= $3)
RETURNING id, invoice_id, merchant_id, status, tx_hash, log_index, block_number, amount,
          currency_id, ledger_generation
"""

# `previous_status`: whether the ledger posted the payment (reverse it) or only held it (void).
_ORPHAN = """
UPDATE payments p SET status = 'orphaned', orphaned_at = now(), confirmations = 0
FROM (SELECT id, status FROM payments
      WHERE network_code = $1 AND block_number > $2 AND status <> 'orphaned'
      FOR UPDATE) old
WHERE p.id = old.id
RETURNING p.id, p.invoice_id, p.merchant_id, p.tx_hash, p.log_index, p.block_number, p.amount,
          p.currency_id, p.ledger_generation, old.status AS previous_status
"""


async def match(
    db: Sql, network: str, addresses: list[str], chain_family: str = "evm"
) -> Sequence[Any]:
    """The options on `network` whose deposit address is one of `addresses` (an indexed
    lookup per address, on (chain_family, address): the cost follows the transfers seen, not
    the open invoices)."""
    return await db.fetch(_MATCH, network, addresses, chain_family)


async def insert(
    db: Sql, network: str, rows: Sequence[dict[str, Any]], *, tip: int, needed: int
) -> Sequence[Any]:
    """Insert payments (or revive orphaned ones); returns those counted now (a payment
    already counted is left alone and not returned)."""
    columns = (
        "id",
        "invoice_id",
        "option_id",
        "merchant_id",
        "currency_id",
        "tx_hash",
        "log_index",
        "block_number",
        "block_hash",
        "from_address",
        "to_address",
    )
    return await db.fetch(
        _INSERT,
        network,
        *([row[name] for row in rows] for name in columns),
        [Decimal(row["amount"]) for row in rows],
        [row["late"] for row in rows],
        tip,
        needed,
    )


async def confirm_up_to(db: Sql, network: str, tip: int, needed: int) -> Sequence[Any]:
    """Bring pending payments' confirmations up to `tip`; returns the rows it changed."""
    return await db.fetch(_CONFIRM, network, tip, needed)


async def orphan_after(db: Sql, network: str, ancestor: int) -> Sequence[Any]:
    """Payments in blocks after `ancestor` stop counting; returns them."""
    return await db.fetch(_ORPHAN, network, ancestor)
