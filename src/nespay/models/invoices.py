"""Invoices, their payment options (network + currency + deposit address + amount due in base
units), deposit addresses, payments seen on chain, and idempotency records."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from nespay.models.base import Base

UINT = Numeric(78, 0)  # any uint256, in a token's base unit
PRICE = Numeric(38, 18)  # exact decimal prices and rates

INVOICE_STATUSES = (
    "pending",
    "partially_paid",
    "paid",
    "confirmed",
    "expired",
    "cancelled",
    "invalid",
)


class Invoice(Base):
    __tablename__ = "invoices"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending','partially_paid','paid','confirmed','expired','cancelled',"
            "'invalid')",
            name="status",
        ),
        CheckConstraint("price_amount > 0", name="positive_amount"),
        Index("ix_invoices_merchant_id_id", "merchant_id", "id"),
        Index("ix_invoices_merchant_id_order_id", "merchant_id", "order_id"),
        # The expiry job reads only the invoices that are due: cost ∝ due, not ∝ open.
        Index(
            "ix_invoices_open_expires_at",
            "expires_at",
            postgresql_where=text("status IN ('pending', 'partially_paid')"),
        ),
        Index(
            "ix_invoices_order_id_trgm",
            "order_id",
            postgresql_using="gin",
            postgresql_ops={"order_id": "gin_trgm_ops"},
        ),
        # Backoffice search (fragments of ids) and lists by status (nespay.backoffice).
        Index(
            "ix_invoices_id_trgm",
            "id",
            postgresql_using="gin",
            postgresql_ops={"id": "gin_trgm_ops"},
        ),
        Index("ix_invoices_status_id", "status", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id", ondelete="RESTRICT"))
    status: Mapped[str] = mapped_column(String(16), server_default=text("'pending'"))
    # What the merchant priced it in: a crypto code (USDT) or fiat (USD, IDR), exact decimal.
    price_amount: Mapped[Decimal] = mapped_column(PRICE)
    price_currency: Mapped[str] = mapped_column(String(16))
    order_id: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(1000))
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, server_default=text("'{}'::jsonb")
    )
    redirect_url: Mapped[str | None] = mapped_column(Text)
    underpayment_tolerance_bps: Mapped[int] = mapped_column(server_default=text("0"))
    # Share of the amount due received so far, in millionths (1_000_000 = paid in full), per
    # counted payment on any option; kept with the state so reads need no aggregation.
    paid_ppm: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    overpaid: Mapped[bool] = mapped_column(server_default=text("false"))
    paid_late: Mapped[bool] = mapped_column(server_default=text("false"))
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    updated_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    paid_at: Mapped[datetime | None]
    confirmed_at: Mapped[datetime | None]
    expired_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    invalid_at: Mapped[datetime | None]
    status_reason: Mapped[str | None] = mapped_column(String(500))
    # Set when an admin marked the invoice paid or invalid: its status no longer follows
    # its payments.
    marked_at: Mapped[datetime | None]


class InvoiceOption(Base):
    """One way to pay an invoice: a currency on a network, the amount due in base units at the
    rate locked at creation, and the invoice's deposit address for that chain family."""

    __tablename__ = "invoice_options"
    __table_args__ = (
        Index(
            "uq_invoice_options_invoice_id_currency_id", "invoice_id", "currency_id", unique=True
        ),
        Index("ix_invoice_options_address", "chain_family", "address"),
        CheckConstraint("amount > 0", name="positive_amount"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"))
    network_code: Mapped[str] = mapped_column(ForeignKey("networks.code"))
    currency_id: Mapped[str] = mapped_column(ForeignKey("currencies.id"))
    chain_family: Mapped[str] = mapped_column(String(8))
    address: Mapped[str] = mapped_column(String(64))
    amount: Mapped[Decimal] = mapped_column(UINT)
    # price currency → this currency, locked at creation (1 when they are the same asset).
    rate: Mapped[Decimal] = mapped_column(PRICE)
    amount_paid: Mapped[Decimal] = mapped_column(UINT, server_default=text("0"))


class DepositAddress(Base):
    """An address handed out once, to one invoice, per chain family; never reused."""

    __tablename__ = "deposit_addresses"
    __table_args__ = (
        Index("uq_deposit_addresses_chain_family_address", "chain_family", "address", unique=True),
        Index(
            "uq_deposit_addresses_provider_derivation_index",
            "chain_family",
            "provider",
            "derivation_index",
            unique=True,
            postgresql_where=text("derivation_index IS NOT NULL"),
        ),
        Index(
            "ix_deposit_addresses_address_trgm",
            "address",
            postgresql_using="gin",
            postgresql_ops={"address": "gin_trgm_ops"},
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    chain_family: Mapped[str] = mapped_column(String(8))
    address: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(16))  # hd | privy
    derivation_index: Mapped[int | None] = mapped_column(BigInteger)
    provider_wallet_id: Mapped[str | None] = mapped_column(String(100))
    invoice_id: Mapped[str] = mapped_column(
        ForeignKey("invoices.id", ondelete="CASCADE"), index=True
    )
    merchant_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        Index(
            "uq_payments_network_code_tx_hash_log_index",
            "network_code",
            "tx_hash",
            "log_index",
            unique=True,
        ),
        Index("ix_payments_invoice_id", "invoice_id"),
        # Settling sums each touched option's payments: an index lookup, not a table scan.
        Index("ix_payments_option_id", "option_id"),
        Index(
            "ix_payments_unconfirmed",
            "network_code",
            "block_number",
            postgresql_where=text("status = 'pending'"),
        ),
        Index(
            "ix_payments_tx_hash_trgm",
            "tx_hash",
            postgresql_using="gin",
            postgresql_ops={"tx_hash": "gin_trgm_ops"},
        ),
        # Backoffice search: fragments of ids and of either address.
        *(
            Index(
                f"ix_payments_{column}_trgm",
                column,
                postgresql_using="gin",
                postgresql_ops={column: "gin_trgm_ops"},
            )
            for column in ("id", "from_address", "to_address")
        ),
        # Backoffice stats: confirmed volume per currency and day from the index alone.
        Index(
            "ix_payments_confirmed_volume",
            "confirmed_at",
            "currency_id",
            postgresql_include=["amount"],
            postgresql_where=text("status = 'confirmed'"),
        ),
        CheckConstraint("status IN ('pending', 'confirmed', 'orphaned')", name="status"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id", ondelete="RESTRICT"))
    option_id: Mapped[str] = mapped_column(ForeignKey("invoice_options.id"))
    merchant_id: Mapped[str] = mapped_column(String(40))
    network_code: Mapped[str] = mapped_column(String(32))
    currency_id: Mapped[str] = mapped_column(String(40))
    tx_hash: Mapped[str] = mapped_column(String(80))
    log_index: Mapped[int] = mapped_column(Integer)  # -1 for a native-coin transfer
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(String(80))
    from_address: Mapped[str] = mapped_column(String(64))
    to_address: Mapped[str] = mapped_column(String(64))
    amount: Mapped[Decimal] = mapped_column(UINT)
    status: Mapped[str] = mapped_column(String(16), server_default=text("'pending'"))
    confirmations: Mapped[int] = mapped_column(server_default=text("0"))
    late: Mapped[bool] = mapped_column(server_default=text("false"))
    # Times the payment was counted again after a reorg orphaned it: each counting has its own
    # ledger transfers (their keys carry it), so a re-mined payment is credited afresh.
    ledger_generation: Mapped[int] = mapped_column(server_default=text("0"))
    detected_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    confirmed_at: Mapped[datetime | None]
    orphaned_at: Mapped[datetime | None]


class IdempotencyKey(Base):
    """`Idempotency-Key` of invoice creation: same key and body → same invoice."""

    __tablename__ = "idempotency_keys"

    merchant_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    # Deferred: the key is claimed first (so a concurrent duplicate waits on it), the invoice
    # it names is inserted later in the same transaction.
    invoice_id: Mapped[str] = mapped_column(
        ForeignKey("invoices.id", ondelete="CASCADE", deferrable=True, initially="DEFERRED")
    )
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"), index=True)
