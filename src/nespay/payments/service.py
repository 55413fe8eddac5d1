"""What a payment does to its invoice.

An invoice's status is derived from its payments: the share received (each option's counted
base units over its amount due, summed), whether every counted payment is confirmed, and
whether it expired. The scanner records payments, counts confirmations and orphans payments of
reorged blocks; then `settle` re-derives each touched invoice's status in the same
transaction and writes one event per change. Recomputing from the payments (rather than
adding and subtracting) keeps every path idempotent: a re-scan after a crash, a payment
re-mined after a reorg, a job replayed — each gives the same state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from nespay.events.service import emit
from nespay.kit.ids import new_id

TERMINAL = frozenset({"cancelled", "invalid"})


@dataclass(frozen=True)
class Transfer:
    """A transfer seen on chain to one of our deposit addresses."""

    network: str
    currency_id: str
    tx_hash: str
    log_index: int  # -1 for a native-coin transfer
    block_number: int
    block_hash: str
    from_address: str
    to_address: str
    amount: int


@dataclass(frozen=True)
class InvoiceFacts:
    status: str
    fraction: Decimal
    all_confirmed: bool
    expired: bool
    tolerance_bps: int


def derive_status(facts: InvoiceFacts) -> str:
    """The status an invoice's payments put it in (SPEC §5)."""
    if facts.status in TERMINAL:
        return facts.status
    threshold = 1 - Decimal(facts.tolerance_bps) / 10_000
    if facts.fraction >= threshold:
        return "confirmed" if facts.all_confirmed else "paid"
    if facts.status == "confirmed":
        return "invalid"  # a counted, confirmed payment disappeared
    if facts.expired:
        return "expired"  # a late partial payment is recorded and credited; it stays expired
    return "partially_paid" if facts.fraction > 0 else "pending"


_MATCH = text(
    """
    SELECT o.id AS option_id, o.invoice_id, o.address, i.merchant_id, i.expires_at < now() AS late
    FROM invoice_options o JOIN invoices i ON i.id = o.invoice_id
    WHERE o.chain_family = 'evm' AND o.network_code = :network AND o.currency_id = :currency_id
      AND o.address = ANY(:addresses)
    """
)

_INSERT_PAYMENT = text(
    """
    INSERT INTO payments (id, invoice_id, option_id, merchant_id, network_code, currency_id,
                          tx_hash, log_index, block_number, block_hash, from_address, to_address,
                          amount, status, confirmations, late)
    VALUES (:id, :invoice_id, :option_id, :merchant_id, :network, :currency_id, :tx_hash,
            :log_index, :block_number, :block_hash, :from_address, :to_address, :amount,
            'pending', 0, :late)
    ON CONFLICT (network_code, tx_hash, log_index) DO UPDATE
        SET status = 'pending', block_number = excluded.block_number,
            block_hash = excluded.block_hash, orphaned_at = NULL, confirmations = 0
        WHERE payments.status = 'orphaned'
    RETURNING id, invoice_id, merchant_id
    """
)


