"""Request and response models of the invoice routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nespay.kit.money import AMOUNT_SCHEMA, check_amount_text


class PaymentOptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    network: str = Field(min_length=1, max_length=32)
    currency: str = Field(min_length=1, max_length=16)

    @field_validator("currency")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


class InvoiceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: str = Field(
        description='Decimal string in whole units, e.g. "10.5"',
        max_length=40,
        json_schema_extra=AMOUNT_SCHEMA,
    )
    currency: str = Field(
        pattern=r"^[A-Za-z0-9]{2,16}$", description="Crypto code (USDT) or fiat (USD, IDR)"
    )
    network: str | None = Field(None, max_length=32)
    payment_options: list[PaymentOptionIn] | None = Field(None, min_length=1, max_length=20)
    order_id: str | None = Field(None, max_length=200)
    description: str | None = Field(None, max_length=1000)
    metadata: dict[str, Any] | None = None
    expires_in: int | None = Field(None, ge=60, le=30 * 24 * 3600, description="Seconds")
    redirect_url: str | None = Field(None, max_length=2000, pattern=r"^https?://\S+$")

    @field_validator("amount")
    @classmethod
    def _amount(cls, value: str) -> str:
        return check_amount_text(value)

    @field_validator("currency")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


class PaymentOption(BaseModel):
    network: str
    currency: str
    address: str
    amount: str
    amount_paid: str
    token_contract: str | None
    decimals: int
    rate: str


class InvoicePayment(BaseModel):
    id: str
    network: str
    currency: str
    tx_hash: str
    log_index: int
    block_number: int
    block_hash: str
    from_address: str
    amount: str
    status: str
    confirmations: int
    late: bool
    detected_at: datetime
    confirmed_at: datetime | None


class InvoiceFlags(BaseModel):
    overpaid: bool
    paid_late: bool


class Invoice(BaseModel):
    id: str
    status: str
    amount: str
    currency: str
    amount_paid: str
    amount_due: str
    rate: str | None
    payment_options: list[PaymentOption]
    payments: list[InvoicePayment]
    order_id: str | None
    description: str | None
    metadata: dict[str, Any]
    redirect_url: str | None
    hosted_url: str = Field(description="The payer's page for this invoice (`BASE_URL`/pay/{id})")
    expires_at: datetime
    created_at: datetime
    paid_at: datetime | None
    confirmed_at: datetime | None
    expired_at: datetime | None
    cancelled_at: datetime | None
    flags: InvoiceFlags


class InvoiceList(BaseModel):
    data: list[Invoice]
    has_more: bool


class PublicPaymentOption(BaseModel):
    network: str
    currency: str
    address: str
    amount_due: str
    token_contract: str | None
    decimals: int
    chain_id: int | None


class PublicInvoice(BaseModel):
    """What a payer needs to pay, and nothing more (no merchant data, no metadata)."""

    id: str
    status: str
    amount: str
    currency: str
    amount_due: str
    payment_options: list[PublicPaymentOption]
    expires_at: datetime
    redirect_url: str | None
