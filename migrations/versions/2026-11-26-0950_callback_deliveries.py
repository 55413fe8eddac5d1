"""Callback deliveries and attempts, endpoint rotation/disable columns, and a NOTIFY on new
events so the outbox relay wakes at once instead of polling

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 09:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("events", sa.Column("dispatched_at", TS))
    op.add_column("webhook_endpoints", sa.Column("previous_secret_encrypted", sa.Text()))
    op.add_column("webhook_endpoints", sa.Column("previous_secret_expires_at", TS))
    op.add_column("webhook_endpoints", sa.Column("failing_since", TS))
    op.add_column("webhook_endpoints", sa.Column("disabled_at", TS))
    op.add_column("webhook_endpoints", sa.Column("disabled_reason", sa.String(length=200)))
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(length=40), primary_key=True),
        sa.Column(
            "event_id",
            sa.String(length=40),
            sa.ForeignKey("events.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "endpoint_id",
            sa.String(length=40),
            sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("subject_id", sa.String(length=40), nullable=False),
        sa.Column("event_seq", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("attempts", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("window_started_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("next_attempt_at", TS, server_default=sa.text("now()"), nullable=True),
        sa.Column("lease_until", TS),
        sa.Column("manual", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("last_attempt_at", TS),
        sa.Column("last_status_code", sa.Integer()),
        sa.Column("last_error", sa.String(length=500)),
        sa.Column("succeeded_at", TS),
        sa.Column("failed_at", TS),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
    )
    op.create_index(
        "uq_webhook_deliveries_event_endpoint",
        "webhook_deliveries",
        ["event_id", "endpoint_id"],
        unique=True,
    )
    op.create_index(
        "ix_webhook_deliveries_pending_order",
        "webhook_deliveries",
        ["endpoint_id", "subject_id", "event_seq"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_webhook_deliveries_pending_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_webhook_deliveries_merchant_id_id", "webhook_deliveries", ["merchant_id", "id"]
    )
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column(
            "delivery_id",
            sa.String(length=40),
            sa.ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("manual", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("status_code", sa.Integer()),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("response_excerpt", sa.Text()),
        sa.Column("error", sa.String(length=500)),
    )
    op.create_index(
        "ix_webhook_attempts_delivery_id_id", "webhook_attempts", ["delivery_id", "id"]
    )
    # One notification per inserting statement (PostgreSQL also folds duplicates within a
    # transaction); delivered at commit, so the relay never wakes for uncommitted rows.
    op.execute(
        """
        CREATE FUNCTION nespay_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('nespay_events', '');
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER events_notify AFTER INSERT ON events "
        "FOR EACH STATEMENT EXECUTE FUNCTION nespay_events_notify()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER events_notify ON events")
    op.execute("DROP FUNCTION nespay_events_notify()")
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
    op.drop_column("events", "dispatched_at")
    for column in (
        "disabled_reason",
        "disabled_at",
        "failing_since",
        "previous_secret_expires_at",
        "previous_secret_encrypted",
    ):
        op.drop_column("webhook_endpoints", column)
