"""Request and response models of the withdrawal and refund routes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nespay.kit.money import AMOUNT_SCHEMA, check_amount_text

Status = Literal[
    "pending_approval", "approved", "broadcast", "confirmed", "rejected", "cancelled", "failed"
]


class _Amount(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: str = Field(
        description='Decimal string in whole units, e.g. "25.5"',
        max_length=40,
        json_schema_extra=AMOUNT_SCHEMA,
    )
    address: str = Field(
        min_length=1, max_length=64, description="Where to send it (EVM: 0x…, EIP-55 if mixed case)"
    )

    @field_validator("amount")
    @classmethod
    def _amount(cls, value: str) -> str:
        return check_amount_text(value)


class WithdrawalCreate(_Amount):
    network: str = Field(min_length=1, max_length=32)
    currency: str = Field(pattern=r"^[A-Za-z0-9]{2,16}$", description="USDT, USDC, ETH, …")

    @field_validator("currency")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


class RefundCreate(_Amount):
    """A refund of (part of) what an invoice received, in the currency it was paid in."""

    network: str | None = Field(
        None, max_length=32, description="Needed only when payments came on several options"
    )
    currency: str | None = Field(None, pattern=r"^[A-Za-z0-9]{2,16}$")

    @field_validator("currency")
    @classmethod
    def _upper(cls, value: str | None) -> str | None:
        return value.upper() if value else value


class Withdrawal(BaseModel):
    id: str
    kind: Literal["withdrawal", "refund"]
    status: Status
    network: str
    currency: str
    amount: str
    address: str
    invoice_id: str | None = Field(description="The refunded invoice (refunds only)")
    requires_approval: bool = Field(
        description="Above the merchant's approval threshold (or without a USD rate): an admin "
        "approves or rejects it first"
    )
    tx_hash: str | None
    decision_reason: str | None
    failure_reason: str | None
    created_at: datetime
    updated_at: datetime
    broadcast_at: datetime | None
    confirmed_at: datetime | None
    ended_at: datetime | None


class WithdrawalList(BaseModel):
    data: list[Withdrawal]
    has_more: bool


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(
        min_length=1, max_length=500, description="Kept with the withdrawal and in the audit log"
    )
