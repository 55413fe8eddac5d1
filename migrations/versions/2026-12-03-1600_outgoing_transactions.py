"""Money out: hot wallets, a nonce sequence per sending address, outgoing transactions and
their signed candidates; a fee cap per network

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
WEI = sa.Numeric(78, 0)
NOW = sa.text("now()")


def _network_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["network_code"],
        ["networks.code"],
        name=op.f(f"fk_{table}_network_code_networks"),
        ondelete="RESTRICT",
    )


def upgrade() -> None:
    op.add_column("networks", sa.Column("max_fee_per_gas_cap", WEI))
    op.create_table(
        "hot_wallets",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("network_code", sa.String(32), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("signer", sa.String(8), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("private_key_encrypted", sa.Text()),
        sa.Column("privy_wallet_id", sa.String(100)),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("created_at", TS, server_default=NOW, nullable=False),
        sa.Column("deactivated_at", TS),
        sa.CheckConstraint("role IN ('payouts', 'gas')", name=op.f("ck_hot_wallets_role")),
        sa.CheckConstraint("signer IN ('local', 'privy')", name=op.f("ck_hot_wallets_signer")),
        sa.CheckConstraint(
            "(signer = 'local' AND private_key_encrypted IS NOT NULL) OR "
            "(signer = 'privy' AND privy_wallet_id IS NOT NULL)",
            name=op.f("ck_hot_wallets_signer_material"),
        ),
        _network_fk("hot_wallets"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hot_wallets")),
    )
    op.create_index(
        "uq_hot_wallets_network_code_role",
        "hot_wallets",
        ["network_code", "role"],
        unique=True,
        postgresql_where=sa.text("active"),
    )
    op.create_table(
        "wallet_nonces",
        sa.Column("network_code", sa.String(32), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("next_nonce", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TS, server_default=NOW, nullable=False),
        _network_fk("wallet_nonces"),
        sa.PrimaryKeyConstraint("network_code", "address", name=op.f("pk_wallet_nonces")),
    )
    op.create_table(
        "outgoing_transactions",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("purpose", sa.String(40), nullable=False),
        sa.Column("source_id", sa.String(100), nullable=False),
        sa.Column("network_code", sa.String(32), nullable=False),
        sa.Column("hot_wallet_id", sa.String(40), nullable=False),
        sa.Column("from_address", sa.String(64), nullable=False),
        sa.Column("to_address", sa.String(64), nullable=False),
        sa.Column("token_contract", sa.String(64)),
        sa.Column("amount", WEI, nullable=False),
        sa.Column("status", sa.String(16), server_default=sa.text("'queued'"), nullable=False),
        sa.Column("nonce", sa.BigInteger()),
        sa.Column("gas_limit", sa.BigInteger()),
        sa.Column("max_fee_per_gas", WEI),
        sa.Column("max_priority_fee_per_gas", WEI),
        sa.Column("gas_used", sa.BigInteger()),
        sa.Column("effective_gas_price", WEI),
        sa.Column("mined_hash", sa.String(80)),
        sa.Column("mined_block_number", sa.BigInteger()),
        sa.Column("mined_block_hash", sa.String(80)),
        sa.Column("receipt_status", sa.Integer()),
        sa.Column("confirmations", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.String(1000)),
        sa.Column("created_at", TS, server_default=NOW, nullable=False),
        sa.Column("updated_at", TS, server_default=NOW, nullable=False),
        sa.Column("signed_at", TS),
        sa.Column("broadcast_at", TS),
        sa.Column("mined_at", TS),
        sa.Column("finished_at", TS),
        sa.CheckConstraint(
            "status IN ('queued', 'signed', 'broadcast', 'mined', 'confirmed', 'failed')",
            name=op.f("ck_outgoing_transactions_status"),
        ),
        sa.CheckConstraint(
            "amount >= 0", name=op.f("ck_outgoing_transactions_amount_not_negative")
        ),
        _network_fk("outgoing_transactions"),
        sa.ForeignKeyConstraint(
            ["hot_wallet_id"],
            ["hot_wallets.id"],
            name=op.f("fk_outgoing_transactions_hot_wallet_id_hot_wallets"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outgoing_transactions")),
    )
    op.create_index(
        "uq_outgoing_transactions_purpose_source_id",
        "outgoing_transactions",
        ["purpose", "source_id"],
        unique=True,
    )
    op.create_index(
        "uq_outgoing_transactions_network_code_from_address_nonce",
        "outgoing_transactions",
        ["network_code", "from_address", "nonce"],
        unique=True,
        postgresql_where=sa.text("nonce IS NOT NULL"),
    )
    op.create_index(
        "ix_outgoing_transactions_network_code_status",
        "outgoing_transactions",
        ["network_code", "status"],
        postgresql_where=sa.text("status NOT IN ('confirmed', 'failed')"),
    )
    op.create_table(
        "outgoing_transaction_candidates",
        sa.Column("outgoing_transaction_id", sa.String(40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("tx_hash", sa.String(80)),
        sa.Column("raw_transaction", sa.Text()),
        sa.Column("max_fee_per_gas", WEI, nullable=False),
        sa.Column("max_priority_fee_per_gas", WEI, nullable=False),
        sa.Column("created_at", TS, server_default=NOW, nullable=False),
        sa.Column("broadcast_at", TS),
        sa.Column("last_error", sa.String(1000)),
        sa.ForeignKeyConstraint(
            ["outgoing_transaction_id"],
            ["outgoing_transactions.id"],
            name="fk_outgoing_transaction_candidates_outgoing_transactions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "outgoing_transaction_id", "number", name=op.f("pk_outgoing_transaction_candidates")
        ),
    )
    op.create_index(
        op.f("ix_outgoing_transaction_candidates_tx_hash"),
        "outgoing_transaction_candidates",
        ["tx_hash"],
    )


def downgrade() -> None:
    op.drop_table("outgoing_transaction_candidates")
    op.drop_table("outgoing_transactions")
    op.drop_table("wallet_nonces")
    op.drop_table("hot_wallets")
    op.drop_column("networks", "max_fee_per_gas_cap")
