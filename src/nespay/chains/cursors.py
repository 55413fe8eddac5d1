"""All SQL of scanning state: a network's cursor and the scanner's lease on it (with a fencing
token), the chain it reads (genesis hash), recent block hashes, the endpoints a scanner may
use, which networks need a scanner, and how each scanner is doing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from nespay.chains.catalog import SCANNED_FAMILIES
from nespay.chains.rpcclient import Endpoint
from nespay.models.reference import RPC_API_KEY
from nespay.security.encryption import DecryptionError, Keyring, unseal

if TYPE_CHECKING:
    from nespay.chains.adapter import BlockRef

log = structlog.get_logger("nespay.scanner")

KEEP_BLOCKS = 256


@dataclass
class Cursor:
    network: str
    number: int
    hash: str
    token: int
    timestamp: int | None = None  # the cursor block's time (seconds)
    genesis: str | None = None  # block 0's hash of the chain scanned here


class LeaseLost(Exception):
    """Another replica holds the network now; this one must stop writing."""


_ACQUIRE = text(
    """
    INSERT INTO chain_cursors (network_code, block_number, block_hash, block_timestamp,
                               genesis_hash, lease_owner, lease_token, lease_expires_at)
    VALUES (:network, :number, :hash, :timestamp, :genesis, :owner, 1,
            now() + make_interval(secs => CAST(:lease_s AS float8)))
    ON CONFLICT (network_code) DO UPDATE SET
        lease_owner = :owner, lease_token = chain_cursors.lease_token + 1,
        lease_expires_at = now() + make_interval(secs => CAST(:lease_s AS float8)),
        -- a cursor made before genesis hashes were kept adopts the chain it reads now
        genesis_hash = COALESCE(chain_cursors.genesis_hash, :genesis)
    WHERE chain_cursors.lease_expires_at IS NULL OR chain_cursors.lease_expires_at < now()
          OR chain_cursors.lease_owner = :owner
    RETURNING block_number, block_hash, lease_token, block_timestamp, genesis_hash
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
    SELECT id, url, priority, api_key_encrypted FROM rpc_endpoints
    WHERE network_code = :network AND enabled ORDER BY priority, id
    """
)


async def stored_genesis(conn: AsyncConnection, network: str) -> tuple[bool, str | None]:
    """(whether the network has a cursor, the genesis hash it recorded)."""
    row = (
        await conn.execute(
            text("SELECT genesis_hash FROM chain_cursors WHERE network_code = :n"), {"n": network}
        )
    ).one_or_none()
    return (row is not None, None if row is None else row[0])


@dataclass(frozen=True)
class ChainMarks:
    """What a network's scanning state says of the chain behind it: its block 0, the cursor,
    and the oldest block hash kept (the deepest reorg the scanner can still resolve)."""

    genesis: str | None
    cursor: tuple[int, str]
    oldest: tuple[int, str] | None


_MARKS = text(
    """
    SELECT c.genesis_hash, c.block_number, c.block_hash, b.number AS oldest, b.hash AS oldest_hash
    FROM chain_cursors c
    LEFT JOIN LATERAL (
        SELECT number, hash FROM chain_blocks
        WHERE network_code = c.network_code ORDER BY number LIMIT 1
    ) b ON true
    WHERE c.network_code = :n
    """
)


async def chain_marks(conn: AsyncConnection, network: str) -> ChainMarks | None:
    """None while the network was never scanned."""
    row = (await conn.execute(_MARKS, {"n": network})).one_or_none()
    if row is None:
        return None
    oldest = None if row.oldest is None else (row.oldest, row.oldest_hash)
    return ChainMarks(row.genesis_hash, (row.block_number, row.block_hash), oldest)


async def acquire(
    conn: AsyncConnection,
    network: str,
    owner: str,
    lease_s: float,
    start: tuple[int, str, int | None],
    genesis: str,
) -> Cursor | None:
    """Take the network's lease (a new fencing token), creating the cursor at `start`
    (number, hash, timestamp) on the chain whose block 0 is `genesis` if this network was
    never scanned; None while another replica holds it."""
    row = (
        await conn.execute(
            _ACQUIRE,
            {
                "network": network,
                "number": start[0],
                "hash": start[1],
                "timestamp": start[2],
                "genesis": genesis,
                "owner": owner,
                "lease_s": float(lease_s),
            },
        )
    ).one_or_none()
    return None if row is None else Cursor(network, row[0], row[1], row[2], row[3], row[4])


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
    """The network's enabled endpoints by priority; `api_key` still sealed (see `unsealed`)."""
    rows = await conn.execute(_ENDPOINTS, {"network": network})
    return [Endpoint(row.id, row.url, row.priority, row.api_key_encrypted) for row in rows]


def unsealed(endpoints: list[Endpoint], keyring: Keyring) -> list[Endpoint]:
    """The endpoints with their API keys decrypted (an endpoint whose key cannot be decrypted
    — a master key rotated away — is left out, and said so, rather than asked without it)."""
    usable = []
    for endpoint in endpoints:
        if endpoint.api_key is None:
            usable.append(endpoint)
            continue
        try:
            key = unseal(keyring, RPC_API_KEY, endpoint.id, endpoint.api_key)
        except DecryptionError:
            log.error("rpc_endpoint_key_unreadable", endpoint_id=endpoint.id)
            continue
        usable.append(replace(endpoint, api_key=key))
    return usable


