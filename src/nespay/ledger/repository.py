"""All SQL of the ledger: `$n` statements on whatever connection the caller's transaction runs
on (the scanner's asyncpg connection, a request's session through `nespay.db.sql`). Each
takes a whole batch of transfers or accounts, one statement whatever its size."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nespay.db import Sql

# A batch's accounts, locked in id order (two batches never wait on each other in a cycle).
# NO KEY UPDATE, the lock an UPDATE of the counters takes anyway: it does not block the key
# share lock that inserting a transfer takes on its accounts (the foreign keys).
_LOCK = """
SELECT id, credits_posted, debits_posted, debits_pending
FROM ledger_accounts WHERE id = ANY($1::text[]) ORDER BY id FOR NO KEY UPDATE
"""

# A concurrent creator of the same account makes this wait for its commit, then do nothing:
# the lock that follows then sees its row. No conflict target: the table has two unique
# indexes on the id (the key, and (id, currency_id) that transfers reference), and a
# concurrent insert can trip either first; naming only the key let the other raise.
_CREATE = """
INSERT INTO ledger_accounts (id, merchant_id, kind, currency_id, limited)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bool[])
ORDER BY 1
ON CONFLICT DO NOTHING
RETURNING id
"""

_INSERT = """
INSERT INTO ledger_transfers (id, key, type, code, debit_account_id, credit_account_id,
                              currency_id, amount, merchant_id, source_type, source_id, overdrew)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::numeric[], $9::text[], $10::text[], $11::text[], $12::bool[])
ON CONFLICT (key) DO NOTHING
RETURNING id, key
"""

# Resolve pending transfers: only one whose accounts are the ones named, by an amount no
# larger than it held, and at most once (the unique index on pending_id: a second resolution
# under another key inserts nothing).
_RESOLVE = """
WITH r AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::text[], $8::numeric[], $9::text[], $10::text[],
                         $11::text[])
        AS r(id, key, type, code, pending_key, debit_account_id, credit_account_id, amount,
             merchant_id, source_type, source_id)
), p AS (
    SELECT id, key, debit_account_id, credit_account_id, currency_id, amount
    FROM ledger_transfers WHERE key = ANY($5::text[]) AND type = 'pending'
), ins AS (
    INSERT INTO ledger_transfers (id, key, type, code, debit_account_id, credit_account_id,
                                  currency_id, amount, pending_id, merchant_id, source_type,
                                  source_id)
    SELECT r.id, r.key, r.type, r.code, p.debit_account_id, p.credit_account_id, p.currency_id,
           CASE WHEN r.type = 'void' THEN 0 ELSE coalesce(r.amount, p.amount) END, p.id,
           r.merchant_id, r.source_type, r.source_id
    FROM r JOIN p ON p.key = r.pending_key
        AND p.debit_account_id = r.debit_account_id AND p.credit_account_id = r.credit_account_id
    WHERE r.type = 'void' OR coalesce(r.amount, p.amount) <= p.amount
    ON CONFLICT DO NOTHING
    RETURNING id, key, pending_id, amount
)
SELECT ins.id, ins.key, ins.amount, p.amount AS pending_amount
FROM ins JOIN p ON p.id = ins.pending_id
"""

# Apply each account's change; an account that must stay covered (a limited account debited
# by anything but a forced reversal) is changed only if it stays covered, in this same
# statement, on the row it locks: no read-then-write window.
_APPLY = """
UPDATE ledger_accounts a
SET debits_pending = a.debits_pending + d.debits_pending,
    debits_posted = a.debits_posted + d.debits_posted,
    credits_pending = a.credits_pending + d.credits_pending,
    credits_posted = a.credits_posted + d.credits_posted
FROM unnest($1::text[], $2::numeric[], $3::numeric[], $4::numeric[], $5::numeric[], $6::bool[])
    AS d(id, debits_pending, debits_posted, credits_pending, credits_posted, covered)
