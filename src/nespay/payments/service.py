"""What a payment does to its invoice.

An invoice's status is derived from its payments: the share received (each option's counted
base units over its amount due, summed), whether every counted payment is confirmed, and
whether it expired. The scanner records payments, counts confirmations and orphans payments of
reorged blocks; then `settle` re-derives each touched invoice's status in the same
transaction and writes one event per change. Recomputing from the payments (rather than
adding and subtracting) keeps every path idempotent: a re-scan after a crash, a payment
re-mined after a reorg, a job replayed — each gives the same state.

The scanner's commit runs these on the transaction's driver (asyncpg) connection, set-wise:
one statement for all of a batch's payments, one for their events, one for the invoices whose
status changed and one for theirs, whatever the number of blocks and transfers in the batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from nespay.kit.ids import new_id
from nespay.requestid import current_request_id

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
    # What the confirmed payments alone have paid (read only for a confirmed invoice).
    confirmed_fraction: Decimal = Decimal(0)


def derive_status(facts: InvoiceFacts) -> str:
    """The status an invoice's payments put it in (SPEC §5)."""
    if facts.status in TERMINAL:
        return facts.status
    threshold = 1 - Decimal(facts.tolerance_bps) / 10_000
    if facts.status == "confirmed" and facts.confirmed_fraction >= threshold:
        # Paid in full by confirmed payments: another payment (an overpayment, still
        # confirming) is recorded and flagged, but does not take the invoice back to paid.
        return "confirmed"
    if facts.fraction >= threshold:
        return "confirmed" if facts.all_confirmed else "paid"
    if facts.status == "confirmed":
        return "invalid"  # a counted, confirmed payment disappeared
    if facts.expired:
        return "expired"  # a late partial payment is recorded and credited; it stays expired
    return "partially_paid" if facts.fraction > 0 else "pending"


_MATCH = """
SELECT o.id AS option_id, o.invoice_id, o.address, o.currency_id, i.merchant_id,
       i.expires_at < now() AS late
FROM invoice_options o JOIN invoices i ON i.id = o.invoice_id
WHERE o.chain_family = 'evm' AND o.network_code = $1 AND o.address = ANY($2::text[])
"""


async def match_options(
    db: Any, network: str, transfers: Iterable[Transfer]
) -> dict[tuple[str, str], dict[str, Any]]:
    """(currency id, deposit address) → its option on this network, for every transfer in
    one query (an indexed lookup per address: the cost follows the transfers seen, not the
    number of open invoices)."""
    addresses = list({t.to_address for t in transfers})
    if not addresses:
        return {}
    rows = await db.fetch(_MATCH, network, addresses)
    return {(row["currency_id"], row["address"]): dict(row) for row in rows}


# A payment read already deep enough (catching up) is inserted confirmed: updating it again
# in the same transaction would rewrite the row and every index of it (payments has six).
_INSERT_PAYMENTS = """
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
        block_hash = excluded.block_hash, orphaned_at = NULL,
        confirmations = excluded.confirmations, confirmed_at = excluded.confirmed_at
    WHERE p.status = 'orphaned'
RETURNING p.id, p.invoice_id, p.merchant_id, p.status, p.tx_hash, p.log_index, p.block_number,
          p.amount
"""


@dataclass(frozen=True)
class Recorded:
    """What `record_all` counted: the invoices it touched, and the payments it wrote already
    confirmed (their `payment.confirmed` events come after the invoices' first settle)."""

    invoices: set[str]
    confirmed: list[Any]


async def record_all(
    db: Any,
    network: str,
    matched: list[tuple[Transfer, dict[str, Any]]],
    *,
    tip: int,
    needed: int,
) -> Recorded:
    """Insert the payments (or revive those a reorg had orphaned) with their confirmations at
    `tip`, each with its `payment.detected` event; those already counted are left alone."""
    unique = {(t.tx_hash, t.log_index): (t, option) for t, option in matched}
    if not unique:
        return Recorded(set(), [])
    items = list(unique.values())
    rows = await db.fetch(
        _INSERT_PAYMENTS,
        network,
        [new_id("pay") for _ in items],
        [o["invoice_id"] for _, o in items],
        [o["option_id"] for _, o in items],
        [o["merchant_id"] for _, o in items],
        [t.currency_id for t, _ in items],
        [t.tx_hash for t, _ in items],
        [t.log_index for t, _ in items],
        [t.block_number for t, _ in items],
        [t.block_hash for t, _ in items],
        [t.from_address for t, _ in items],
        [t.to_address for t, _ in items],
        [Decimal(t.amount) for t, _ in items],
        [bool(o["late"]) for _, o in items],
        tip,
        needed,
    )
    counted = {(row["tx_hash"], row["log_index"]): row for row in rows}
    events = [
        (row["merchant_id"], "payment.detected", row["invoice_id"], _payment_data(row["id"], t))
        for t, _ in items
        if (row := counted.get((t.tx_hash, t.log_index))) is not None
    ]
    await emit_all(db, events)
    return Recorded(
        {row["invoice_id"] for row in rows}, [row for row in rows if row["status"] == "confirmed"]
    )