# Enabled networks of a scanned family, and those switched off that still have something to
# watch: invoices that may still be paid (until `watch_until`, in the cursor's chain time) or
# payments still counting confirmations (the partial index on pending payments).
_WANTED = text(
    """
    SELECT n.code FROM networks n LEFT JOIN chain_cursors c ON c.network_code = n.code
    WHERE n.chain_family = ANY(:families) AND (
        n.enabled
        OR (n.watch_until IS NOT NULL
            AND (c.block_timestamp IS NULL
                 OR c.block_timestamp <= extract(epoch FROM n.watch_until)))
        OR EXISTS (SELECT 1 FROM currencies cur WHERE cur.network_code = n.code
                   AND cur.watch_until IS NOT NULL
                   AND (c.block_timestamp IS NULL
                        OR c.block_timestamp <= extract(epoch FROM cur.watch_until)))
        OR EXISTS (SELECT 1 FROM payments p WHERE p.network_code = n.code
                   AND p.status = 'pending'))
    ORDER BY n.code
    """
)


async def networks_to_scan(conn: AsyncConnection) -> list[str]:
    """The networks that need a scanner now."""
    families = {"families": list(SCANNED_FAMILIES)}
    return [row[0] for row in await conn.execute(_WANTED, families)]


# The scanner's writes run on a driver (asyncpg) connection: its commit in one transaction
# (all of a batch's blocks in one statement), renewing the lease at the head alone.
_FENCE = """
UPDATE chain_cursors
SET lease_expires_at = now() + make_interval(secs => $3::float8),
    block_number = COALESCE($4::bigint, block_number), block_hash = COALESCE($5::text, block_hash),
    head_number = COALESCE($6::bigint, head_number),
    block_timestamp = COALESCE($7::bigint, block_timestamp), updated_at = now()
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
    timestamp: int | None = None,
) -> None:
    """Renew the lease and move the cursor, in the caller's transaction on a driver
    connection; raises LeaseLost (rolling the whole transaction back) if the token is no
    longer ours."""
    status = await db.execute(
        _FENCE, cursor.network, cursor.token, float(lease_s), number, hash, head, timestamp
    )
    if status != "UPDATE 1":
        raise LeaseLost(cursor.network)


async def store_blocks(db: Any, network: str, blocks: Sequence[BlockRef]) -> None:
    """Remember the blocks' hashes (for finding a reorg's common ancestor) and forget those
    more than KEEP_BLOCKS behind: two statements whatever the batch size."""
    if not blocks:
        return
    await db.execute(
        _STORE_BLOCKS,
        network,
        [b.number for b in blocks],
        [b.hash for b in blocks],
        [b.parent_hash for b in blocks],
        [b.timestamp for b in blocks],
    )
    await db.execute(
        "DELETE FROM chain_blocks WHERE network_code = $1 AND number < $2",
        network,
        blocks[-1].number - KEEP_BLOCKS,
    )


async def forget_blocks_after(db: Any, network: str, ancestor: int) -> None:
    await db.execute(
        "DELETE FROM chain_blocks WHERE network_code = $1 AND number > $2", network, ancestor
    )


# --- how each scanner is doing -----------------------------------------------------------------

_FAILING = """
INSERT INTO scanner_status (network_code, last_error, failing_since, last_error_at)
VALUES ($1, $2, now(), now())
ON CONFLICT (network_code) DO UPDATE SET last_error = excluded.last_error,
                                         last_error_at = excluded.last_error_at
"""


async def record_failure(db: Any, network: str, message: str) -> None:
    """The scanner of `network` is failing with `message` (since the first such call)."""
    await db.execute(_FAILING, network, message[:500])


async def clear_failure(db: Any, network: str) -> None:
    await db.execute("DELETE FROM scanner_status WHERE network_code = $1", network)


_STATES = text(
    """
    SELECT n.code AS network, n.enabled, COALESCE(c.head_number, e.head) AS head,
           c.block_number AS cursor,
           GREATEST(0, c.head_number - c.block_number) AS lag_blocks,
           c.updated_at AS last_scan_at, c.lease_owner AS scanned_by,
           c.lease_expires_at > now() AS leased, f.last_error, f.failing_since,
           f.last_error_at, extract(epoch FROM now() - f.failing_since) AS failing_for_s,
           extract(epoch FROM now() - c.updated_at) AS idle_s,
           e.endpoints_up, e.endpoints_total
    FROM networks n
    LEFT JOIN chain_cursors c ON c.network_code = n.code
    -- a failure is current until a step succeeds after it (on this replica or another)
    LEFT JOIN scanner_status f ON f.network_code = n.code
        AND f.last_error_at >= COALESCE(c.updated_at, '-infinity')
    LEFT JOIN LATERAL (
        SELECT max(r.head_block) FILTER (WHERE r.status = 'up') AS head,
               count(*) FILTER (WHERE r.status = 'up') AS endpoints_up,
               count(*) AS endpoints_total
        FROM rpc_endpoints r WHERE r.network_code = n.code AND r.enabled
    ) e ON true
    WHERE n.code = ANY(:networks)
    ORDER BY n.code
    """
)


async def scan_states(conn: AsyncConnection, networks: list[str]) -> list[dict[str, Any]]:
    """Per network: head, cursor, lag, last scan, who scans it, the error it is failing
    with (if it is)."""
    rows = await conn.execute(_STATES, {"networks": networks})
    return [dict(row._mapping) for row in rows]
