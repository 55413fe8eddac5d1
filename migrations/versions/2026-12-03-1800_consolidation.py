"""Consolidation: a treasury address per network, the encrypted account xprv that signs
sweeps, sweeps, and outgoing transactions sent by a deposit address

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
WEI = sa.Numeric(78, 0)
NOW = sa.text("now()")


def upgrade() -> None:
    op.add_column("networks", sa.Column("treasury_address", sa.String(64)))
    op.create_table(
        "hd_account_keys",
        sa.Column("chain_family", sa.String(8), nullable=False),
        sa.Column("xpub", sa.String(200), nullable=False),
        sa.Column("xprv_encrypted", sa.Text(), nullable=False),
        sa.Column("created_at", TS, server_default=NOW, nullable=False),
        sa.CheckConstraint(
            "chain_family IN ('evm', 'tron')", name=op.f("ck_hd_account_keys_chain_family")
        ),
        sa.PrimaryKeyConstraint("chain_family", name=op.f("pk_hd_account_keys")),
    )
    op.alter_column("outgoing_transactions", "hot_wallet_id", nullable=True)
    op.add_column(
        "outgoing_transactions",
        sa.Column(
            "deposit_address_id",
            sa.String(40),
            sa.ForeignKey(
                "deposit_addresses.id",
                name=op.f("fk_outgoing_transactions_deposit_address_id_deposit_addresses"),
                ondelete="RESTRICT",
            ),
        ),
    )
    op.create_check_constraint(
        op.f("ck_outgoing_transactions_one_sender"),
        "outgoing_transactions",
        "(hot_wallet_id IS NULL) <> (deposit_address_id IS NULL)",
    )
    op.create_index(
        "ix_outgoing_transactions_deposit_address_id",
        "outgoing_transactions",
        ["deposit_address_id"],
        postgresql_where=sa.text("deposit_address_id IS NOT NULL"),
    )
    op.create_table(
        "sweeps",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("network_code", sa.String(32), nullable=False),
        sa.Column("currency_id", sa.String(40), nullable=False),
        sa.Column("deposit_address_id", sa.String(40), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("treasury_address", sa.String(64), nullable=False),
        sa.Column("amount", WEI, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("gas_limit", sa.BigInteger()),
        sa.Column("gas_cost_wei", WEI),
        sa.Column("topup_wei", WEI),
        sa.Column("topup_tx_id", sa.String(40)),
        sa.Column("sweep_tx_id", sa.String(40)),
        sa.Column("reason", sa.String(500)),
        sa.Column("created_at", TS, server_default=NOW, nullable=False),
        sa.Column("updated_at", TS, server_default=NOW, nullable=False),
        sa.Column("finished_at", TS),
        sa.CheckConstraint(
            "status IN ('dust', 'funding', 'sending', 'confirmed', 'failed')",
            name=op.f("ck_sweeps_status"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_sweeps_positive_amount")),
        sa.ForeignKeyConstraint(
            ["network_code"],
            ["networks.code"],
            name=op.f("fk_sweeps_network_code_networks"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["currency_id"],
            ["currencies.id"],
            name=op.f("fk_sweeps_currency_id_currencies"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["deposit_address_id"],
            ["deposit_addresses.id"],
            name=op.f("fk_sweeps_deposit_address_id_deposit_addresses"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sweeps")),
    )
    op.create_index(
        "uq_sweeps_deposit_address_id_currency_id",
        "sweeps",
        ["deposit_address_id", "currency_id"],
        unique=True,
        postgresql_where=sa.text("status IN ('dust', 'funding', 'sending')"),
    )
    op.create_index("ix_sweeps_network_code_status", "sweeps", ["network_code", "status"])
    op.create_index("ix_sweeps_status_id", "sweeps", ["status", "id"])


def downgrade() -> None:
    op.drop_table("sweeps")
    op.drop_index("ix_outgoing_transactions_deposit_address_id", "outgoing_transactions")
    op.drop_constraint(
        op.f("ck_outgoing_transactions_one_sender"), "outgoing_transactions", type_="check"
    )
    op.drop_column("outgoing_transactions", "deposit_address_id")
    op.alter_column("outgoing_transactions", "hot_wallet_id", nullable=False)
    op.drop_table("hd_account_keys")
    op.drop_column("networks", "treasury_address")
