"""What a scanned batch of blocks does to payments and their invoices.

`apply_batch` runs inside the scanner's commit (one transaction with the cursor's move): it
orphans the payments of reorged blocks, counts confirmations, matches the batch's transfers to
deposit addresses, then — holding the touched invoices' row locks, taken before any of their
events is written — records the payments with their events and lets
`nespay.invoices.states.settle` re-derive each invoice. So one invoice's events are written in
the order of its changes even when two networks' scanners settle it at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from nespay.db import Sql
from nespay.events.service import NewEvent, emit_all
from nespay.invoices import states
from nespay.kit.ids import new_id
from nespay.ledger import postings
from nespay.payments import repository


@dataclass(frozen=True)
class Transfer:
    """A transfer seen on chain (to any address; matching finds ours)."""

    network: str
    currency_id: str
    tx_hash: str
    log_index: int  # -1 for a native-coin transfer
    block_number: int
    block_hash: str
    block_timestamp: int  # seconds; lateness is judged by it, not by when we read it
    from_address: str
    to_address: str
    amount: int


async def match(
    db: Sql, network: str, transfers: Iterable[Transfer], chain_family: str = "evm"
) -> list[tuple[Transfer, Any]]:
    """The transfers to our deposit addresses, each with its option (same currency)."""
    transfers = list(transfers)
    addresses = list({t.to_address for t in transfers})
    if not addresses:
        return []
    options = {
        (row["currency_id"], row["address"]): row
        for row in await repository.match(db, network, addresses, chain_family)
    }
    return [
        (transfer, option)
        for transfer in transfers
        if (option := options.get((transfer.currency_id, transfer.to_address))) is not None
    ]


def _payment_data(payment_id: str, transfer: Transfer) -> dict[str, Any]:
    return {
        "id": payment_id,
        "network": transfer.network,
        "tx_hash": transfer.tx_hash,
        "log_index": transfer.log_index,
        "block_number": transfer.block_number,
        "block_hash": transfer.block_hash,
        "from_address": transfer.from_address,
        "to_address": transfer.to_address,
        "amount_base_units": str(transfer.amount),
    }


def _row_data(network: str, row: Any, **extra: str) -> dict[str, Any]:
    return {
        "id": row["id"],
        "network": network,
        "tx_hash": row["tx_hash"],
        "log_index": row["log_index"],
        "block_number": row["block_number"],
        "amount_base_units": str(row["amount"]),
        **extra,
    }


async def _record(
    db: Sql, network: str, matched: list[tuple[Transfer, Any]], *, tip: int, needed: int
) -> tuple[Sequence[Any], list[NewEvent]]:
    """Insert the payments (or revive orphaned ones); returns the rows counted now and
    their `payment.detected` events (to be written by the caller, in order)."""
    unique = {(t.tx_hash, t.log_index): (t, o) for t, o in matched}
    if not unique:
        return [], []
    items = list(unique.values())
    rows = await repository.insert(
        db,
        network,
        [
            {
                "id": new_id("pay"),
                "invoice_id": option["invoice_id"],
                "option_id": option["option_id"],
                "merchant_id": option["merchant_id"],
                "currency_id": t.currency_id,
                "tx_hash": t.tx_hash,
                "log_index": t.log_index,
                "block_number": t.block_number,
                "block_hash": t.block_hash,
                "from_address": t.from_address,
                "to_address": t.to_address,
                "amount": t.amount,
                # Mined after the expiry (chain time), however late we read it.
                "late": t.block_timestamp > float(option["expires_epoch"]),
            }
            for t, option in items
        ],
        tip=tip,
        needed=needed,
    )
    counted = {(row["tx_hash"], row["log_index"]): row for row in rows}
    events: list[NewEvent] = [
        (row["merchant_id"], "payment.detected", row["invoice_id"], _payment_data(row["id"], t))
        for t, _ in items
        if (row := counted.get((t.tx_hash, t.log_index))) is not None
    ]
    return rows, events


async def apply_batch(
    db: Sql,
    network: str,
    transfers: Sequence[Transfer],
    *,
    tip: int,
    needed: int,
    ancestor: int | None = None,
    fee_bps: int = 0,
    chain_family: str = "evm",
) -> dict[str, str]:
    """Everything a scanned batch does to payments, the ledger and invoices, in the caller's
    transaction (see the module's docstring). `ancestor`: the common ancestor of a reorg, above
    which payments stop counting until the rescan finds them again. `fee_bps`: the platform's
    fee for merchants without their own. Returns id → new status."""
    orphaned = await repository.orphan_after(db, network, ancestor) if ancestor is not None else []
    newly_confirmed = [
        row
        for row in await repository.confirm_up_to(db, network, tip, needed)
        if row["status"] == "confirmed"
    ]
    matched = await match(db, network, transfers, chain_family)
    return await _count(
        db, network, orphaned, newly_confirmed, matched, tip=tip, needed=needed, fee_bps=fee_bps
    )


async def record_settled(
    db: Sql, network: str, transfer: Transfer, option: Any, *, fee_bps: int = 0
) -> dict[str, str]:
    """A payment a provider reports as already final (Intrajasa's virtual accounts: no
    chain, no confirmations to count), to `option` (a row as `match` returns: option_id,
    invoice_id, merchant_id, expires_epoch). Recorded confirmed at once, through the same
    steps as a payment first read already deep: `payment.detected`, the invoice paid, then
    `payment.confirmed`, the invoice confirmed; the ledger credit posted with its fee. The
    same transfer again (same network, tx hash, log index) changes nothing. Returns id → new
    status."""
    return await _count(
        db,
        network,
        [],
        [],
        [(transfer, option)],
        tip=transfer.block_number,
        needed=1,
        fee_bps=fee_bps,
    )


async def _count(
    db: Sql,
    network: str,
    orphaned: Sequence[Any],
    newly_confirmed: Sequence[Any],
    matched: list[tuple[Transfer, Any]],
    *,
    tip: int,
    needed: int,
    fee_bps: int,
) -> dict[str, str]:
    await states.lock(
        db,
        [row["invoice_id"] for row in orphaned]
        + [row["invoice_id"] for row in newly_confirmed]
        + [option["invoice_id"] for _, option in matched],
    )
    recorded, detected = await _record(db, network, matched, tip=tip, needed=needed)
    await postings.post_payments(
        db,
        orphaned=orphaned,
        recorded=recorded,
        newly_confirmed=newly_confirmed,
        default_fee_bps=fee_bps,
    )
    await emit_all(
        db,
        [
            (
                row["merchant_id"],
                "payment.reversed",
                row["invoice_id"],
                _row_data(network, row, reason="reorg"),
            )
            for row in orphaned
        ]
        + detected,
    )
    # A payment that is confirmed now (read already deep, or deep enough at this tip) still
    # takes its invoice through paid first: its `payment.confirmed` comes after the first
    # settle, and the invoice counts as having a pending payment until then.
    confirmed = [row for row in recorded if row["status"] == "confirmed"] + newly_confirmed
    confirming = {row["invoice_id"] for row in confirmed}
    changed = await states.settle(
        db,
        {row["invoice_id"] for row in orphaned} | {row["invoice_id"] for row in recorded},
        not_yet_confirmed=confirming,
        locked=True,
    )
    await emit_all(
        db,
        [
            (row["merchant_id"], "payment.confirmed", row["invoice_id"], _row_data(network, row))
            for row in confirmed
        ],
    )
    changed |= await states.settle(db, confirming, amounts_changed=False, locked=True)
    return changed