async def match_options(
    conn: AsyncConnection, network: str, currency_id: str, addresses: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """Deposit address → its option on this network and currency (an indexed lookup per
    address: the cost follows the transfers seen, not the number of open invoices)."""
    rows = await conn.execute(
        _MATCH, {"network": network, "currency_id": currency_id, "addresses": list(addresses)}
    )
    return {row.address: dict(row._mapping) for row in rows}


async def record(conn: AsyncConnection, transfer: Transfer, option: dict[str, Any]) -> str | None:
    """Insert the payment (or revive it if a reorg had orphaned it); None if already counted."""
    row = (
        await conn.execute(
            _INSERT_PAYMENT,
            {
                "id": new_id("pay"),
                "invoice_id": option["invoice_id"],
                "option_id": option["option_id"],
                "merchant_id": option["merchant_id"],
                "network": transfer.network,
                "currency_id": transfer.currency_id,
                "tx_hash": transfer.tx_hash,
                "log_index": transfer.log_index,
                "block_number": transfer.block_number,
                "block_hash": transfer.block_hash,
                "from_address": transfer.from_address,
                "to_address": transfer.to_address,
                "amount": Decimal(transfer.amount),
                "late": bool(option["late"]),
            },
        )
    ).one_or_none()
    if row is None:
        return None
    await emit(
        conn,
        merchant_id=row.merchant_id,
        type="payment.detected",
        subject_id=row.invoice_id,
        data=_payment_data(row.id, transfer),
    )
    return row.invoice_id


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


_CONFIRM = text(
    """
    UPDATE payments SET confirmations = :tip - block_number + 1,
        status = CASE WHEN :tip - block_number + 1 >= :needed THEN 'confirmed' ELSE status END,
        confirmed_at = CASE WHEN :tip - block_number + 1 >= :needed THEN now() END
    WHERE network_code = :network AND status = 'pending' AND block_number <= :tip
    RETURNING id, invoice_id, merchant_id, status, tx_hash, log_index, block_number, amount
    """
)


async def count_confirmations(
    conn: AsyncConnection, network: str, tip: int, needed: int
) -> set[str]:
    """Bring pending payments' confirmations up to `tip`; returns invoices with a payment
    that just became confirmed."""
    touched = set()
    for row in await conn.execute(_CONFIRM, {"network": network, "tip": tip, "needed": needed}):
        if row.status == "confirmed":
            touched.add(row.invoice_id)
            await _payment_event(conn, "payment.confirmed", network, row)
    return touched


async def _payment_event(
    conn: AsyncConnection, type: str, network: str, row: Any, **extra: str
) -> None:
    await emit(
        conn,
        merchant_id=row.merchant_id,
        type=type,
        subject_id=row.invoice_id,
        data={
            "id": row.id,
            "network": network,
            "tx_hash": row.tx_hash,
            "log_index": row.log_index,
            "block_number": row.block_number,
            "amount_base_units": str(row.amount),
            **extra,
        },
    )


_ORPHAN = text(
    """
    UPDATE payments SET status = 'orphaned', orphaned_at = now(), confirmations = 0
    WHERE network_code = :network AND block_number > :ancestor AND status <> 'orphaned'
    RETURNING id, invoice_id, merchant_id, tx_hash, log_index, block_number, amount
    """
)


async def orphan_after(conn: AsyncConnection, network: str, ancestor: int) -> set[str]:
    """Payments in blocks a reorg removed stop counting; returns their invoices."""
    touched = set()
    for row in await conn.execute(_ORPHAN, {"network": network, "ancestor": ancestor}):
        touched.add(row.invoice_id)
        await _payment_event(conn, "payment.reversed", network, row, reason="reorg")
    return touched


_REFRESH_OPTIONS = text(
    """
    UPDATE invoice_options o SET amount_paid = COALESCE(
        (SELECT sum(p.amount) FROM payments p WHERE p.option_id = o.id AND p.status <> 'orphaned'),
        0)
    WHERE o.invoice_id = ANY(:ids)
    """
)

_FACTS = text(
    """
    SELECT i.id, i.merchant_id, i.status, i.underpayment_tolerance_bps, i.expired_at,
           i.overpaid, i.paid_late,
           COALESCE((SELECT sum(o.amount_paid / o.amount) FROM invoice_options o
                     WHERE o.invoice_id = i.id), 0) AS fraction,
           NOT EXISTS (SELECT 1 FROM payments p WHERE p.invoice_id = i.id
                       AND p.status = 'pending') AS all_confirmed,
           EXISTS (SELECT 1 FROM payments p WHERE p.invoice_id = i.id AND p.late
                   AND p.status <> 'orphaned') AS any_late
    FROM invoices i WHERE i.id = ANY(:ids)
    ORDER BY i.id
    FOR UPDATE OF i
    """
)

_SET_STATUS = text(
    """
    UPDATE invoices SET status = CAST(:status AS varchar), paid_ppm = :ppm,
        overpaid = :overpaid, paid_late = :paid_late, updated_at = now(),
        paid_at = CASE WHEN CAST(:status AS varchar) IN ('paid', 'confirmed')
                       THEN COALESCE(paid_at, now()) ELSE paid_at END,
        confirmed_at = CASE WHEN CAST(:status AS varchar) = 'confirmed'
                            THEN COALESCE(confirmed_at, now()) ELSE confirmed_at END,
        invalid_at = CASE WHEN CAST(:status AS varchar) = 'invalid' THEN now()
                          ELSE invalid_at END
    WHERE id = :id
    """
)

STATUS_EVENTS = {
    "partially_paid": "invoice.partially_paid",
    "paid": "invoice.paid",
    "confirmed": "invoice.confirmed",
    "invalid": "invoice.invalid",
    "expired": "invoice.expired",
    "pending": "invoice.reverted",
}


async def settle(conn: AsyncConnection, invoice_ids: set[str]) -> dict[str, str]:
    """Re-derive the touched invoices' statuses (rows locked in id order, so concurrent
    settlers cannot deadlock); write one event per change. Returns id → new status."""
    if not invoice_ids:
        return {}
    ids = sorted(invoice_ids)
    await conn.execute(_REFRESH_OPTIONS, {"ids": ids})
    changed = {}
    for row in (await conn.execute(_FACTS, {"ids": ids})).all():
        fraction = Decimal(row.fraction)
        facts = InvoiceFacts(
            row.status,
            fraction,
            row.all_confirmed,
            row.expired_at is not None,
            row.underpayment_tolerance_bps,
        )
        status = derive_status(facts)
        overpaid, late = fraction > 1, bool(row.any_late)
        if (status, overpaid, late) == (row.status, row.overpaid, row.paid_late):
            continue
        ppm = int(min(fraction, Decimal(1000)) * 1_000_000)
        await conn.execute(
            _SET_STATUS,
            {"id": row.id, "status": status, "ppm": ppm, "overpaid": overpaid, "paid_late": late},
        )
        if status != row.status:
            changed[row.id] = status
            # Straight to confirmed (a payment first seen already deep): paid comes first, so
            # the merchant always receives invoice.paid before invoice.confirmed.
            steps = ["paid", status] if status == "confirmed" and row.status != "paid" else [status]
            previous = row.status
            for step in steps:
                await emit(
                    conn,
                    merchant_id=row.merchant_id,
                    type=STATUS_EVENTS[step],
                    subject_id=row.id,
                    data={
                        "id": row.id,
                        "status": step,
                        "previous_status": previous,
                        "paid_share": str(fraction),
                        "flags": {"overpaid": overpaid, "paid_late": late},
                    },
                )
                previous = step
    return changed
