"""Every change of an invoice's status goes through here: `settle` (the scanner, after payments
change), `expire_due` (the expiry job), `cancel` and the admins' marks. Each locks the invoice
rows first, in id order, then writes the new status and its events with `apply`, so one
invoice's events are written, and commit, in the order of its changes.

An invoice's status is derived from its payments: the share received (each option's counted
base units over its amount due, summed over options, as an exact fraction), whether every
counted payment is confirmed, and whether it expired. Recomputing from the payments (rather
than adding and subtracting) keeps every path idempotent: a re-scan after a crash, a payment
re-mined after a reorg, a job replayed — each gives the same state.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any, NamedTuple

from nespay.db import Sql
from nespay.events.service import NewEvent, emit_all
from nespay.invoices import repository
from nespay.kit.money import decimal_string

# No payment moves these: a cancelled invoice, and one an admin marked (`marked`).
TERMINAL = frozenset({"cancelled"})

STATUS_EVENTS = {
    "partially_paid": "invoice.partially_paid",
    "paid": "invoice.paid",
    "confirmed": "invoice.confirmed",
    "invalid": "invoice.invalid",
    "expired": "invoice.expired",
    "cancelled": "invoice.cancelled",
    "pending": "invoice.reverted",
}

PPM = 1_000_000


@dataclass(frozen=True)
class OptionAmounts:
    """One payment option in its currency's base units: due, counted, confirmed."""

    due: int
    paid: int
    confirmed: int = 0


class Share(NamedTuple):
    """A share of an invoice, exactly: `num / den` (not reduced: the scanner's settle compares
    and formats it with integer arithmetic, no `Fraction` on its hot path)."""

    num: int
    den: int

    def reaches(self, tolerance_bps: int) -> bool:
        """At least 1 − the merchant's underpayment tolerance (basis points)."""
        return self.num * 10_000 >= self.den * (10_000 - tolerance_bps)

    @property
    def ppm(self) -> int:
        """In millionths, rounded down."""
        return self.num * PPM // self.den

    def text(self) -> str:
        """An exact decimal string in millionths, rounded down ("1" when paid in full exactly,
        "0.333333" for a third)."""
        return decimal_string(Decimal(self.ppm).scaleb(-6))

    def fraction(self) -> Fraction:
        return Fraction(self.num, self.den)


NOTHING = Share(0, 1)


def share(options: Sequence[OptionAmounts], *, confirmed: bool = False) -> Share:
    """The share of the invoice paid, exactly: Σ paid / due over its options (three options
    each paid a third sum to exactly 1)."""
    if len(options) == 1:
        o = options[0]
        return Share(o.confirmed if confirmed else o.paid, o.due)
    total = Fraction(0)
    for o in options:
        counted = o.confirmed if confirmed else o.paid
        if counted:
            total += Fraction(counted, o.due)
    return Share(total.numerator, total.denominator)


@dataclass(frozen=True)
class InvoiceFacts:
    status: str
    options: tuple[OptionAmounts, ...]
    all_confirmed: bool
    expired: bool
    tolerance_bps: int
    marked: bool = False

    @functools.cached_property
    def paid(self) -> Share:
        return share(self.options)


def derive_status(facts: InvoiceFacts) -> str:
    """The status an invoice's payments put it in (SPEC §5)."""
    if facts.marked or facts.status in TERMINAL:
        return facts.status
    tolerance = facts.tolerance_bps
    if facts.status == "confirmed" and share(facts.options, confirmed=True).reaches(tolerance):
        # Paid in full by confirmed payments: another payment (an overpayment, still
        # confirming) is recorded and flagged, but does not take the invoice back to paid.
        return "confirmed"
    if facts.paid.reaches(tolerance):
        # Also the way back from `invalid`: the reorged payment was mined again.
        return "confirmed" if facts.all_confirmed else "paid"
    if facts.status in ("confirmed", "invalid"):
        return "invalid"  # a counted, confirmed payment disappeared (and is not back)
    if facts.expired:
        return "expired"  # a late partial payment is recorded and credited; it stays expired
    return "partially_paid" if facts.paid.num > 0 else "pending"


@dataclass(frozen=True)
class Change:
    """An invoice's new status and flags (the status may be unchanged: flags only)."""

    invoice_id: str
    merchant_id: str
    previous: str
    status: str
    share: Share
    overpaid: bool
    late: bool
    marked: bool = False
    reason: str | None = None

    def steps(self) -> list[str]:
        """The statuses the merchant is told of, in order: straight to confirmed (a payment
        first seen already deep, a payment re-mined, an admin's mark) passes through paid, so
        `invoice.paid` always comes before `invoice.confirmed`."""
        if self.status == self.previous:
            return []
        if self.status == "confirmed" and self.previous != "paid":
            return ["paid", "confirmed"]
        return [self.status]