WHERE a.id = d.id
  AND (NOT d.covered
       OR a.debits_posted + d.debits_posted + a.debits_pending + d.debits_pending
          <= a.credits_posted + d.credits_posted)
RETURNING a.id
"""

_BY_KEYS = """
SELECT t.id, t.key, t.type, t.code, t.debit_account_id, t.credit_account_id, t.amount,
       p.key AS pending_key
FROM ledger_transfers t LEFT JOIN ledger_transfers p ON p.id = t.pending_id
WHERE t.key = ANY($1::text[])
"""


async def lock_accounts(db: Sql, ids: list[str]) -> Sequence[Any]:
    return await db.fetch(_LOCK, ids)


async def create_accounts(
    db: Sql, rows: Sequence[tuple[str, str | None, str, str, bool]]
) -> set[str]:
    """Create the accounts that do not exist yet; returns the ids created (by this
    transaction, not yet committed)."""
    created = await db.fetch(_CREATE, *(list(column) for column in zip(*rows, strict=True)))
    return {row["id"] for row in created}


async def insert(db: Sql, rows: Sequence[tuple[Any, ...]]) -> Sequence[Any]:
    """Insert new transfers (12 columns, see `_INSERT`); returns those inserted."""
    return await db.fetch(_INSERT, *(list(column) for column in zip(*rows, strict=True)))


async def resolve(db: Sql, rows: Sequence[tuple[Any, ...]]) -> Sequence[Any]:
    """Insert post/void transfers (11 columns, see `_RESOLVE`); returns those inserted, each
    with the amount its pending transfer held."""
    return await db.fetch(_RESOLVE, *(list(column) for column in zip(*rows, strict=True)))


async def apply(db: Sql, rows: Sequence[tuple[Any, ...]]) -> set[str]:
    """Change the accounts' counters; returns the ids changed (a covered account that would
    have gone short is left out, unchanged)."""
    result = await db.fetch(_APPLY, *(list(column) for column in zip(*rows, strict=True)))
    return {row["id"] for row in result}


async def by_keys(db: Sql, keys: list[str]) -> Sequence[Any]:
    return await db.fetch(_BY_KEYS, keys)


async def amounts(db: Sql, keys: list[str]) -> dict[str, int]:
    """The amounts of the transfers recorded under `keys` (those that exist)."""
    rows = await db.fetch(
        "SELECT key, amount FROM ledger_transfers WHERE key = ANY($1::text[])", keys
    )
    return {row["key"]: int(row["amount"]) for row in rows}


async def fee_rates(db: Sql, merchant_ids: list[str], default_bps: int) -> dict[str, int]:
    """Each merchant's fee in basis points (its own, else `default_bps`)."""
    rows = await db.fetch(
        "SELECT id, coalesce(fee_bps, $2) AS bps FROM merchants WHERE id = ANY($1::text[])",
        merchant_ids,
        default_bps,
    )
    return {row["id"]: int(row["bps"]) for row in rows}


_BALANCES = """
SELECT c.network_code, c.code, c.decimals, a.credits_posted, a.debits_posted, a.debits_pending,
       a.credits_pending
FROM ledger_accounts a JOIN currencies c ON c.id = a.currency_id
WHERE a.merchant_id = $1 AND a.kind = 'available'
ORDER BY c.network_code, c.code
"""

_TRANSACTIONS = """
SELECT t.id, t.type, t.code, t.amount, t.debit_account_id, t.source_type, t.source_id,
       t.created_at, p.amount AS held, c.network_code, c.code AS currency, c.decimals
FROM ledger_transfers t
JOIN currencies c ON c.id = t.currency_id
LEFT JOIN ledger_transfers p ON p.id = t.pending_id
WHERE t.merchant_id = $1 AND ($2::text IS NULL OR t.id < $2)
  AND ($3::text IS NULL OR t.source_id = $3)
ORDER BY t.id DESC
LIMIT $4
"""


