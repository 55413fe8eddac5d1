"""Response models of the balance routes: amounts are decimal strings in whole units."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class Balance(BaseModel):
    network: str
    currency: str
    available: str = Field(description="Confirmed funds not held: what can be withdrawn")
    pending: str = Field(description="Payments seen and still confirming (not spendable yet)")
    held: str = Field(description="Held for withdrawals and refunds until they confirm or end")
    deficit: str = Field(
        description="A confirmed payment a reorg took back after it was spent: new credits "
        "cover it first, and withdrawals wait until they have"
    )


class BalanceList(BaseModel):
    data: list[Balance]


class Source(BaseModel):
    type: str | None = Field(description="payment, withdrawal, refund, …")
    id: str | None


class BalanceTransaction(BaseModel):
    id: str
    type: str = Field(
        description="payment, payment_fee, payment_reversal, payment_fee_reversal, withdrawal, "
        "refund, …"
    )
    phase: Literal["pending", "posted", "voided"] = Field(
        description="pending: held or incoming; posted: final; voided: a hold or an incoming "
        "payment released"
    )
    amount: str = Field(description="Signed, in whole units: + credits the merchant, − debits it")
    network: str
    currency: str
    source: Source
    created_at: datetime


class BalanceTransactionList(BaseModel):
    data: list[BalanceTransaction]
    has_more: bool
