"""The ledger: accounts and append-only transfers (holds that post or void at most once),
withdrawals and refunds, the merchants' fee, and a payment's ledger generation (one more each
time a reorged payment is counted again)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 14:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ledger_accounts",
        sa.Column("id", sa.String(length=160), nullable=False),
        sa.Column("merchant_id", sa.String(length=40), nullable=True),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("currency_id", sa.String(length=40), nullable=False),
        sa.Column("limited", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "debits_pending",
            sa.Numeric(precision=78, scale=0),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "debits_posted",
            sa.Numeric(precision=78, scale=0),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "credits_pending",
            sa.Numeric(precision=78, scale=0),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "credits_posted",
            sa.Numeric(precision=78, scale=0),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "debits_pending >= 0 AND debits_posted >= 0 AND credits_pending >= 0 AND credits_posted >= 0",
            name=op.f("ck_ledger_accounts_counters_not_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["currency_id"],
            ["currencies.id"],
            name=op.f("fk_ledger_accounts_currency_id_currencies"),
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_ledger_accounts_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_accounts")),
        sa.UniqueConstraint("id", "currency_id", name=op.f("uq_ledger_accounts_id_currency_id")),
    )
    op.create_index(
        "ix_ledger_accounts_merchant_id", "ledger_accounts", ["merchant_id"], unique=False
    )
    op.create_table(
        "withdrawals",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column(
            "kind", sa.String(length=16), server_default=sa.text("'withdrawal'"), nullable=False
        ),
        sa.Column("invoice_id", sa.String(length=40), nullable=True),
        sa.Column("network_code", sa.String(length=32), nullable=False),
        sa.Column("currency_id", sa.String(length=40), nullable=False),
        sa.Column("amount", sa.Numeric(precision=78, scale=0), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("requires_approval", sa.Boolean(), nullable=False),
        sa.Column("requested_by", sa.String(length=100), nullable=False),
        sa.Column("requested_by_email", sa.String(length=320), nullable=True),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision_reason", sa.String(length=500), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("outgoing_tx_id", sa.String(length=40), nullable=True),
        sa.Column("tx_hash", sa.String(length=80), nullable=True),
        sa.Column("failure_reason", sa.String(length=500), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("broadcast_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "kind = 'withdrawal' OR invoice_id IS NOT NULL",
            name=op.f("ck_withdrawals_refund_invoice"),
        ),
        sa.CheckConstraint("kind IN ('withdrawal', 'refund')", name=op.f("ck_withdrawals_kind")),
        sa.CheckConstraint(
            "status IN ('pending_approval', 'approved', 'broadcast', 'confirmed', 'rejected', 'cancelled', 'failed')",
            name=op.f("ck_withdrawals_status"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_withdrawals_positive_amount")),
        sa.ForeignKeyConstraint(
            ["currency_id"], ["currencies.id"], name=op.f("fk_withdrawals_currency_id_currencies")
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_withdrawals_invoice_id_invoices")
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_withdrawals_merchant_id_merchants")
        ),
        sa.ForeignKeyConstraint(
            ["network_code"], ["networks.code"], name=op.f("fk_withdrawals_network_code_networks")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_withdrawals")),
    )
    op.create_index("ix_withdrawals_invoice_id", "withdrawals", ["invoice_id"], unique=False)
    op.create_index(
        "ix_withdrawals_merchant_id_id", "withdrawals", ["merchant_id", "id"], unique=False
    )
    op.create_index("ix_withdrawals_status_id", "withdrawals", ["status", "id"], unique=False)
    op.create_index(
        "uq_withdrawals_merchant_id_idempotency_key",
        "withdrawals",
        ["merchant_id", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.create_table(
        "ledger_transfers",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=8), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("debit_account_id", sa.String(length=160), nullable=False),
        sa.Column("credit_account_id", sa.String(length=160), nullable=False),
        sa.Column("currency_id", sa.String(length=40), nullable=False),
        sa.Column("amount", sa.Numeric(precision=78, scale=0), nullable=False),
        sa.Column("pending_id", sa.String(length=40), nullable=True),
        sa.Column("merchant_id", sa.String(length=40), nullable=True),
        sa.Column("source_type", sa.String(length=24), nullable=True),
        sa.Column("source_id", sa.String(length=40), nullable=True),
        sa.Column("overdrew", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(pending_id IS NOT NULL) = (type IN ('post', 'void'))",
            name=op.f("ck_ledger_transfers_resolves_a_pending_transfer"),
        ),
        sa.CheckConstraint(
            "amount > 0 OR type IN ('post', 'void')",
            name=op.f("ck_ledger_transfers_positive_amount"),
        ),
        sa.CheckConstraint(
            "type IN ('posted', 'pending', 'post', 'void')", name=op.f("ck_ledger_transfers_type")
        ),
        sa.CheckConstraint(
            "debit_account_id <> credit_account_id", name=op.f("ck_ledger_transfers_two_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["credit_account_id", "currency_id"],
            ["ledger_accounts.id", "ledger_accounts.currency_id"],
            name="fk_ledger_transfers_credit_account",
        ),
        sa.ForeignKeyConstraint(
            ["debit_account_id", "currency_id"],
            ["ledger_accounts.id", "ledger_accounts.currency_id"],
            name="fk_ledger_transfers_debit_account",
        ),
        sa.ForeignKeyConstraint(
            ["pending_id"],
            ["ledger_transfers.id"],
            name=op.f("fk_ledger_transfers_pending_id_ledger_transfers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_transfers")),
    )
    op.create_index(
        "ix_ledger_transfers_merchant_id_id",
        "ledger_transfers",
        ["merchant_id", "id"],
        unique=False,
        postgresql_where=sa.text("merchant_id IS NOT NULL"),
    )
    op.create_index(
        "ix_ledger_transfers_source_id", "ledger_transfers", ["source_id"], unique=False
    )
    op.create_index("uq_ledger_transfers_key", "ledger_transfers", ["key"], unique=True)
    op.create_index(
        "uq_ledger_transfers_pending_id",
        "ledger_transfers",
        ["pending_id"],
        unique=True,
        postgresql_where=sa.text("pending_id IS NOT NULL"),
    )
    op.add_column("merchants", sa.Column("fee_bps", sa.Integer(), nullable=True))
    op.create_check_constraint(
        op.f("ck_merchants_fee_range"), "merchants", "fee_bps BETWEEN 0 AND 10000"
    )
    op.add_column(
        "payments",
        sa.Column("ledger_generation", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    # Transfers are immutable: the database itself refuses to change or remove them.
    op.execute(
        """
        CREATE FUNCTION ledger_transfers_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'ledger_transfers is append-only: % is not allowed', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER ledger_transfers_no_update_delete BEFORE UPDATE OR DELETE"
        " ON ledger_transfers FOR EACH ROW EXECUTE FUNCTION ledger_transfers_append_only()"
    )
    op.execute(
        "CREATE TRIGGER ledger_transfers_no_truncate BEFORE TRUNCATE ON ledger_transfers"
        " FOR EACH STATEMENT EXECUTE FUNCTION ledger_transfers_append_only()"
    )


