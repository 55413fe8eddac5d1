"""Invoices, payment options, deposit addresses, payments, idempotency keys, the event outbox,
chain cursors and blocks, rates

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 05:32:00.608798
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE SEQUENCE events_seq")
    # HD derivation indexes, one sequence per chain family: allocation is atomic without locks.
    op.execute("CREATE SEQUENCE deposit_index_evm MINVALUE 0 START 0")
    op.execute("CREATE SEQUENCE deposit_index_tron MINVALUE 0 START 0")
    op.create_table(
        "events",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column(
            "seq", sa.BigInteger(), server_default=sa.text("nextval('events_seq')"), nullable=False
        ),
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("subject_id", sa.String(length=40), nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index("ix_events_merchant_id_id", "events", ["merchant_id", "id"], unique=False)
    op.create_index("ix_events_subject_id_seq", "events", ["subject_id", "seq"], unique=False)
    op.create_index(
        "ix_events_unpublished",
        "events",
        ["seq"],
        unique=False,
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_table(
        "rates",
        sa.Column("base", sa.String(length=16), nullable=False),
        sa.Column("quote", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("rate", sa.Numeric(precision=38, scale=18), nullable=False),
        sa.Column(
            "fetched_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("updated_by", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("base", "quote", "source", name=op.f("pk_rates")),
    )
    op.create_table(
        "chain_blocks",
        sa.Column("network_code", sa.String(length=32), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=80), nullable=False),
        sa.Column("parent_hash", sa.String(length=80), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["network_code"],
            ["networks.code"],
            name=op.f("fk_chain_blocks_network_code_networks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("network_code", "number", name=op.f("pk_chain_blocks")),
    )
    op.create_table(
        "chain_cursors",
        sa.Column("network_code", sa.String(length=32), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", sa.String(length=80), nullable=False),
        sa.Column("head_number", sa.BigInteger(), nullable=True),
        sa.Column("lease_owner", sa.String(length=100), nullable=True),
        sa.Column("lease_token", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["network_code"],
            ["networks.code"],
            name=op.f("fk_chain_cursors_network_code_networks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("network_code", name=op.f("pk_chain_cursors")),
    )
    op.create_table(
        "invoices",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column(
            "status", sa.String(length=16), server_default=sa.text("'pending'"), nullable=False
        ),
        sa.Column("price_amount", sa.Numeric(precision=38, scale=18), nullable=False),
        sa.Column("price_currency", sa.String(length=16), nullable=False),
        sa.Column("order_id", sa.String(length=200), nullable=True),
        sa.Column("description", sa.String(length=1000), nullable=True),
        sa.Column(
            "metadata",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("redirect_url", sa.Text(), nullable=True),
        sa.Column(
            "underpayment_tolerance_bps", sa.Integer(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column("paid_ppm", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("overpaid", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("paid_late", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
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
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("invalid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status_reason", sa.String(length=500), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending','partially_paid','paid','confirmed','expired','cancelled','invalid')",
            name=op.f("ck_invoices_status"),
        ),
        sa.CheckConstraint("price_amount > 0", name=op.f("ck_invoices_positive_amount")),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_invoices_merchant_id_merchants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoices")),
    )
    op.create_index("ix_invoices_merchant_id_id", "invoices", ["merchant_id", "id"], unique=False)
    op.create_index(
        "ix_invoices_merchant_id_order_id", "invoices", ["merchant_id", "order_id"], unique=False
    )
    op.create_index(
        "ix_invoices_open_expires_at",
        "invoices",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('pending', 'partially_paid')"),
    )
    op.create_index(
        "ix_invoices_order_id_trgm",
        "invoices",
        ["order_id"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"order_id": "gin_trgm_ops"},
    )
    op.create_table(
        "deposit_addresses",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("chain_family", sa.String(length=8), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("derivation_index", sa.BigInteger(), nullable=True),
        sa.Column("provider_wallet_id", sa.String(length=100), nullable=True),
        sa.Column("invoice_id", sa.String(length=40), nullable=False),
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_deposit_addresses_invoice_id_invoices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deposit_addresses")),
    )
    op.create_index(
        "ix_deposit_addresses_address_trgm",
        "deposit_addresses",
        ["address"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"address": "gin_trgm_ops"},
    )
    op.create_index(
        op.f("ix_deposit_addresses_invoice_id"), "deposit_addresses", ["invoice_id"], unique=False
    )
    op.create_index(
        "uq_deposit_addresses_chain_family_address",
        "deposit_addresses",
        ["chain_family", "address"],
        unique=True,
    )
    op.create_index(
        "uq_deposit_addresses_provider_derivation_index",
        "deposit_addresses",
        ["chain_family", "provider", "derivation_index"],
        unique=True,
        postgresql_where=sa.text("derivation_index IS NOT NULL"),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("invoice_id", sa.String(length=40), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_idempotency_keys_invoice_id_invoices"),
            ondelete="CASCADE",
            initially="DEFERRED",
            deferrable=True,
        ),
        sa.PrimaryKeyConstraint("merchant_id", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(
        op.f("ix_idempotency_keys_created_at"), "idempotency_keys", ["created_at"], unique=False
    )
    op.create_table(
        "invoice_options",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("invoice_id", sa.String(length=40), nullable=False),
        sa.Column("network_code", sa.String(length=32), nullable=False),
        sa.Column("currency_id", sa.String(length=40), nullable=False),
        sa.Column("chain_family", sa.String(length=8), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.Numeric(precision=78, scale=0), nullable=False),
        sa.Column("rate", sa.Numeric(precision=38, scale=18), nullable=False),
        sa.Column(
            "amount_paid",
            sa.Numeric(precision=78, scale=0),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_invoice_options_positive_amount")),
        sa.ForeignKeyConstraint(
            ["currency_id"],
            ["currencies.id"],
            name=op.f("fk_invoice_options_currency_id_currencies"),
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_invoice_options_invoice_id_invoices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["network_code"],
            ["networks.code"],
            name=op.f("fk_invoice_options_network_code_networks"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_options")),
    )
    op.create_index(
        "ix_invoice_options_address", "invoice_options", ["chain_family", "address"], unique=False
    )
    op.create_index(
        "uq_invoice_options_invoice_id_currency_id",
        "invoice_options",
        ["invoice_id", "currency_id"],
        unique=True,
    )
    op.create_table(
        "payments",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("invoice_id", sa.String(length=40), nullable=False),
        sa.Column("option_id", sa.String(length=40), nullable=False),
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("network_code", sa.String(length=32), nullable=False),
        sa.Column("currency_id", sa.String(length=40), nullable=False),
        sa.Column("tx_hash", sa.String(length=80), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", sa.String(length=80), nullable=False),
        sa.Column("from_address", sa.String(length=64), nullable=False),
        sa.Column("to_address", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.Numeric(precision=78, scale=0), nullable=False),
        sa.Column(
            "status", sa.String(length=16), server_default=sa.text("'pending'"), nullable=False
        ),
        sa.Column("confirmations", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("late", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "detected_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("orphaned_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'confirmed', 'orphaned')", name=op.f("ck_payments_status")
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_payments_invoice_id_invoices"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["option_id"],
            ["invoice_options.id"],
            name=op.f("fk_payments_option_id_invoice_options"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
    )
    op.create_index("ix_payments_invoice_id", "payments", ["invoice_id"], unique=False)
    op.create_index(
        "ix_payments_tx_hash_trgm",
        "payments",
        ["tx_hash"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"tx_hash": "gin_trgm_ops"},
    )
    op.create_index(
        "ix_payments_unconfirmed",
        "payments",
        ["network_code", "block_number"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "uq_payments_network_code_tx_hash_log_index",
        "payments",
        ["network_code", "tx_hash", "log_index"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_payments_network_code_tx_hash_log_index", table_name="payments")
    op.drop_index(
        "ix_payments_unconfirmed",
        table_name="payments",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_index(
        "ix_payments_tx_hash_trgm",
        table_name="payments",
        postgresql_using="gin",
        postgresql_ops={"tx_hash": "gin_trgm_ops"},
    )
    op.drop_index("ix_payments_invoice_id", table_name="payments")
    op.drop_table("payments")
    op.drop_index("uq_invoice_options_invoice_id_currency_id", table_name="invoice_options")
    op.drop_index("ix_invoice_options_address", table_name="invoice_options")
    op.drop_table("invoice_options")
    op.drop_index(op.f("ix_idempotency_keys_created_at"), table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_index(
        "uq_deposit_addresses_provider_derivation_index",
        table_name="deposit_addresses",
        postgresql_where=sa.text("derivation_index IS NOT NULL"),
    )
    op.drop_index("uq_deposit_addresses_chain_family_address", table_name="deposit_addresses")
    op.drop_index(op.f("ix_deposit_addresses_invoice_id"), table_name="deposit_addresses")
    op.drop_index(
        "ix_deposit_addresses_address_trgm",
        table_name="deposit_addresses",
        postgresql_using="gin",
        postgresql_ops={"address": "gin_trgm_ops"},
    )
    op.drop_table("deposit_addresses")
    op.drop_index(
        "ix_invoices_order_id_trgm",
        table_name="invoices",
        postgresql_using="gin",
        postgresql_ops={"order_id": "gin_trgm_ops"},
    )
    op.drop_index(
        "ix_invoices_open_expires_at",
        table_name="invoices",
        postgresql_where=sa.text("status IN ('pending', 'partially_paid')"),
    )
    op.drop_index("ix_invoices_merchant_id_order_id", table_name="invoices")
    op.drop_index("ix_invoices_merchant_id_id", table_name="invoices")
    op.drop_table("invoices")
    op.drop_table("chain_cursors")
    op.drop_table("chain_blocks")
    op.drop_table("rates")
    op.drop_index(
        "ix_events_unpublished",
        table_name="events",
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.drop_index("ix_events_subject_id_seq", table_name="events")
    op.drop_index("ix_events_merchant_id_id", table_name="events")
    op.drop_table("events")
    op.execute("DROP SEQUENCE events_seq")
    op.execute("DROP SEQUENCE deposit_index_evm")
    op.execute("DROP SEQUENCE deposit_index_tron")
