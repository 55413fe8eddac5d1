"""The double-entry ledger (accounts and immutable transfers, TigerBeetle's model kept in
PostgreSQL) and the withdrawals that move a merchant's balance out.

An account is one side of one asset on one network (`currency_id` is already per network) and
holds four counters in base units. A transfer debits one account and credits another of the
same currency (a composite foreign key makes the database refuse anything else); transfers
are never changed or removed (a trigger refuses it, like the audit log's)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from nespay.models.base import Base
from nespay.models.invoices import UINT

TRANSFER_TYPES = ("posted", "pending", "post", "void")

WITHDRAWAL_STATUSES = (
    "pending_approval",
    "approved",
    "broadcast",
    "confirmed",
    "rejected",
    "cancelled",
    "failed",
)


class LedgerAccount(Base):
    """`id` says what the account is: `m:{merchant}:{kind}:{currency}` or
    `p:{kind}:{currency}` (so a posting names its accounts without looking them up)."""

    __tablename__ = "ledger_accounts"
    __table_args__ = (
        # The target of the transfers' (account, currency) foreign keys.
        UniqueConstraint("id", "currency_id"),
        CheckConstraint(
            "debits_pending >= 0 AND debits_posted >= 0 AND credits_pending >= 0"
            " AND credits_posted >= 0",
            name="counters_not_negative",
        ),
        Index("ix_ledger_accounts_merchant_id", "merchant_id"),
    )

    id: Mapped[str] = mapped_column(String(160), primary_key=True)
    merchant_id: Mapped[str | None] = mapped_column(ForeignKey("merchants.id"))
    kind: Mapped[str] = mapped_column(String(24))
    currency_id: Mapped[str] = mapped_column(ForeignKey("currencies.id"))
    # debits_posted + debits_pending may not exceed credits_posted (what a merchant can
    # spend), except by a reversal the chain forced on us: that is a recorded deficit.
    limited: Mapped[bool] = mapped_column(server_default=text("false"))
    debits_pending: Mapped[Decimal] = mapped_column(UINT, server_default=text("0"))
    debits_posted: Mapped[Decimal] = mapped_column(UINT, server_default=text("0"))
    credits_pending: Mapped[Decimal] = mapped_column(UINT, server_default=text("0"))
    credits_posted: Mapped[Decimal] = mapped_column(UINT, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))


class LedgerTransfer(Base):
    """One movement. `type`: `posted` (single phase), `pending` (a hold), `post` / `void`
    (resolve the pending transfer `pending_id`, at most once: a unique index)."""

    __tablename__ = "ledger_transfers"
    __table_args__ = (
        CheckConstraint(
            "type IN ('posted', 'pending', 'post', 'void')",
            name="type",
        ),
        CheckConstraint("debit_account_id <> credit_account_id", name="two_accounts"),
        CheckConstraint(
            "amount > 0 OR type IN ('post', 'void')",
            name="positive_amount",
        ),
        CheckConstraint(
            "(pending_id IS NOT NULL) = (type IN ('post', 'void'))",
            name="resolves_a_pending_transfer",
        ),
        ForeignKeyConstraint(
            ["debit_account_id", "currency_id"],
            ["ledger_accounts.id", "ledger_accounts.currency_id"],
            name="fk_ledger_transfers_debit_account",
        ),
        ForeignKeyConstraint(
            ["credit_account_id", "currency_id"],
            ["ledger_accounts.id", "ledger_accounts.currency_id"],
            name="fk_ledger_transfers_credit_account",
        ),
        Index("uq_ledger_transfers_key", "key", unique=True),
        Index(
            "uq_ledger_transfers_pending_id",
            "pending_id",
            unique=True,
            postgresql_where=text("pending_id IS NOT NULL"),
        ),
        Index(
            "ix_ledger_transfers_merchant_id_id",
            "merchant_id",
            "id",
            postgresql_where=text("merchant_id IS NOT NULL"),
        ),
        Index("ix_ledger_transfers_source_id", "source_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # The idempotency key: the same key again returns this transfer and changes nothing.
    key: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(8))
    code: Mapped[str] = mapped_column(String(32))
    debit_account_id: Mapped[str] = mapped_column(String(160))
    credit_account_id: Mapped[str] = mapped_column(String(160))
    currency_id: Mapped[str] = mapped_column(String(40))
    amount: Mapped[Decimal] = mapped_column(UINT)
    pending_id: Mapped[str | None] = mapped_column(ForeignKey("ledger_transfers.id"))
    # The merchant whose account it touches (for its balance transactions).
    merchant_id: Mapped[str | None] = mapped_column(String(40))
    source_type: Mapped[str | None] = mapped_column(String(24))
    source_id: Mapped[str | None] = mapped_column(String(40))
    # A reversal the chain forced that took the account below zero: a deficit.
    overdrew: Mapped[bool] = mapped_column(server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))


class Withdrawal(Base):
    """A request to send part of a merchant's balance to an external address (`kind`
    `withdrawal`), or back to a payer (`refund`, with its invoice). Its amount is held in the
    ledger from the request until it is confirmed on chain (posted) or ends otherwise
    (voided)."""

    __tablename__ = "withdrawals"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending_approval', 'approved', 'broadcast', 'confirmed', 'rejected',"
            " 'cancelled', 'failed')",
            name="status",
        ),
        CheckConstraint("kind IN ('withdrawal', 'refund')", name="kind"),
        CheckConstraint("amount > 0", name="positive_amount"),
        CheckConstraint("kind = 'withdrawal' OR invoice_id IS NOT NULL", name="refund_invoice"),
        Index("ix_withdrawals_merchant_id_id", "merchant_id", "id"),
        Index("ix_withdrawals_status_id", "status", "id"),
        Index("ix_withdrawals_invoice_id", "invoice_id"),
        Index(
            "uq_withdrawals_merchant_id_idempotency_key",
            "merchant_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    kind: Mapped[str] = mapped_column(String(16), server_default=text("'withdrawal'"))
    invoice_id: Mapped[str | None] = mapped_column(ForeignKey("invoices.id"))
    network_code: Mapped[str] = mapped_column(ForeignKey("networks.code"))
    currency_id: Mapped[str] = mapped_column(ForeignKey("currencies.id"))
    amount: Mapped[Decimal] = mapped_column(UINT)
    address: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))
    requires_approval: Mapped[bool]
    # Who asked (a user's Cognito sub or an API key id): nobody approves their own request.
    requested_by: Mapped[str] = mapped_column(String(100))
    requested_by_email: Mapped[str | None] = mapped_column(String(320))
    decided_by: Mapped[str | None] = mapped_column(String(100))
    decided_at: Mapped[datetime | None]
    decision_reason: Mapped[str | None] = mapped_column(String(500))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    outgoing_tx_id: Mapped[str | None] = mapped_column(String(40))
    tx_hash: Mapped[str | None] = mapped_column(String(80))
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    updated_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    broadcast_at: Mapped[datetime | None]
    confirmed_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]


class ReconciliationRun(Base):
    """One comparison of the ledger with the chain for one network, at one block: a line per
    (currency, account kind) with both amounts and the addresses that explain a difference."""

    __tablename__ = "reconciliation_runs"
    __table_args__ = (
        CheckConstraint("status IN ('ok', 'difference', 'error')", name="status"),
        Index("ix_reconciliation_runs_network_code_id", "network_code", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    network_code: Mapped[str] = mapped_column(ForeignKey("networks.code"))
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    lines: Mapped[list[dict[str, object]]] = mapped_column(
        JSONB, server_default=text("'[]'::jsonb")
    )
    error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
