"""Card issuing (Rain): the merchant's card users (a KYC application at Rain), their cards, and
the authorisations Rain asked us to decide, with what became of each.

No card number, CVC or PIN is ever a column here: a card is known by Rain's id and its last
four digits. A card user holds one USD stablecoin (`currency_id`, fixed by its first funding)
in the ledger; authorisations are USD cents, held at par (`cent_units` base units a cent)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from nespay.models.base import Base
from nespay.models.invoices import UINT

APPLICATION_STATUSES = (
    "approved",
    "pending",
    "needsInformation",
    "needsVerification",
    "manualReview",
    "denied",
    "locked",
    "canceled",
)
CARD_STATUSES = ("notActivated", "active", "locked", "canceled")
LIMIT_FREQUENCIES = (
    "per24HourPeriod",
    "per7DayPeriod",
    "per30DayPeriod",
    "perYearPeriod",
    "allTime",
    "perAuthorization",
)
AUTHORISATION_STATUSES = ("pending", "declined", "completed", "reversed")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class CardUser(Base):
    __tablename__ = "card_users"
    __table_args__ = (
        CheckConstraint(_in("application_status", APPLICATION_STATUSES), name="application_status"),
        Index("uq_card_users_rain_user_id", "rain_user_id", unique=True),
        Index("ix_card_users_merchant_id_id", "merchant_id", "id"),
        Index(
            "uq_card_users_merchant_id_idempotency_key",
            "merchant_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    rain_user_id: Mapped[str] = mapped_column(String(100))
    # The merchant's own reference for its user (optional, never interpreted).
    reference: Mapped[str | None] = mapped_column(String(200))
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(320))
    application_status: Mapped[str] = mapped_column(String(24))
    application_reason: Mapped[str | None] = mapped_column(String(500))
    is_active: Mapped[bool] = mapped_column(server_default=text("true"))
    # The one USD stablecoin the card user is funded in (fixed by the first funding), and how
    # many of its base units make a US cent (10^(decimals-2)).
    currency_id: Mapped[str | None] = mapped_column(ForeignKey("currencies.id"))
    cent_units: Mapped[Decimal | None] = mapped_column(UINT)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    updated_at: Mapped[datetime] = mapped_column(server_default=text("now()"))


class Card(Base):
    __tablename__ = "cards"
    __table_args__ = (
        CheckConstraint(_in("status", CARD_STATUSES), name="status"),
        CheckConstraint("type IN ('virtual', 'physical')", name="type"),
        CheckConstraint(
            f"limit_frequency IS NULL OR {_in('limit_frequency', LIMIT_FREQUENCIES)}",
            name="limit_frequency",
        ),
        Index("uq_cards_rain_card_id", "rain_card_id", unique=True),
        Index("ix_cards_card_user_id", "card_user_id"),
        Index("ix_cards_merchant_id_id", "merchant_id", "id"),
        Index(
            "uq_cards_merchant_id_idempotency_key",
            "merchant_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    card_user_id: Mapped[str] = mapped_column(ForeignKey("card_users.id"))
    rain_card_id: Mapped[str] = mapped_column(String(100))
    type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    last4: Mapped[str | None] = mapped_column(String(4))
    expiration_month: Mapped[str | None] = mapped_column(String(2))
    expiration_year: Mapped[str | None] = mapped_column(String(4))
    limit_cents: Mapped[int | None] = mapped_column(BigInteger)
    limit_frequency: Mapped[str | None] = mapped_column(String(24))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    updated_at: Mapped[datetime] = mapped_column(server_default=text("now()"))


class CardAuthorisation(Base):
    """One card transaction: the authorisation Rain asked us to decide (`request_id`, the
    `transaction.requested` event id) and what Rain said of it later (`rain_transaction_id`).
    `held` base units are held in the ledger while it is pending (transfer `{id}/hold`)."""

    __tablename__ = "card_authorisations"
    __table_args__ = (
        CheckConstraint(_in("status", AUTHORISATION_STATUSES), name="status"),
        CheckConstraint("decision IN ('approved', 'declined')", name="decision"),
        Index(
            "uq_card_authorisations_request_id",
            "request_id",
            unique=True,
            postgresql_where=text("request_id IS NOT NULL"),
        ),
        Index(
            "uq_card_authorisations_rain_transaction_id",
            "rain_transaction_id",
            unique=True,
            postgresql_where=text("rain_transaction_id IS NOT NULL"),
        ),
        Index("ix_card_authorisations_card_id_id", "card_id", "id"),
        Index("ix_card_authorisations_rain_card_id", "rain_card_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    request_id: Mapped[str | None] = mapped_column(String(200))
    rain_transaction_id: Mapped[str | None] = mapped_column(String(100))
    rain_card_id: Mapped[str | None] = mapped_column(String(100))
    merchant_id: Mapped[str | None] = mapped_column(ForeignKey("merchants.id"))
    card_user_id: Mapped[str | None] = mapped_column(ForeignKey("card_users.id"))
    card_id: Mapped[str | None] = mapped_column(ForeignKey("cards.id"))
    currency_id: Mapped[str | None] = mapped_column(ForeignKey("currencies.id"))
    amount_cents: Mapped[int] = mapped_column(BigInteger)  # what was asked, USD cents
    held: Mapped[Decimal] = mapped_column(UINT, server_default=text("0"))  # base units
    settled_cents: Mapped[int | None] = mapped_column(BigInteger)
    decision: Mapped[str] = mapped_column(String(16))
    decline_reason: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(16))
    merchant_name: Mapped[str | None] = mapped_column(String(200))
    merchant_category: Mapped[str | None] = mapped_column(String(100))
    merchant_country: Mapped[str | None] = mapped_column(String(8))
    local_amount: Mapped[int | None] = mapped_column(BigInteger)
    local_currency: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    updated_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
