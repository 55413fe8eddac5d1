"""Payment truth: a dust threshold per currency; a watch window for currencies and networks
switched off while invoices may still be paid on them; the scanner's cursor remembers its
block's time and the chain it reads (genesis hash), and its failures are kept where operators
look; an invoice an admin marked keeps its status

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column(
        "currencies",
        sa.Column("dust_threshold", sa.Numeric(78, 0), server_default=sa.text("0"), nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_currencies_dust_threshold_not_negative"), "currencies", "dust_threshold >= 0"
    )
    op.add_column("currencies", sa.Column("watch_until", TS))
    op.add_column("networks", sa.Column("watch_until", TS))
    op.add_column("chain_cursors", sa.Column("block_timestamp", sa.BigInteger()))
    op.add_column("chain_cursors", sa.Column("genesis_hash", sa.String(80)))
    op.execute(
        """
        UPDATE chain_cursors c SET block_timestamp = b.timestamp
        FROM chain_blocks b
        WHERE b.network_code = c.network_code AND b.number = c.block_number
        """
    )
    op.create_table(
        "scanner_status",
        sa.Column("network_code", sa.String(32), nullable=False),
        sa.Column("last_error", sa.String(500), nullable=False),
        sa.Column("failing_since", TS, nullable=False),
        sa.Column("last_error_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["network_code"],
            ["networks.code"],
            name=op.f("fk_scanner_status_network_code_networks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("network_code", name=op.f("pk_scanner_status")),
    )
    op.add_column("invoices", sa.Column("marked_at", TS))


def downgrade() -> None:
    op.drop_column("invoices", "marked_at")
    op.drop_table("scanner_status")
    op.drop_column("chain_cursors", "genesis_hash")
    op.drop_column("chain_cursors", "block_timestamp")
    op.drop_column("networks", "watch_until")
    op.drop_column("currencies", "watch_until")
    op.drop_constraint(op.f("ck_currencies_dust_threshold_not_negative"), "currencies")
    op.drop_column("currencies", "dust_threshold")
