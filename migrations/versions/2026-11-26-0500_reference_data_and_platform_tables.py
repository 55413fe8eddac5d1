"""Reference data (networks, currencies, RPC endpoints) and platform tables (jobs, fallback locks and counters); enables pg_trgm for fragment search

Revision ID: 0001
Revises:
Create Date: 2026-11-26 04:54:48.135686
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nespay.db import EXTENSIONS_SCHEMA, MigrationRefused

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Backoffice fragment search (SPEC §11) relies on trigram indexes. pg_trgm goes into a
    # schema of its own (see nespay.db.EXTENSIONS_SCHEMA), never into a deployment's schema.
    installed = (
        op.get_bind()
        .exec_driver_sql(
            "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_trgm'"
        )
        .scalar()
    )
    if installed is None:
        op.execute(f"CREATE SCHEMA IF NOT EXISTS {EXTENSIONS_SCHEMA}")
        op.execute(f"CREATE EXTENSION pg_trgm SCHEMA {EXTENSIONS_SCHEMA}")
    elif installed not in ("public", EXTENSIONS_SCHEMA):
        raise MigrationRefused(
            f"pg_trgm is installed in schema {installed}, where other deployments' connections "
            f"do not look: as a superuser run `ALTER EXTENSION pg_trgm SET SCHEMA "
            f"{EXTENSIONS_SCHEMA}` (after `CREATE SCHEMA IF NOT EXISTS {EXTENSIONS_SCHEMA}`), "
            "then `nespay db migrate` again"
        )
    op.create_table(
        "app_locks",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("holder", sa.String(length=100), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_app_locks")),
    )
    op.create_table(
        "job_schedules",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("schedule", sa.String(length=100), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(length=100), nullable=True),
        sa.Column("lease_token", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_outcome", sa.String(length=16), nullable=True),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.Column("last_duration_ms", sa.Integer(), nullable=True),
        sa.Column("run_count", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_job_schedules")),
    )
    op.create_table(
        "networks",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("chain_family", sa.String(length=8), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=True),
        sa.Column("confirmations", sa.Integer(), server_default=sa.text("12"), nullable=False),
        sa.Column("block_time_ms", sa.Integer(), server_default=sa.text("12000"), nullable=False),
        sa.Column("is_testnet", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("explorer_url", sa.String(length=200), nullable=True),
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
        sa.CheckConstraint(
            "chain_family IN ('evm', 'tron')", name=op.f("ck_networks_chain_family")
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_networks")),
    )
    op.create_table(
        "rate_counters",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", "window_start", name=op.f("pk_rate_counters")),
    )
    op.create_index(
        op.f("ix_rate_counters_expires_at"), "rate_counters", ["expires_at"], unique=False
    )
    op.create_table(
        "currencies",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("network_code", sa.String(length=32), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("contract", sa.String(length=64), nullable=True),
        sa.Column("decimals", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
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
        sa.CheckConstraint("decimals BETWEEN 0 AND 36", name=op.f("ck_currencies_decimals_range")),
        sa.ForeignKeyConstraint(
            ["network_code"],
            ["networks.code"],
            name=op.f("fk_currencies_network_code_networks"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_currencies")),
    )
    op.create_index(
        "uq_currencies_network_code_code", "currencies", ["network_code", "code"], unique=True
    )
    op.create_index(
        "uq_currencies_network_code_contract",
        "currencies",
        ["network_code", sa.literal_column("lower(contract)")],
        unique=True,
        postgresql_where=sa.text("contract IS NOT NULL"),
    )
    op.create_table(
        "rpc_endpoints",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("network_code", sa.String(length=32), nullable=False),
        sa.Column("url", sa.String(length=500), nullable=False),
        sa.Column("priority", sa.Integer(), server_default=sa.text("100"), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "status", sa.String(length=8), server_default=sa.text("'unknown'"), nullable=False
        ),
        sa.Column("last_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("head_block", sa.BigInteger(), nullable=True),
        sa.Column(
            "consecutive_failures", sa.Integer(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column("last_error", sa.String(length=500), nullable=True),
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
        sa.CheckConstraint(
            "status IN ('unknown', 'up', 'down')", name=op.f("ck_rpc_endpoints_status")
        ),
        sa.ForeignKeyConstraint(
            ["network_code"],
            ["networks.code"],
            name=op.f("fk_rpc_endpoints_network_code_networks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rpc_endpoints")),
    )
    op.create_index(
        "uq_rpc_endpoints_network_code_url", "rpc_endpoints", ["network_code", "url"], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_rpc_endpoints_network_code_url", table_name="rpc_endpoints")
    op.drop_table("rpc_endpoints")
    op.drop_index(
        "uq_currencies_network_code_contract",
        table_name="currencies",
        postgresql_where=sa.text("contract IS NOT NULL"),
    )
    op.drop_index("uq_currencies_network_code_code", table_name="currencies")
    op.drop_table("currencies")
    op.drop_index(op.f("ix_rate_counters_expires_at"), table_name="rate_counters")
    op.drop_table("rate_counters")
    op.drop_table("networks")
    op.drop_table("job_schedules")
    op.drop_table("app_locks")
