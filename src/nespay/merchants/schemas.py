"""Request and response models of the merchant routes."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nespay.kit.validation import Email


class MerchantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    email: Email
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2, e.g. ID")


class MerchantSettingsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    email: Email | None = None
    underpayment_tolerance_bps: int | None = Field(None, ge=0, le=10_000)
    default_expiry_s: int | None = Field(None, ge=60, le=7 * 24 * 3600)
    withdrawal_approval_threshold_usd: Decimal | None = Field(
        None, ge=0, max_digits=20, decimal_places=2
    )


class Merchant(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    email: str
    country: str
    status: str
    underpayment_tolerance_bps: int
    default_expiry_s: int
    withdrawal_approval_threshold_usd: str = Field(description="USD, decimal string")
    created_at: datetime

    @field_validator("withdrawal_approval_threshold_usd", mode="before")
    @classmethod
    def _decimal_string(cls, value: object) -> object:
        return str(value) if isinstance(value, Decimal) else value


class MerchantUserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cognito_sub: str = Field(min_length=1, max_length=64)
    email: Email | None = None
    role: str = Field(pattern=r"^(admin|developer|viewer)$")


class MerchantUser(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    cognito_sub: str
    email: str | None
    role: str
    created_at: datetime


class MerchantUserList(BaseModel):
    data: list[MerchantUser]
    has_more: bool
