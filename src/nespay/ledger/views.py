"""Ledger rows → what the merchant reads (whole units, signed from the merchant's side)."""

from __future__ import annotations

from typing import Any

from nespay.kit.money import from_base_units
from nespay.ledger.schemas import Balance, BalanceTransaction, Source

_PHASES = {"pending": "pending", "posted": "posted", "post": "posted", "void": "voided"}


def balance(row: Any) -> Balance:
    decimals = row["decimals"]
    spendable = int(row["credits_posted"]) - int(row["debits_posted"]) - int(row["debits_pending"])
    return Balance(
        network=row["network_code"],
        currency=row["code"],
        available=from_base_units(max(spendable, 0), decimals),
        pending=from_base_units(row["credits_pending"], decimals),
        held=from_base_units(row["debits_pending"], decimals),
        deficit=from_base_units(max(-spendable, 0), decimals),
    )


def transaction(row: Any, merchant_account_prefix: str) -> BalanceTransaction:
    # A void moves nothing itself: it shows the amount it released.
    amount = int(row["held"] if row["type"] == "void" else row["amount"])
    if row["debit_account_id"].startswith(merchant_account_prefix):
        amount = -amount
    return BalanceTransaction(
        id=row["id"],
        type=row["code"],
        phase=_PHASES[row["type"]],  # type: ignore[arg-type]
        amount=from_base_units(amount, row["decimals"]),
        network=row["network_code"],
        currency=row["currency"],
        source=Source(type=row["source_type"], id=row["source_id"]),
        created_at=row["created_at"],
    )
