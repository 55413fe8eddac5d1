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
        "withdrawal.cancelled",
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


def subscribes(endpoint: str, event_type: str) -> str:
    """The one rule of who gets an event, as SQL: the webhook endpoint aliased `endpoint` is
    enabled and takes the type `event_type` (an SQL expression), listed or through `*`."""
    return (
        f"{endpoint}.enabled AND ({endpoint}.events @> ARRAY[{event_type}]::varchar[]"
        f" OR {endpoint}.events @> ARRAY['{WILDCARD}']::varchar[])"
    )
