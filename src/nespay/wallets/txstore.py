"""All SQL of the sender: per-network leases, nonce claims, outgoing transactions and their
candidates. Every status change is a compare-and-set on the status it expects, so a second
sender (a replica past its lease) changes nothing it did not see."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from nespay.wallets.outgoing import COLUMNS, OutgoingTx, from_row

# --- leases (the app_locks table: name, holder, fencing token, expiry) ---------------------

_ACQUIRE = text(
    """
    INSERT INTO app_locks AS l (name, holder, token, expires_at)
    VALUES (:name, :holder, 1, now() + make_interval(secs => CAST(:ttl AS double precision)))
    ON CONFLICT (name) DO UPDATE
    SET holder = EXCLUDED.holder, token = l.token + 1, expires_at = EXCLUDED.expires_at
    WHERE l.expires_at <= now()
    RETURNING l.token
    """
)
_RELEASE = text("UPDATE app_locks SET expires_at = now() WHERE name = :name AND token = :token")


async def acquire_lease(conn: AsyncConnection, name: str, holder: str, ttl_s: float) -> int | None:
    row = await conn.execute(_ACQUIRE, {"name": name, "holder": holder, "ttl": ttl_s})
    return row.scalar_one_or_none()


async def release_lease(conn: AsyncConnection, name: str, token: int) -> None:
    await conn.execute(_RELEASE, {"name": name, "token": token})


# --- networks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendingNetwork:
    code: str
    chain_id: int
    confirmations: int
    fee_cap: int | None
    family: str = "evm"
    tron_fee_limit: int | None = None  # sun; None: the default


_BUSY_NETWORKS = text(
    """
    SELECT n.code, n.chain_id, n.confirmations, n.max_fee_per_gas_cap, n.chain_family,
           n.tron_fee_limit_sun
    FROM networks n
    WHERE n.chain_family IN ('evm', 'tron') AND n.chain_id IS NOT NULL AND EXISTS (
        SELECT 1 FROM outgoing_transactions o
        WHERE o.network_code = n.code AND o.status NOT IN ('confirmed', 'failed'))
    ORDER BY n.code
    """
)


async def busy_networks(conn: AsyncConnection) -> list[SendingNetwork]:
    rows = await conn.execute(_BUSY_NETWORKS)
    return [
        SendingNetwork(
            r.code,
            int(r.chain_id),
            int(r.confirmations),
            _int(r.max_fee_per_gas_cap),
            r.chain_family,
            _int(r.tron_fee_limit_sun),
        )
        for r in rows
    ]


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


# --- outgoing transactions -----------------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    """An unfinished transaction with what the sender needs besides the handler view."""

    tx: OutgoingTx
    hot_wallet_id: str | None  # None: sent by a deposit address (a sweep)
    signer: str  # local | privy (hot wallets), hd | privy (deposit addresses)
    privy_wallet_id: str | None
    gas_limit: int | None
    max_fee_per_gas: int | None
    max_priority_fee_per_gas: int | None
    mined_block_hash: str | None
    seconds_since_broadcast: float | None
    deposit_index: int | None = None  # the deposit address's derivation index (signer hd)
    chain_family: str | None = None


_PENDING = text(
    f"""
    SELECT {", ".join("o." + c.strip() for c in COLUMNS.split(","))},
           o.hot_wallet_id,
           COALESCE(w.signer, CASE d.provider WHEN 'hd' THEN 'hd' ELSE 'privy' END) AS signer,
           COALESCE(w.privy_wallet_id, d.provider_wallet_id) AS privy_wallet_id,
           o.gas_limit, o.max_fee_per_gas, o.max_priority_fee_per_gas, o.mined_block_hash,
           extract(epoch FROM now() - o.broadcast_at) AS since_broadcast,
           d.derivation_index, d.chain_family
    FROM outgoing_transactions o
    LEFT JOIN hot_wallets w ON w.id = o.hot_wallet_id
    LEFT JOIN deposit_addresses d ON d.id = o.deposit_address_id
    WHERE o.network_code = :network AND o.status = ANY(:statuses)
    ORDER BY o.created_at, o.id
    LIMIT :limit
    """  # noqa: S608 - fixed column list
)


async def pending(
    conn: AsyncConnection, network: str, statuses: list[str], limit: int = 100
) -> list[Pending]:
    rows = await conn.execute(_PENDING, {"network": network, "statuses": statuses, "limit": limit})
    found = []
    for row in rows:
        m = row._mapping
        since = m["since_broadcast"]
        found.append(
            Pending(
                from_row(m),
                m["hot_wallet_id"],
                m["signer"],
                m["privy_wallet_id"],
                _int(m["gas_limit"]),
                _int(m["max_fee_per_gas"]),
                _int(m["max_priority_fee_per_gas"]),
                m["mined_block_hash"],
                None if since is None else float(since),
                _int(m["derivation_index"]),
                m["chain_family"],
            )
        )
    return found


async def reload(session: AsyncSession, tx_id: str) -> OutgoingTx:
    row = await session.execute(
        text(f"SELECT {COLUMNS} FROM outgoing_transactions WHERE id = :id"),  # noqa: S608
        {"id": tx_id},
    )
    return from_row(row.one()._mapping)


_SET_ERROR = text(
    "UPDATE outgoing_transactions SET last_error = :error, updated_at = now() WHERE id = :id"
)


async def set_error(conn: Any, tx_id: str, error: str | None) -> None:
    await conn.execute(_SET_ERROR, {"id": tx_id, "error": None if error is None else error[:1000]})


# --- candidates ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    tx_id: str
    number: int
    tx_hash: str | None
    raw: str | None
    max_fee_per_gas: int
    max_priority_fee_per_gas: int
    broadcast: bool
    age_s: float = 0.0  # since it was stored
    expiration_ms: int | None = None  # Tron: raw_data.expiration


_CANDIDATES = text(
    """
    SELECT outgoing_transaction_id, number, tx_hash, raw_transaction, max_fee_per_gas,
           max_priority_fee_per_gas, broadcast_at IS NOT NULL AS broadcast,
           extract(epoch FROM now() - created_at) AS age_s, expiration_ms
    FROM outgoing_transaction_candidates
    WHERE outgoing_transaction_id = ANY(:ids)
    ORDER BY outgoing_transaction_id, number
    """
)


async def candidates(conn: Any, tx_ids: list[str]) -> dict[str, list[Candidate]]:
    found: dict[str, list[Candidate]] = {tx_id: [] for tx_id in tx_ids}
    for r in await conn.execute(_CANDIDATES, {"ids": tx_ids}):
        found[r[0]].append(
            Candidate(
                r[0], r[1], r[2], r[3], int(r[4]), int(r[5]), bool(r[6]), float(r[7]), _int(r[8])
            )
        )
    return found


_INSERT_CANDIDATE = text(
    """
    INSERT INTO outgoing_transaction_candidates (outgoing_transaction_id, number, tx_hash,
        raw_transaction, max_fee_per_gas, max_priority_fee_per_gas, expiration_ms)
    VALUES (:id, :number, :hash, :raw, :max_fee, :tip, :expiration)
    """
)


async def insert_candidate(conn: Any, candidate: Candidate) -> None:
    await conn.execute(
        _INSERT_CANDIDATE,
        {
            "id": candidate.tx_id,
            "number": candidate.number,
            "hash": candidate.tx_hash,
            "raw": candidate.raw,
            "max_fee": candidate.max_fee_per_gas,
            "tip": candidate.max_priority_fee_per_gas,
            "expiration": candidate.expiration_ms,
        },
    )


_CANDIDATE_SENT = text(
    """
    UPDATE outgoing_transaction_candidates
    SET broadcast_at = COALESCE(broadcast_at, now()), tx_hash = COALESCE(tx_hash, :hash),
        last_error = :note
    WHERE outgoing_transaction_id = :id AND number = :number
    """
)


async def candidate_sent(
    conn: Any, tx_id: str, number: int, tx_hash: str | None, note: str | None
) -> None:
    await conn.execute(
        _CANDIDATE_SENT, {"id": tx_id, "number": number, "hash": tx_hash, "note": note}
    )


# --- nonces ----------------------------------------------------------------------------------

_ENSURE_NONCE = text(
    """
    INSERT INTO wallet_nonces (network_code, address, next_nonce)
    VALUES (:network, :address, :chain) ON CONFLICT DO NOTHING
    """
)
# MetaMask's nonce-tracker rule: the larger of the node's pending count and ours. The row
# lock taken by this UPDATE is held until the transaction that stores the signed
# transaction commits, so two senders never get the same nonce.
_CLAIM_NONCE = text(
    """
    UPDATE wallet_nonces SET next_nonce = GREATEST(next_nonce, :chain) + 1, updated_at = now()
    WHERE network_code = :network AND address = :address
    RETURNING next_nonce - 1
    """
)


async def claim_nonce(conn: Any, network: str, address: str, chain_pending: int) -> int:
    params = {"network": network, "address": address, "chain": chain_pending}
    await conn.execute(_ENSURE_NONCE, params)
    return int((await conn.execute(_CLAIM_NONCE, params)).scalar_one())


# --- status changes (compare-and-set) ---------------------------------------------------------

_SIGNED = text(
    """
    UPDATE outgoing_transactions SET status = 'signed', nonce = :nonce, gas_limit = :gas,
        max_fee_per_gas = :max_fee, max_priority_fee_per_gas = :tip, signed_at = now(),
        last_error = NULL, updated_at = now()
    WHERE id = :id AND status = 'queued'
    """
)


async def mark_signed(
    conn: Any, tx_id: str, *, nonce: int, gas: int, max_fee: int, tip: int
) -> bool:
    params = {"id": tx_id, "nonce": nonce, "gas": gas, "max_fee": max_fee, "tip": tip}
    return (await conn.execute(_SIGNED, params)).rowcount == 1


_REPLACED = text(
    """
    UPDATE outgoing_transactions SET status = 'signed', max_fee_per_gas = :max_fee,
        max_priority_fee_per_gas = :tip, last_error = NULL, updated_at = now()
    WHERE id = :id AND status IN ('signed', 'broadcast')
    """
)


async def mark_replaced(conn: Any, tx_id: str, *, max_fee: int, tip: int) -> bool:
    params = {"id": tx_id, "max_fee": max_fee, "tip": tip}
    return (await conn.execute(_REPLACED, params)).rowcount == 1


_BROADCAST = text(
    """
    UPDATE outgoing_transactions SET status = 'broadcast', broadcast_at = now(),
        last_error = :note, updated_at = now()
    WHERE id = :id AND status = 'signed'
    RETURNING (SELECT count(*) FROM outgoing_transaction_candidates c
               WHERE c.outgoing_transaction_id = :id AND c.broadcast_at IS NOT NULL
                 AND c.number <> :number)
    """
)


async def mark_broadcast(conn: Any, tx_id: str, number: int, note: str | None) -> int | None:
    """None when another sender moved it first; else how many other candidates were
    broadcast before this one (0: the transaction's first broadcast)."""
    params = {"id": tx_id, "number": number, "note": note}
    return (await conn.execute(_BROADCAST, params)).scalar_one_or_none()


_MINED = text(
    """
    UPDATE outgoing_transactions SET status = 'mined', mined_hash = :hash,
        mined_block_number = :block, mined_block_hash = :block_hash, receipt_status = :ok,
        gas_used = :gas_used, effective_gas_price = :price, confirmations = :confirmations,
        mined_at = now(), last_error = NULL, updated_at = now()
    WHERE id = :id AND status IN ('signed', 'broadcast')
    """
)


async def mark_mined(conn: Any, tx_id: str, receipt: dict[str, Any], confirmations: int) -> bool:
    params = {
        "id": tx_id,
        "hash": receipt["transactionHash"].lower(),
        "block": int(receipt["blockNumber"], 16),
        "block_hash": receipt["blockHash"].lower(),
        "ok": int(receipt["status"], 16),
        "gas_used": int(receipt["gasUsed"], 16),
        "price": int(receipt.get("effectiveGasPrice") or "0x0", 16),
        "confirmations": confirmations,
    }
    return (await conn.execute(_MINED, params)).rowcount == 1


_REMINED = text(
    """
    UPDATE outgoing_transactions SET mined_block_number = :block, mined_block_hash = :block_hash,
        receipt_status = :ok, confirmations = :confirmations, updated_at = now()
    WHERE id = :id AND status = 'mined' AND mined_hash = :hash
    """
)


async def update_mined(conn: Any, tx_id: str, receipt: dict[str, Any], confirmations: int) -> bool:
    params = {
        "id": tx_id,
        "hash": receipt["transactionHash"].lower(),
        "block": int(receipt["blockNumber"], 16),
        "block_hash": receipt["blockHash"].lower(),
        "ok": int(receipt["status"], 16),
        "confirmations": confirmations,
    }
    return (await conn.execute(_REMINED, params)).rowcount == 1


_UNMINED = text(
    """
    UPDATE outgoing_transactions SET status = 'broadcast', mined_hash = NULL,
        mined_block_number = NULL, mined_block_hash = NULL, receipt_status = NULL,
        gas_used = NULL, effective_gas_price = NULL, fee_paid = NULL, confirmations = 0,
        mined_at = NULL,
        broadcast_at = now(), last_error = :note, updated_at = now()
    WHERE id = :id AND status = 'mined' AND mined_hash = :hash
    """
)


async def mark_unmined(conn: Any, tx_id: str, mined_hash: str, note: str) -> bool:
    params = {"id": tx_id, "hash": mined_hash, "note": note}
    return (await conn.execute(_UNMINED, params)).rowcount == 1


_FINISHED = text(
    """
    UPDATE outgoing_transactions SET status = :status, confirmations = :confirmations,
        finished_at = now(), last_error = :error, updated_at = now()
    WHERE id = :id AND status = 'mined' AND mined_hash = :hash
    """
)


async def mark_finished(
    conn: Any, tx_id: str, mined_hash: str, status: str, confirmations: int, error: str | None
) -> bool:
    params = {
        "id": tx_id,
        "hash": mined_hash,
        "status": status,
        "confirmations": confirmations,
        "error": error,
    }
    return (await conn.execute(_FINISHED, params)).rowcount == 1


_ABANDONED = text(
    """
    UPDATE outgoing_transactions SET status = 'failed', finished_at = now(), last_error = :error,
        updated_at = now()
    WHERE id = :id AND status IN ('signed', 'broadcast')
    """
)


async def mark_abandoned(conn: Any, tx_id: str, error: str) -> bool:
    """Failed without being mined (its nonce was taken by another transaction)."""
    return (await conn.execute(_ABANDONED, {"id": tx_id, "error": error[:1000]})).rowcount == 1


# --- Tron (no nonce: candidates are bound to a block and expire; see nespay.wallets.tron_sender)

_TRON_SIGNED = text(
    """
    UPDATE outgoing_transactions SET status = 'signed', gas_limit = :energy,
        max_fee_per_gas = :fee_limit, max_priority_fee_per_gas = 0, signed_at = now(),
        last_error = NULL, updated_at = now()
    WHERE id = :id AND status = 'queued'
    """
)


async def mark_signed_tron(conn: Any, tx_id: str, *, energy: int, fee_limit: int) -> bool:
    params = {"id": tx_id, "energy": energy, "fee_limit": fee_limit}
    return (await conn.execute(_TRON_SIGNED, params)).rowcount == 1


@dataclass(frozen=True)
class TronReceipt:
    """What `gettransactioninfobyid` says of a mined transaction."""

    tx_id: str
    block: int
    block_hash: str
    ok: bool
    energy: int
    fee: int  # sun burnt: energy, bandwidth, account creation


_TRON_MINED = text(
    """
    UPDATE outgoing_transactions SET status = 'mined', mined_hash = :hash,
        mined_block_number = :block, mined_block_hash = :block_hash, receipt_status = :ok,
        gas_used = :energy, effective_gas_price = NULL, fee_paid = :fee,
        confirmations = :confirmations, mined_at = now(), last_error = NULL, updated_at = now()
    WHERE id = :id AND status IN ('signed', 'broadcast')
    """
)
_TRON_REMINED = text(
    """
    UPDATE outgoing_transactions SET mined_block_number = :block, mined_block_hash = :block_hash,
        receipt_status = :ok, gas_used = :energy, fee_paid = :fee,
        confirmations = :confirmations, updated_at = now()
    WHERE id = :id AND status = 'mined' AND mined_hash = :hash
    """
)


def _tron_params(tx_id: str, receipt: TronReceipt, confirmations: int) -> dict[str, Any]:
    return {
        "id": tx_id,
        "hash": receipt.tx_id,
        "block": receipt.block,
        "block_hash": receipt.block_hash,
        "ok": 1 if receipt.ok else 0,
        "energy": receipt.energy,
        "fee": receipt.fee,
        "confirmations": confirmations,
    }


async def mark_mined_tron(conn: Any, tx_id: str, receipt: TronReceipt, confirmations: int) -> bool:
    params = _tron_params(tx_id, receipt, confirmations)
    return (await conn.execute(_TRON_MINED, params)).rowcount == 1


async def update_mined_tron(
    conn: Any, tx_id: str, receipt: TronReceipt, confirmations: int
) -> bool:
    params = _tron_params(tx_id, receipt, confirmations)
    return (await conn.execute(_TRON_REMINED, params)).rowcount == 1


_TRON_REBUILT = text(
    """
    UPDATE outgoing_transactions SET status = 'signed', broadcast_at = NULL,
        last_error = :note, updated_at = now()
    WHERE id = :id AND status IN ('signed', 'broadcast')
    """
)


async def mark_rebuilt(conn: Any, tx_id: str, note: str) -> bool:
    """A new candidate replaces every earlier one, all provably never mined."""
    return (await conn.execute(_TRON_REBUILT, {"id": tx_id, "note": note})).rowcount == 1