async def balances(db: Sql, merchant_id: str) -> Sequence[Any]:
    return await db.fetch(_BALANCES, merchant_id)


async def transactions(
    db: Sql, merchant_id: str, *, starting_after: str | None, source_id: str | None, limit: int
) -> Sequence[Any]:
    return await db.fetch(_TRANSACTIONS, merchant_id, starting_after, source_id, limit)


async def native_currency(db: Sql, network: str) -> str | None:
    """The id of the network's native coin (the currency without a contract)."""
    return await db.fetchval(
        "SELECT id FROM currencies WHERE network_code = $1 AND contract IS NULL"
        " ORDER BY id LIMIT 1",
        network,
    )


async def network_currencies(db: Sql, network: str) -> Sequence[Any]:
    """The network's currencies the ledger has accounts in."""
    return await db.fetch(
        "SELECT c.id, c.code, c.contract, c.decimals FROM currencies c WHERE c.network_code = $1"
        " AND EXISTS (SELECT 1 FROM ledger_accounts a WHERE a.currency_id = c.id)"
        " ORDER BY c.code",
        network,
    )


# What each deposit address should hold at a block, per currency: its confirmed payments,
# plus the sweep gas top-ups it received, less what it sent (a sweep's amount when it
# succeeded, its gas whether or not), counting transactions mined at or before the block.
_CUSTODY_EXPECTED = """
WITH native AS (
    SELECT id FROM currencies WHERE network_code = $1 AND contract IS NULL ORDER BY id LIMIT 1
), moves AS (
    SELECT p.currency_id, p.to_address AS address, p.amount FROM payments p
    WHERE p.network_code = $1 AND p.status = 'confirmed'
  UNION ALL
    SELECT (SELECT id FROM native), o.to_address, o.amount FROM outgoing_transactions o
    WHERE o.network_code = $1 AND o.purpose = 'sweep_gas' AND o.receipt_status = 1
      AND o.status IN ('mined', 'confirmed') AND o.mined_block_number <= $2
  UNION ALL
    SELECT c.id, o.from_address, -o.amount FROM outgoing_transactions o
    JOIN currencies c ON c.network_code = o.network_code
     AND (lower(c.contract) IS NOT DISTINCT FROM o.token_contract
          OR c.contract = o.token_contract)
    WHERE o.network_code = $1 AND o.deposit_address_id IS NOT NULL AND o.receipt_status = 1
      AND o.status IN ('mined', 'confirmed') AND o.mined_block_number <= $2
  UNION ALL
    SELECT (SELECT id FROM native), o.from_address,
           -COALESCE(o.fee_paid, o.gas_used * o.effective_gas_price)
    FROM outgoing_transactions o
    WHERE o.network_code = $1 AND o.deposit_address_id IS NOT NULL AND o.gas_used IS NOT NULL
      AND o.status IN ('mined', 'confirmed', 'failed') AND o.mined_block_number <= $2
)
SELECT currency_id, address, sum(amount) AS amount FROM moves
WHERE currency_id IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2
"""
LATEST = 2**62  # a block number above any: everything mined so far


async def custody_expected(db: Sql, network: str, block: int = LATEST) -> Sequence[Any]:
    """(currency_id, address, amount) per deposit address: see `_CUSTODY_EXPECTED`."""
    return await db.fetch(_CUSTODY_EXPECTED, network, block)


async def treasury_addresses(db: Sql, network: str) -> list[str]:
    """The network's treasury and every earlier one a sweep went to."""
    rows = await db.fetch(
        "SELECT treasury_address AS address FROM networks WHERE code = $1"
        " AND treasury_address IS NOT NULL"
        " UNION SELECT DISTINCT treasury_address FROM sweeps WHERE network_code = $1"
        " ORDER BY 1",
        network,
    )
    return [row["address"] for row in rows]