async def apply(db: Sql, changes: Sequence[Change]) -> list[str]:
    """Write the changes and one event per step (returns the events' ids). The caller holds
    the invoices' row locks (`lock`), taken before it wrote any other event of theirs."""
    await repository.set_statuses(
        db,
        [
            (
                c.invoice_id,
                c.status,
                min(c.share.ppm, 1000 * PPM),
                c.overpaid,
                c.late,
                c.marked,
                c.reason,
            )
            for c in changes
        ],
    )
    events: list[NewEvent] = []
    for change in changes:
        previous = change.previous
        for step in change.steps():
            data: dict[str, Any] = {
                "id": change.invoice_id,
                "status": step,
                "previous_status": previous,
                "paid_share": change.share.text(),
                "flags": {"overpaid": change.overpaid, "paid_late": change.late},
            }
            if change.reason is not None:
                data["reason"] = change.reason
            events.append((change.merchant_id, STATUS_EVENTS[step], change.invoice_id, data))
            previous = step
    return await emit_all(db, events)


async def lock(db: Sql, invoice_ids: Iterable[str]) -> None:
    """Lock the invoices' rows for a change, in id order."""
    ids = sorted(set(invoice_ids))
    if ids:
        await repository.lock_invoices(db, ids)


def _facts(row: Any, pending: bool) -> InvoiceFacts:
    options = tuple(
        OptionAmounts(int(due), int(paid), int(confirmed))
        for due, paid, confirmed in zip(row["due"], row["paid"], row["confirmed"], strict=True)
    )
    return InvoiceFacts(
        row["status"],
        options,
        not pending,
        row["expired"],
        row["tolerance_bps"],
        row["marked"],
    )


async def settle(
    db: Sql,
    invoice_ids: Iterable[str],
    *,
    amounts_changed: bool = True,
    not_yet_confirmed: Iterable[str] = (),
    locked: bool = False,
) -> dict[str, str]:
    """Re-derive the invoices' statuses from their payments; write one event per change.
    Returns id → new status for those whose status changed.

    `amounts_changed=False` (only confirmations moved, or the invoice expired, since their
    options' sums were last refreshed) skips refreshing the sums. Invoices in
    `not_yet_confirmed` count as having a pending payment here (one became confirmed and its
    `payment.confirmed` is still to be written). `locked`: the caller holds their rows."""
    ids = sorted(set(invoice_ids))
    if not ids:
        return {}
    if not locked:
        await repository.lock_invoices(db, ids)
    if amounts_changed:
        await repository.refresh_option_sums(db, ids)
    early = set(not_yet_confirmed)
    changes = []
    for row in await repository.settlement_facts(db, ids):
        facts = _facts(row, row["any_pending"] or row["id"] in early)
        status = derive_status(facts)
        paid = facts.paid
        overpaid, late = paid.num > paid.den, bool(row["any_late"])
        if (status, overpaid, late) != (row["status"], row["overpaid"], row["paid_late"]):
            changes.append(
                Change(row["id"], row["merchant_id"], row["status"], status, paid, overpaid, late)
            )
    await apply(db, changes)
    return {c.invoice_id: c.status for c in changes if c.status != c.previous}


async def expire_due(db: Sql, limit: int) -> int:
    """Expire up to `limit` due invoices (only once the scanners have read their networks up
    to the expiry): each becomes `expired` with its `invoice.expired` event."""
    ids = await repository.mark_expired_due(db, limit)
    await settle(db, ids, amounts_changed=False, locked=True)
    return len(ids)


async def waiting_for_scanners(db: Sql) -> dict[str, int]:
    """Network → due invoices it keeps open (its scanner has not read up to their expiry)."""
    return await repository.due_waiting_for_scanners(db)


async def change_one(
    db: Sql,
    invoice_id: str,
    *,
    merchant_id: str | None,
    decide: Callable[[Any], Change],
) -> Change | None:
    """Lock one invoice and apply what `decide(row)` returns (a Change, or raises); None if
    there is no such invoice (for this merchant)."""
    row = await repository.lock_invoice(db, invoice_id, merchant_id)
    if row is None:
        return None
    change: Change = decide(row)
    await apply(db, [change])
    return change
