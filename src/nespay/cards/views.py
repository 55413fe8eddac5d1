"""Card rows → what the merchant reads (USD from cents, stablecoins from base units)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from nespay.cards.schemas import Card, CardLimit, CardTransaction, CardUser, CardUserBalance
from nespay.kit.money import from_base_units


def usd(cents: int | None) -> str | None:
    return None if cents is None else from_base_units(int(cents), 2)


def card_user(row: Any) -> CardUser:
    return CardUser(
        id=row["id"],
        reference=row["reference"],
        first_name=row["first_name"],
        last_name=row["last_name"],
        email=row["email"],
        application_status=row["application_status"],
        application_reason=row["application_reason"],
        is_active=row["is_active"],
        network=row["network_code"],
        currency=row["currency"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def card(row: Any) -> Card:
    limit = None
    if row["limit_cents"] is not None and row["limit_frequency"] is not None:
        limit = CardLimit(amount=usd(row["limit_cents"]) or "0", frequency=row["limit_frequency"])
    return Card(
        id=row["id"],
        card_user_id=row["card_user_id"],
        type=row["type"],
        status=row["status"],
        last4=row["last4"],
        expiration_month=row["expiration_month"],
        expiration_year=row["expiration_year"],
        limit=limit,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def transaction(row: Any) -> CardTransaction:
    """`row` with its currency's `decimals`, `network_code` and `currency` (None unfunded)."""
    decimals = row["decimals"]
    return CardTransaction(
        id=row["id"],
        card_id=row["card_id"],
        decision=row["decision"],
        decline_reason=row["decline_reason"],
        status=row["status"],
        amount=usd(row["amount_cents"]) or "0",
        settled_amount=usd(row["settled_cents"]),
        held=from_base_units(row["held"], decimals) if decimals is not None else "0",
        network=row["network_code"],
        currency=row["currency"],
        merchant_name=row["merchant_name"],
        merchant_category=row["merchant_category"],
        merchant_country=row["merchant_country"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def balance(rows: list[Any], cent_units: int | Decimal) -> CardUserBalance | None:
    """The card user's available and spend accounts as one balance (None before funding)."""
    by_kind = {row["kind"]: row for row in rows}
    available = by_kind.get("card_available")
    if available is None:
        return None
    spend = by_kind.get("card_spend")
    decimals = available["decimals"]
    free = (
        int(available["credits_posted"])
        - int(available["debits_posted"])
        - int(available["debits_pending"])
    )
    return CardUserBalance(
        network=available["network_code"],
        currency=available["code"],
        available=from_base_units(max(free, 0), decimals),
        held=from_base_units(available["debits_pending"], decimals),
        spent=from_base_units(
            int(spend["credits_posted"]) - int(spend["debits_posted"]) if spend else 0, decimals
        ),
        available_usd=from_base_units(max(free, 0) // int(cent_units), 2),
    )
