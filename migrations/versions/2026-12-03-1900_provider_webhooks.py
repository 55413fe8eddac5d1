"""Provider webhooks: the inbox of Rain, Intrajasa and Privy webhooks, stored raw before they
are handled

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "provider_webhooks",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("external_id", sa.String(200), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column(
            "headers",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("source_ip", sa.String(64)),
        sa.Column("received_at", TS, server_default=NOW, nullable=False),
        sa.Column("status", sa.String(16), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("attempts", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.String(500)),
        sa.Column("next_attempt_at", TS, server_default=NOW),
        sa.Column("handled_at", TS),
        sa.Column("replayed_at", TS),
        sa.CheckConstraint(
            "provider IN ('rain', 'intrajasa', 'privy')", name=op.f("ck_provider_webhooks_provider")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'handled', 'ignored', 'dead')",
            name=op.f("ck_provider_webhooks_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_webhooks")),
    )
    op.create_index(
        "uq_provider_webhooks_provider_external_id",
        "provider_webhooks",
        ["provider", "external_id"],
        unique=True,
    )
    op.create_index(
        "ix_provider_webhooks_pending_due",
        "provider_webhooks",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_table("provider_webhooks")