def downgrade() -> None:
    op.drop_column("payments", "ledger_generation")
    op.drop_constraint(op.f("ck_merchants_fee_range"), "merchants", type_="check")
    op.drop_column("merchants", "fee_bps")
    op.drop_index(
        "uq_ledger_transfers_pending_id",
        table_name="ledger_transfers",
        postgresql_where=sa.text("pending_id IS NOT NULL"),
    )
    op.drop_index("uq_ledger_transfers_key", table_name="ledger_transfers")
    op.drop_index("ix_ledger_transfers_source_id", table_name="ledger_transfers")
    op.drop_index(
        "ix_ledger_transfers_merchant_id_id",
        table_name="ledger_transfers",
        postgresql_where=sa.text("merchant_id IS NOT NULL"),
    )
    op.drop_table("ledger_transfers")
    op.execute("DROP FUNCTION ledger_transfers_append_only()")
    op.drop_index(
        "uq_withdrawals_merchant_id_idempotency_key",
        table_name="withdrawals",
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.drop_index("ix_withdrawals_status_id", table_name="withdrawals")
    op.drop_index("ix_withdrawals_merchant_id_id", table_name="withdrawals")
    op.drop_index("ix_withdrawals_invoice_id", table_name="withdrawals")
    op.drop_table("withdrawals")
    op.drop_index("ix_ledger_accounts_merchant_id", table_name="ledger_accounts")
    op.drop_table("ledger_accounts")
