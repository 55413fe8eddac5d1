"""Reconciliation runs: the ledger compared with the chain, per network at one block

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reconciliation_runs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("network_code", sa.String(length=32), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "lines",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('ok', 'difference', 'error')", name=op.f("ck_reconciliation_runs_status")
        ),
        sa.ForeignKeyConstraint(
            ["network_code"],
            ["networks.code"],
            name=op.f("fk_reconciliation_runs_network_code_networks"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_runs")),
    )
    op.create_index(
        "ix_reconciliation_runs_network_code_id",
        "reconciliation_runs",
        ["network_code", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_reconciliation_runs_network_code_id", table_name="reconciliation_runs")
    op.drop_table("reconciliation_runs")
