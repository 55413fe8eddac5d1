"""All SQL of consolidation: the networks to sweep, the addresses that are busy, the sweeps
themselves (one live per deposit address and currency: a unique index)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nespay.db import Sql

LIVE = ("funding", "sending")
# A contract as outgoing transactions store it: EVM lower case, Tron base58 as it is.
STORED_CONTRACT = "CASE WHEN contract LIKE '0x%' THEN lower(contract) ELSE contract END"


async def networks(db: Sql) -> Sequence[Any]:
    """EVM and Tron networks that have deposit funds in the ledger, with their treasury (or
    None)."""
    return await db.fetch(
        "SELECT n.code, n.chain_id, n.confirmations, n.treasury_address, n.chain_family,"
        " n.tron_fee_limit_sun FROM networks n"
        " WHERE n.chain_family IN ('evm', 'tron') AND n.chain_id IS NOT NULL AND EXISTS ("
        "  SELECT 1 FROM ledger_accounts a JOIN currencies c ON c.id = a.currency_id"
        "  WHERE c.network_code = n.code AND a.kind = 'custody')"
        " ORDER BY n.code"
    )


async def currencies(db: Sql, network: str) -> Sequence[Any]:
    return await db.fetch(
        f"SELECT id, code, {STORED_CONTRACT} AS contract, decimals FROM currencies"  # noqa: S608
        " WHERE network_code = $1 ORDER BY contract IS NULL, code",
        network,
    )


async def busy_addresses(db: Sql, network: str) -> set[str]:
    """Deposit addresses with a transfer of theirs (or a top-up to them) not finished, or a
    live sweep: never planned again until it ends."""
    rows = await db.fetch(
        "SELECT from_address AS address FROM outgoing_transactions WHERE network_code = $1"
        " AND deposit_address_id IS NOT NULL AND status NOT IN ('confirmed', 'failed')"
        " UNION SELECT to_address FROM outgoing_transactions WHERE network_code = $1"
        " AND purpose = 'sweep_gas' AND status NOT IN ('confirmed', 'failed')"
        " UNION SELECT address FROM sweeps WHERE network_code = $1"
        " AND status IN ('funding', 'sending')",
        network,
    )
    return {row["address"] for row in rows}


async def live_count(db: Sql, network: str) -> int:
    return int(
        await db.fetchval(
            "SELECT count(*) FROM sweeps WHERE network_code = $1"
            " AND status IN ('funding', 'sending')",
            network,
        )
    )


async def deposit_addresses(
    db: Sql, addresses: list[str], chain_family: str = "evm"
) -> dict[str, Any]:
    rows = await db.fetch(
        "SELECT id, address, provider, derivation_index FROM deposit_addresses"
        " WHERE chain_family = $2 AND address = ANY($1::text[])",
        addresses,
        chain_family,
    )
    return {row["address"]: row for row in rows}


async def dust_ids(db: Sql, network: str) -> dict[tuple[str, str], str]:
    rows = await db.fetch(
        "SELECT id, deposit_address_id, currency_id FROM sweeps"
        " WHERE network_code = $1 AND status = 'dust'",
        network,
    )
    return {(row["deposit_address_id"], row["currency_id"]): row["id"] for row in rows}


_UPSERT = """
INSERT INTO sweeps AS s (id, network_code, currency_id, deposit_address_id, address,
    treasury_address, amount, status, gas_limit, gas_cost_wei, topup_wei, reason)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (deposit_address_id, currency_id) WHERE status IN ('dust', 'funding', 'sending')
DO UPDATE SET amount = EXCLUDED.amount, status = EXCLUDED.status,
    treasury_address = EXCLUDED.treasury_address, gas_limit = EXCLUDED.gas_limit,
    gas_cost_wei = EXCLUDED.gas_cost_wei, topup_wei = EXCLUDED.topup_wei,
    reason = EXCLUDED.reason, updated_at = now()
WHERE s.status = 'dust'
RETURNING id
"""


async def upsert(db: Sql, row: dict[str, Any]) -> str | None:
    """Insert the sweep, or update the address's dust row into it; None when a live sweep of
    that address and currency exists (another replica planned it)."""
    return await db.fetchval(
        _UPSERT,
        row["id"],
        row["network"],
        row["currency_id"],
        row["deposit_address_id"],
        row["address"],
        row["treasury"],
        row["amount"],
        row["status"],
        row["gas_limit"],
        row["gas_cost_wei"],
        row["topup_wei"],
        row["reason"],
    )


async def set_tx(db: Sql, sweep_id: str, column: str, tx_id: str) -> None:
    assert column in ("topup_tx_id", "sweep_tx_id")
    await db.execute(
        f"UPDATE sweeps SET {column} = $2, updated_at = now() WHERE id = $1",  # noqa: S608
        sweep_id,
        tx_id,
    )


async def get_for_update(db: Sql, sweep_id: str) -> Any:
    rows = await db.fetch("SELECT * FROM sweeps WHERE id = $1 FOR UPDATE", sweep_id)
    return rows[0] if rows else None


async def move(db: Sql, sweep_id: str, expected: str, status: str, reason: str | None) -> bool:
    """Compare-and-set the status; `confirmed` and `failed` are final (finished_at)."""
    done = await db.execute(
        "UPDATE sweeps SET status = $3::text, reason = COALESCE($4::text, reason),"
        " updated_at = now(),"
        " finished_at = CASE WHEN $3::text IN ('confirmed', 'failed') THEN now() END"
        " WHERE id = $1 AND status = $2",
        sweep_id,
        expected,
        status,
        reason,
    )
    return done.endswith(" 1")


async def list_sweeps(
    db: Sql,
    *,
    status: str | None,
    network: str | None,
    starting_after: str | None,
    limit: int,
) -> Sequence[Any]:
    """Newest first, at most `limit` rows."""
    return await db.fetch(
        "SELECT s.*, c.code AS currency, c.decimals FROM sweeps s"
        " JOIN currencies c ON c.id = s.currency_id"
        " WHERE ($1::text IS NULL OR s.status = $1) AND ($2::text IS NULL OR s.network_code = $2)"
        " AND ($3::text IS NULL OR s.id < $3) ORDER BY s.id DESC LIMIT $4",
        status,
        network,
        starting_after,
        limit,
    )
