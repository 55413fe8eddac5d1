"""Backoffice search and stats: trigram indexes on the searched ids and addresses, invoices by
status, confirmed payments' volume by time

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-11 10:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRIGRAM = [
    ("ix_invoices_id_trgm", "invoices", "id"),
    ("ix_payments_id_trgm", "payments", "id"),
    ("ix_payments_from_address_trgm", "payments", "from_address"),
    ("ix_payments_to_address_trgm", "payments", "to_address"),
]


def upgrade() -> None:
    # Built CONCURRENTLY, outside a transaction, as in 0005: invoices and payments keep being
    # written while these build on a large table. A build that failed half-way leaves an
    # invalid index of that name, so each is dropped first (in this schema only).
    schema = op.get_bind().exec_driver_sql("SELECT current_schema()").scalar_one()
    with op.get_context().autocommit_block():
        for name, table, column in TRIGRAM:
            _drop(name, table, schema)
            op.create_index(
                name,
                table,
                [column],
                postgresql_using="gin",
                postgresql_ops={column: "gin_trgm_ops"},
                postgresql_concurrently=True,
            )
        # Lists by status, newest first (`GET /invoices?status=invalid` on a million rows).
        _drop("ix_invoices_status_id", "invoices", schema)
        op.create_index(
            "ix_invoices_status_id", "invoices", ["status", "id"], postgresql_concurrently=True
        )
        # `GET /stats`: confirmed volume per currency and day, read from the index alone.
        _drop("ix_payments_confirmed_volume", "payments", schema)
        op.create_index(
            "ix_payments_confirmed_volume",
            "payments",
            ["confirmed_at", "currency_id"],
            postgresql_include=["amount"],
            postgresql_where="status = 'confirmed'",
            postgresql_concurrently=True,
        )


def _drop(name: str, table: str, schema: str) -> None:
    op.drop_index(
        name, table_name=table, schema=schema, if_exists=True, postgresql_concurrently=True
    )


def downgrade() -> None:
    op.drop_index("ix_payments_confirmed_volume", table_name="payments")
    op.drop_index("ix_invoices_status_id", table_name="invoices")
    for name, table, _ in reversed(TRIGRAM):
        op.drop_index(name, table_name=table)
