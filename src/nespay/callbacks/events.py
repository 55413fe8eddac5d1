"""The event types a merchant can subscribe to (SPEC §7)."""

from __future__ import annotations

EVENT_TYPES: frozenset[str] = frozenset(
    {
        "invoice.created",
        "invoice.partially_paid",
        "invoice.paid",
        "invoice.confirmed",
        "invoice.expired",
        "invoice.invalid",
        "invoice.cancelled",
        # A reorg removed the payments that moved it: back to its earlier state.
        "invoice.reverted",
        "payment.detected",
        "payment.confirmed",
        "payment.reversed",
        "withdrawal.requested",
        "withdrawal.approved",
        "withdrawal.rejected",
        "withdrawal.sent",
        "withdrawal.confirmed",
        "withdrawal.failed",
        "card.application_updated",
        "card.created",
        "card.updated",
        "card.transaction",
    }
)
WILDCARD = "*"
