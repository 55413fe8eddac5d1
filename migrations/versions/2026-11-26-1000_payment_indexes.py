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
    # Built CONCURRENTLY, outside a transaction: payments keep being recorded while it builds
    # on a large table. A build that failed half-way leaves an invalid index of that name, so
    # one is dropped first (in this schema only: the name alone would resolve through the
    # search_path to another schema's).
    schema = op.get_bind().exec_driver_sql("SELECT current_schema()").scalar_one()
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_payments_option_id",
            table_name="payments",
            schema=schema,
            if_exists=True,
            postgresql_concurrently=True,
        )
        op.create_index(
            "ix_payments_option_id", "payments", ["option_id"], postgresql_concurrently=True
        )


def downgrade() -> None:
    op.drop_index("ix_payments_option_id", table_name="payments")
