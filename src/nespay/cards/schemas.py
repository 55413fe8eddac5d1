"""Request and response models of the card routes. Amounts are decimal strings: USD for card
limits and card transactions (Rain counts cents), whole stablecoin units for balances and
fundings. No model has a field for a card number, a CVC or a PIN."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nespay.kit.money import AMOUNT_SCHEMA, check_amount_text
from nespay.models.cards import APPLICATION_STATUSES, CARD_STATUSES, LIMIT_FREQUENCIES

ApplicationStatus = Literal[APPLICATION_STATUSES]  # type: ignore[valid-type]
CardStatus = Literal[CARD_STATUSES]  # type: ignore[valid-type]
Frequency = Literal[LIMIT_FREQUENCIES]  # type: ignore[valid-type]
Short = Field(min_length=1, max_length=100)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Address(_Strict):
    line1: str = Field(min_length=1, max_length=200)
    line2: str | None = Field(None, max_length=200)
    city: str = Short
    region: str = Short
    postal_code: str = Field(min_length=1, max_length=20)
    country_code: str = Field(pattern=r"^[A-Z]{2}$")


class CardUserCreate(_Strict):
    """A KYC application to the card issuer. Either the person's details, or a Sumsub or
    Persona share token of a verification done already. Identity documents (`national_id`,
    `birth_date`, the address) go to the issuer and are never stored by Nespay."""

    reference: str | None = Field(None, max_length=200, description="Your own id for the user")
    first_name: str | None = Field(None, min_length=1, max_length=100)
    last_name: str | None = Field(None, min_length=1, max_length=100)
    email: str | None = Field(None, pattern=r"^[^@\s]{1,64}@[^@\s]{1,255}$", max_length=320)
    birth_date: date | None = None
    national_id: str | None = Field(None, min_length=1, max_length=50)
    country_of_issue: str | None = Field(None, pattern=r"^[A-Z]{2}$")
    address: Address | None = None
    phone_country_code: str | None = Field(None, pattern=r"^[0-9]{1,4}$")
    phone_number: str | None = Field(None, pattern=r"^[0-9]{4,15}$")
    wallet_address: str | None = Field(None, pattern=r"^0x[0-9a-fA-F]{40}$")
    sumsub_share_token: str | None = Field(None, min_length=1, max_length=500)
    persona_share_token: str | None = Field(None, min_length=1, max_length=500)
    ip_address: str = Field(min_length=2, max_length=45)
    occupation: str = Short
    annual_salary: str = Short
    account_purpose: str = Short
    expected_monthly_volume: str = Short
    is_terms_of_service_accepted: Literal[True]

    @model_validator(mode="after")
    def _identity(self) -> CardUserCreate:
        tokens = [t for t in (self.sumsub_share_token, self.persona_share_token) if t]
        if len(tokens) > 1:
            raise ValueError("give one of sumsub_share_token and persona_share_token")
        if not tokens:
            missing = [
                name
                for name in (
                    "first_name",
                    "last_name",
                    "email",
                    "birth_date",
                    "national_id",
                    "country_of_issue",
                    "address",
                )
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"without a share token, these are required: {missing}")
        return self


class CardUser(BaseModel):
    id: str
    reference: str | None
    first_name: str | None
    last_name: str | None
    email: str | None
    application_status: ApplicationStatus = Field(
        description="The issuer's KYC decision, followed by its `user.updated` webhooks"
    )
    application_reason: str | None
    is_active: bool
    network: str | None = Field(
        description="Where its balance is held (fixed by the first funding)"
    )
    currency: str | None = Field(description="The USD stablecoin of its balance")
    created_at: datetime
    updated_at: datetime


class Limit(_Strict):
    amount: str = Field(
        description='USD, e.g. "500" or "250.50"', max_length=20, json_schema_extra=AMOUNT_SCHEMA
    )
    frequency: Frequency

    @field_validator("amount")
    @classmethod
    def _amount(cls, value: str) -> str:
        return check_amount_text(value)


class Shipping(Address):
    phone_number: str = Field(pattern=r"^[0-9]{4,15}$")
    method: Literal["standard", "express", "international"] | None = None


class CardCreate(_Strict):
    type: Literal["virtual", "physical"]
    limit: Limit
    display_name: str | None = Field(None, min_length=1, max_length=26)
    shipping: Shipping | None = Field(None, description="Required for a physical card")

    @model_validator(mode="after")
    def _shipping(self) -> CardCreate:
        if self.type == "physical" and self.shipping is None:
            raise ValueError("a physical card needs `shipping`")
        return self


class CardUpdate(_Strict):
    status: Literal["active", "locked", "canceled"] | None = Field(
        None, description="locked: declines every authorisation; active: unlock; canceled: final"
    )
    limit: Limit | None = None

    @model_validator(mode="after")
    def _something(self) -> CardUpdate:
        if self.status is None and self.limit is None:
            raise ValueError("give `status`, `limit` or both")
        return self


class CardLimit(BaseModel):
    amount: str
    frequency: Frequency


class Card(BaseModel):
    id: str
    card_user_id: str
    type: Literal["virtual", "physical"]
    status: CardStatus
    last4: str | None
    expiration_month: str | None
    expiration_year: str | None
    limit: CardLimit | None
    created_at: datetime
    updated_at: datetime


class CardList(BaseModel):
    data: list[Card]


class CardTransaction(BaseModel):
    id: str
    card_id: str | None
    decision: Literal["approved", "declined"]
    decline_reason: str | None = Field(
        description="insufficient_funds, card_locked, card_canceled, merchant_suspended, …"
    )
    status: Literal["pending", "declined", "completed", "reversed"]
    amount: str = Field(description="USD asked for")
    settled_amount: str | None = Field(description="USD settled, once completed")
    held: str = Field(description="Held on the card user's balance while pending (stablecoin)")
    network: str | None
    currency: str | None
    merchant_name: str | None
    merchant_category: str | None
    merchant_country: str | None
    created_at: datetime
    updated_at: datetime


class CardTransactionList(BaseModel):
    data: list[CardTransaction]
    has_more: bool


class FundingCreate(_Strict):
    network: str = Field(min_length=1, max_length=32)
    currency: str = Field(
        pattern=r"^[A-Za-z0-9]{2,16}$", description="A USD stablecoin: USDC, USDT"
    )
    amount: str = Field(
        description='Whole units, e.g. "25.5"', max_length=40, json_schema_extra=AMOUNT_SCHEMA
    )

    @field_validator("amount")
    @classmethod
    def _amount(cls, value: str) -> str:
        return check_amount_text(value)

    @field_validator("currency")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


class Funding(BaseModel):
    id: str = Field(description="The ledger transfer")
    card_user_id: str
    direction: Literal["funding", "defunding"]
    network: str
    currency: str
    amount: str
    created_at: datetime


class CardUserBalance(BaseModel):
    network: str
    currency: str
    available: str = Field(description="What its cards may spend now")
    held: str = Field(description="Authorisations approved and not yet completed")
    spent: str = Field(description="Completed card spending, all time")
    available_usd: str = Field(description="`available` in USD (held at par)")


class CardUserBalanceList(BaseModel):
    data: list[CardUserBalance]