_INSERT_EVENTS = """
INSERT INTO events (id, merchant_id, type, subject_id, data, request_id)
SELECT e.id, e.merchant_id, e.type, e.subject_id, e.data::jsonb, $6
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
     WITH ORDINALITY AS e(id, merchant_id, type, subject_id, data, n)
ORDER BY e.n
"""


async def emit_all(db: Any, events: list[tuple[str, str, str, dict[str, Any]]]) -> None:
    """Write (merchant id, type, subject id, data) events in one statement, in list order
    (their `seq` follows it): the columns `nespay.events.service.emit` writes, for many."""
    if not events:
        return
    await db.execute(
        _INSERT_EVENTS,
        [new_id("evt") for _ in events],
        [e[0] for e in events],
        [e[1] for e in events],
        [e[2] for e in events],
        [orjson.dumps(e[3]).decode() for e in events],
        current_request_id(),
    )


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


_CONFIRM = """
UPDATE payments SET confirmations = $2 - block_number + 1,
    status = CASE WHEN $2 - block_number + 1 >= $3 THEN 'confirmed' ELSE status END,
    confirmed_at = CASE WHEN $2 - block_number + 1 >= $3 THEN now() END
WHERE network_code = $1 AND status = 'pending' AND block_number <= $2
  -- not the payments this batch inserted at this depth (the same values again would rewrite
  -- the row and its indexes for nothing)
  AND (confirmations <> $2 - block_number + 1 OR $2 - block_number + 1 >= $3)
RETURNING id, invoice_id, merchant_id, status, tx_hash, log_index, block_number, amount
"""


async def count_confirmations(
    db: Any,
    network: str,
    tip: int,
    needed: int,
    *,
    recorded: list[Any] = (),  # type: ignore[assignment]
) -> set[str]:
    """Bring pending payments' confirmations up to `tip`; returns invoices with a payment
    that just became confirmed (each with its `payment.confirmed` event), including the
    `recorded` ones that `record_all` wrote confirmed."""
    confirmed = list(recorded) + [
        row
        for row in await db.fetch(_CONFIRM, network, tip, needed)
        if row["status"] == "confirmed"
    ]
    await emit_all(
        db,
        [
            (row["merchant_id"], "payment.confirmed", row["invoice_id"], _row_data(network, row))
            for row in confirmed
        ],
    )
    return {row["invoice_id"] for row in confirmed}


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


_ORPHAN = """
UPDATE payments SET status = 'orphaned', orphaned_at = now(), confirmations = 0
WHERE network_code = $1 AND block_number > $2 AND status <> 'orphaned'
RETURNING id, invoice_id, merchant_id, tx_hash, log_index, block_number, amount
"""


async def orphan_after(db: Any, network: str, ancestor: int) -> set[str]:
    """Payments in blocks a reorg removed stop counting (each with its `payment.reversed`
    event); returns their invoices."""
    rows = await db.fetch(_ORPHAN, network, ancestor)
    await emit_all(
        db,
        [
            (
                row["merchant_id"],
                "payment.reversed",
                row["invoice_id"],
                _row_data(network, row, reason="reorg"),
            )
            for row in rows
        ],
    )
    return {row["invoice_id"] for row in rows}


# The touched invoices, locked before anything of theirs is read, in id order (concurrent
# settlers, e.g. two networks' scanners for one fiat invoice, cannot deadlock). First and alone:
# each later statement then reads what a settler that held the lock before us committed (a
# refresh that read an older snapshot would store a stale sum, which confirmation-only settles
# reuse). NO KEY: payments inserted for these invoices hold KEY SHARE on them (foreign key).
_LOCK = """
SELECT id FROM invoices WHERE id = ANY($1::text[]) ORDER BY id FOR NO KEY UPDATE
"""

# `ix_payments_option_id` makes each option's sum an index lookup, not a scan of every payment.
_REFRESH_OPTIONS = """
UPDATE invoice_options o SET amount_paid = COALESCE(
    (SELECT sum(p.amount) FROM payments p WHERE p.option_id = o.id AND p.status <> 'orphaned'),
    0)
WHERE o.invoice_id = ANY($1::text[])
"""

