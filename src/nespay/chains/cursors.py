"""All SQL of scanning state: a network's cursor and the scanner's lease on it (with a fencing
token), recent block hashes, and the endpoints a scanner may use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from nespay.chains.rpcclient import Endpoint

KEEP_BLOCKS = 256


@dataclass
class Cursor:
    network: str
    number: int
    hash: str
    token: int


class LeaseLost(Exception):
    """Another replica holds the network now; this one must stop writing."""


_ACQUIRE = text(
    """
    INSERT INTO chain_cursors (network_code, block_number, block_hash, lease_owner, lease_token,
                               lease_expires_at)
    VALUES (:network, :number, :hash, :owner, 1,
            now() + make_interval(secs => CAST(:lease_s AS float8)))
    ON CONFLICT (network_code) DO UPDATE SET
        lease_owner = :owner, lease_token = chain_cursors.lease_token + 1,
        lease_expires_at = now() + make_interval(secs => CAST(:lease_s AS float8))
    WHERE chain_cursors.lease_expires_at IS NULL OR chain_cursors.lease_expires_at < now()
          OR chain_cursors.lease_owner = :owner
    RETURNING block_number, block_hash, lease_token
    """
)

_RELEASE = text(
    """
    UPDATE chain_cursors SET lease_owner = NULL, lease_expires_at = NULL
    WHERE network_code = :network AND lease_token = :token
    """
)

_ENDPOINTS = text(
    """
    SELECT id, url, priority FROM rpc_endpoints
    WHERE network_code = :network AND enabled ORDER BY priority, id
    """
)


async def cursor_exists(conn: AsyncConnection, network: str) -> bool:
    found = await conn.scalar(
        text("SELECT 1 FROM chain_cursors WHERE network_code = :n"), {"n": network}
    )
    return found is not None


async def acquire(
    conn: AsyncConnection, network: str, owner: str, lease_s: float, start: tuple[int, str]
) -> Cursor | None:
    """Take the network's lease (a new fencing token), creating the cursor at `start` if this
    network was never scanned; None while another replica holds it."""
    row = (
        await conn.execute(
            _ACQUIRE,
            {
                "network": network,
                "number": start[0],
                "hash": start[1],
                "owner": owner,
                "lease_s": float(lease_s),
            },
        )
    ).one_or_none()
    return None if row is None else Cursor(network, row[0], row[1], row[2])


async def release(conn: AsyncConnection, cursor: Cursor) -> None:
    await conn.execute(_RELEASE, {"network": cursor.network, "token": cursor.token})


async def stored_hashes(conn: AsyncConnection, network: str, numbers: list[int]) -> dict[int, str]:
    rows = await conn.execute(
        text(
            "SELECT number, hash FROM chain_blocks WHERE network_code = :n AND number = ANY(:nums)"
        ),
        {"n": network, "nums": numbers},
    )
    return {row[0]: row[1] for row in rows}


async def endpoints(conn: AsyncConnection, network: str) -> list[Endpoint]:
    rows = await conn.execute(_ENDPOINTS, {"network": network})
    return [Endpoint(row.id, row.url, row.priority) for row in rows]


async def enabled_evm_networks(conn: AsyncConnection) -> list[str]:
    rows = await conn.execute(
        text("SELECT code FROM networks WHERE enabled AND chain_family = 'evm' ORDER BY code")
    )
    return [row[0] for row in rows]


# The scanner's writes run on a driver (asyncpg) connection: its commit in one transaction
# (all of a batch's blocks in one statement), renewing the lease at the head alone.
_FENCE = """
UPDATE chain_cursors
SET lease_expires_at = now() + make_interval(secs => $3::float8),
    block_number = COALESCE($4::bigint, block_number), block_hash = COALESCE($5::text, block_hash),
    head_number = COALESCE($6::bigint, head_number), updated_at = now()
WHERE network_code = $1 AND lease_token = $2
"""

_STORE_BLOCKS = """
INSERT INTO chain_blocks (network_code, number, hash, parent_hash, timestamp)
SELECT $1, b.number, b.hash, b.parent_hash, b.timestamp
FROM unnest($2::bigint[], $3::text[], $4::text[], $5::bigint[]) AS b(number, hash, parent_hash,
                                                                      timestamp)
ON CONFLICT (network_code, number) DO UPDATE
    SET hash = excluded.hash, parent_hash = excluded.parent_hash, timestamp = excluded.timestamp
"""


async def fence(
    db: Any,
    cursor: Cursor,
    lease_s: float,
    *,
    number: int | None = None,
    hash: str | None = None,
    head: int | None = None,
) -> None:
    """Renew the lease and move the cursor, in the caller's transaction on a driver
    connection; raises LeaseLost (rolling the whole transaction back) if the token is no
    longer ours."""
    status = await db.execute(
        _FENCE, cursor.network, cursor.token, float(lease_s), number, hash, head
    )
    if status != "UPDATE 1":
        raise LeaseLost(cursor.network)


async def store_blocks(db: Any, network: str, blocks: list[dict[str, Any]]) -> None:
    """Remember the blocks' hashes (for finding a reorg's common ancestor) and forget those
    more than KEEP_BLOCKS behind: two statements whatever the batch size."""
    if not blocks:
        return
    await db.execute(
        _STORE_BLOCKS,
        network,
        [b["number"] for b in blocks],
        [b["hash"] for b in blocks],
        [b["parent_hash"] for b in blocks],
        [b["timestamp"] for b in blocks],
    )
    await db.execute(
        "DELETE FROM chain_blocks WHERE network_code = $1 AND number < $2",
        network,
        blocks[-1]["number"] - KEEP_BLOCKS,
    )


async def forget_blocks_after(db: Any, network: str, ancestor: int) -> None:
    await db.execute(
        "DELETE FROM chain_blocks WHERE network_code = $1 AND number > $2", network, ancestor
    )
