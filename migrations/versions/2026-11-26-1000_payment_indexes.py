"""Index payments by option: settling an invoice sums its options' payments, which without
it scanned the whole payments table once per touched option

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 10:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_payments_option_id", "payments", ["option_id"])


def downgrade() -> None:
    op.drop_index("ix_payments_option_id", table_name="payments")