async def hot_wallet_addresses(db: Sql, network: str) -> list[str]:
    rows = await db.fetch(
        "SELECT DISTINCT address FROM hot_wallets WHERE network_code = $1 ORDER BY 1", network
    )
    return [row["address"] for row in rows]


async def platform_balances(db: Sql, network: str) -> dict[tuple[str, str], int]:
    """(currency, kind) → balance of the network's debit-normal platform accounts (custody,
    hot_wallet, treasury): posted debits less posted credits."""
    rows = await db.fetch(
        "SELECT a.currency_id, a.kind, a.debits_posted - a.credits_posted AS balance"
        " FROM ledger_accounts a JOIN currencies c ON c.id = a.currency_id"
        " WHERE c.network_code = $1 AND a.merchant_id IS NULL"
        " AND a.kind IN ('custody', 'hot_wallet', 'treasury')",
        network,
    )
    return {(row["currency_id"], row["kind"]): int(row["balance"]) for row in rows}


async def store_run(
    db: Sql,
    run_id: str,
    network: str,
    block: int | None,
    status: str,
    lines: str,
    error: str | None,
) -> None:
    await db.execute(
        "INSERT INTO reconciliation_runs (id, network_code, block_number, status, lines, error)"
        " VALUES ($1, $2, $3, $4, $5::jsonb, $6)",
        run_id,
        network,
        block,
        status,
        lines,
        error,
    )


async def latest_runs(db: Sql) -> Sequence[Any]:
    """The newest run of each network."""
    return await db.fetch(
        "SELECT DISTINCT ON (network_code) id, network_code, block_number, status, lines, error,"
        " created_at FROM reconciliation_runs ORDER BY network_code, id DESC"
    )


async def list_runs(
    db: Sql, *, network: str | None, starting_after: str | None, limit: int
) -> Sequence[Any]:
    return await db.fetch(
        "SELECT id, network_code, block_number, status, lines, error, created_at"
        " FROM reconciliation_runs WHERE ($1::text IS NULL OR network_code = $1)"
        " AND ($2::text IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
        network,
        starting_after,
        limit,
    )


async def reconciled_networks(db: Sql) -> list[dict[str, Any]]:
    """The EVM and Tron networks the ledger has accounts on."""
    rows = await db.fetch(
        "SELECT n.code, n.chain_id, n.confirmations, n.chain_family FROM networks n"
        " WHERE n.chain_family IN ('evm', 'tron')"
        " AND EXISTS (SELECT 1 FROM ledger_accounts a JOIN currencies c ON c.id = a.currency_id"
        " WHERE c.network_code = n.code) ORDER BY n.code"
    )
    return [dict(row) for row in rows]


# --- invariants (`nespay.ledger.invariants`): each statement reads the whole ledger once --------

# Per currency, Σ debits = Σ credits for the pending and for the posted counters: the
# currencies where they differ.
_UNBALANCED = """
SELECT currency_id,
       sum(debits_pending) - sum(credits_pending) AS pending,
       sum(debits_posted) - sum(credits_posted) AS posted
FROM ledger_accounts
GROUP BY currency_id
HAVING sum(debits_pending) <> sum(credits_pending) OR sum(debits_posted) <> sum(credits_posted)
ORDER BY currency_id
"""