_FACTS = """
SELECT i.id, i.merchant_id, i.status, i.underpayment_tolerance_bps, i.expired_at,
       i.overpaid, i.paid_late,
       COALESCE((SELECT sum(o.amount_paid / o.amount) FROM invoice_options o
                 WHERE o.invoice_id = i.id), 0) AS fraction,
       -- per option, as `fraction` (a sum of per-payment shares would round below 1)
       CASE WHEN i.status = 'confirmed' THEN COALESCE(
           (SELECT sum(c.paid / o.amount) FROM invoice_options o
            CROSS JOIN LATERAL (SELECT COALESCE(sum(p.amount), 0) AS paid FROM payments p
                                WHERE p.option_id = o.id AND p.status = 'confirmed') c
            WHERE o.invoice_id = i.id), 0) ELSE 0 END
           AS confirmed_fraction,
       early.id IS NULL AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.invoice_id = i.id
                                        AND p.status = 'pending') AS all_confirmed,
       EXISTS (SELECT 1 FROM payments p WHERE p.invoice_id = i.id AND p.late
               AND p.status <> 'orphaned') AS any_late
FROM invoices i LEFT JOIN (SELECT DISTINCT unnest($2::text[]) AS id) early ON early.id = i.id
WHERE i.id = ANY($1::text[])
ORDER BY i.id
"""

_SET_STATUSES = """
UPDATE invoices i SET status = c.status, paid_ppm = c.ppm,
    overpaid = c.overpaid, paid_late = c.paid_late, updated_at = now(),
    paid_at = CASE WHEN c.status IN ('paid', 'confirmed')
                   THEN COALESCE(i.paid_at, now()) ELSE i.paid_at END,
    confirmed_at = CASE WHEN c.status = 'confirmed'
                        THEN COALESCE(i.confirmed_at, now()) ELSE i.confirmed_at END,
    invalid_at = CASE WHEN c.status = 'invalid' THEN now() ELSE i.invalid_at END
FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bool[], $5::bool[])
     AS c(id, status, ppm, overpaid, paid_late)
WHERE i.id = c.id
"""

STATUS_EVENTS = {
    "partially_paid": "invoice.partially_paid",
    "paid": "invoice.paid",
    "confirmed": "invoice.confirmed",
    "invalid": "invoice.invalid",
    "expired": "invoice.expired",
    "pending": "invoice.reverted",
}


async def settle(
    db: Any,
    invoice_ids: set[str],
    *,
    amounts_changed: bool = True,
    not_yet_confirmed: Sequence[str] = (),
) -> dict[str, str]:
    """Re-derive the touched invoices' statuses (rows locked in id order, so concurrent
    settlers cannot deadlock); write one event per change. Returns id → new status.

    `amounts_changed=False` (only confirmations moved since their options' sums were last
    refreshed) skips refreshing the sums: confirming a payment does not change what it paid.
    Invoices in `not_yet_confirmed` count as having a pending payment here (one was written
    confirmed, and its `payment.confirmed` is still to come)."""
    if not invoice_ids:
        return {}
    ids = sorted(invoice_ids)
    await db.execute(_LOCK, ids)
    if amounts_changed:
        await db.execute(_REFRESH_OPTIONS, ids)
    changed: dict[str, str] = {}
    updates: list[tuple[str, str, int, bool, bool]] = []
    events: list[tuple[str, str, str, dict[str, Any]]] = []
    for row in await db.fetch(_FACTS, ids, list(not_yet_confirmed)):
        fraction = Decimal(row["fraction"])
        facts = InvoiceFacts(
            row["status"],
            fraction,
            row["all_confirmed"],
            row["expired_at"] is not None,
            row["underpayment_tolerance_bps"],
            Decimal(row["confirmed_fraction"]),
        )
        status = derive_status(facts)
        overpaid, late = fraction > 1, bool(row["any_late"])
        if (status, overpaid, late) == (row["status"], row["overpaid"], row["paid_late"]):
            continue
        ppm = int(min(fraction, Decimal(1000)) * 1_000_000)
        updates.append((row["id"], status, ppm, overpaid, late))
        if status == row["status"]:
            continue
        changed[row["id"]] = status
        # Straight to confirmed (a payment first seen already deep): paid comes first, so
        # the merchant always receives invoice.paid before invoice.confirmed.
        steps = ["paid", status] if status == "confirmed" and row["status"] != "paid" else [status]
        previous = row["status"]
        for step in steps:
            data = {
                "id": row["id"],
                "status": step,
                "previous_status": previous,
                "paid_share": str(fraction),
                "flags": {"overpaid": overpaid, "paid_late": late},
            }
            events.append((row["merchant_id"], STATUS_EVENTS[step], row["id"], data))
            previous = step
    if updates:
        await db.execute(_SET_STATUSES, *(list(column) for column in zip(*updates, strict=True)))
    await emit_all(db, events)
    return changed