# Every account against the projection of its transfers, in one scan of `ledger_transfers`:
# `pending` adds to *_pending; `post` takes its pending transfer's whole amount out of
# *_pending and adds its own to *_posted; `void` takes it out; `posted` adds to *_posted (the
# semantics of `tests/ledger/test_properties.py`). The accounts whose counters differ
# (`off`), and the limited accounts short (debits, posted and pending, beyond posted credits)
# that no `overdrew` transfer debited (`short`): at most $1 of them, with the totals.
_ACCOUNTS_OFF = """
WITH t AS (
    SELECT t.debit_account_id, t.credit_account_id, t.overdrew,
           CASE t.type WHEN 'pending' THEN t.amount WHEN 'posted' THEN 0
                ELSE -p.amount END AS pending,
           CASE WHEN t.type IN ('posted', 'post') THEN t.amount ELSE 0 END AS posted
    FROM ledger_transfers t LEFT JOIN ledger_transfers p ON p.id = t.pending_id
), projected AS (
    SELECT m.id, sum(m.dp) AS dp, sum(m.dpo) AS dpo, sum(m.cp) AS cp, sum(m.cpo) AS cpo,
           bool_or(m.overdrew) AS overdrew
    FROM t CROSS JOIN LATERAL (
        VALUES (t.debit_account_id, t.pending, t.posted, 0, 0, t.overdrew),
               (t.credit_account_id, 0, 0, t.pending, t.posted, false)
    ) AS m(id, dp, dpo, cp, cpo, overdrew)
    GROUP BY m.id
), judged AS (
    SELECT a.id, a.currency_id,
           a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted,
           coalesce(p.dp, 0) AS p_debits_pending, coalesce(p.dpo, 0) AS p_debits_posted,
           coalesce(p.cp, 0) AS p_credits_pending, coalesce(p.cpo, 0) AS p_credits_posted,
           (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
               IS DISTINCT FROM (coalesce(p.dp, 0), coalesce(p.dpo, 0), coalesce(p.cp, 0),
                                 coalesce(p.cpo, 0)) AS off,
           a.limited AND a.debits_posted + a.debits_pending > a.credits_posted
               AND NOT coalesce(p.overdrew, false) AS short
    FROM ledger_accounts a LEFT JOIN projected p ON p.id = a.id
)
SELECT *, count(*) FILTER (WHERE off) OVER () AS off_total,
       count(*) FILTER (WHERE short) OVER () AS short_total
FROM judged WHERE off OR short
ORDER BY id
LIMIT $1
"""

# The pending transfers resolved more than once, by more than they held (a post beyond the
# hold, a void that posts), or by a transfer naming other accounts or a transfer that is not
# pending: at most $1 of them, with the total.
_RESOLUTIONS_OFF = """
SELECT p.id, p.key, p.type, p.debit_account_id, p.credit_account_id, p.amount AS held,
       count(*) AS resolutions,
       array_agg(r.key ORDER BY r.id) AS resolved_by,
       bool_or(r.type = 'post' AND r.amount > p.amount OR r.type = 'void' AND r.amount <> 0)
           AS beyond,
       bool_or(p.type <> 'pending' OR r.debit_account_id <> p.debit_account_id
               OR r.credit_account_id <> p.credit_account_id) AS mismatched,
       count(*) OVER () AS total
FROM ledger_transfers r JOIN ledger_transfers p ON p.id = r.pending_id
WHERE r.pending_id IS NOT NULL
GROUP BY p.id
HAVING count(*) > 1
    OR bool_or(r.type = 'post' AND r.amount > p.amount OR r.type = 'void' AND r.amount <> 0)
    OR bool_or(p.type <> 'pending' OR r.debit_account_id <> p.debit_account_id
               OR r.credit_account_id <> p.credit_account_id)
ORDER BY p.id
LIMIT $1
"""


async def unbalanced_currencies(db: Sql) -> Sequence[Any]:
    return await db.fetch(_UNBALANCED)


async def accounts_off(db: Sql, limit: int) -> Sequence[Any]:
    return await db.fetch(_ACCOUNTS_OFF, limit)


async def resolutions_off(db: Sql, limit: int) -> Sequence[Any]:
    return await db.fetch(_RESOLUTIONS_OFF, limit)


async def ledger_size(db: Sql) -> Any:
    return (
        await db.fetch(
            "SELECT (SELECT count(*) FROM ledger_accounts) AS accounts,"
            " (SELECT count(DISTINCT currency_id) FROM ledger_accounts) AS currencies"
        )
    )[0]
