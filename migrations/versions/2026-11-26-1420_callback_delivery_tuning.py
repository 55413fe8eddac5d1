"""Callback delivery, as it ended up after 0004: the disabled-endpoint email's bookkeeping, no
NOTIFY on new events (it serialised every event-writing commit on PostgreSQL's notify lock;
the relay polls), no `events.dispatched_at`, no merchant index on deliveries, room on each
delivery page for the claim's update to stay HOT

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 14:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS events_notify ON events")
    op.execute("DROP FUNCTION IF EXISTS nespay_events_notify()")
    op.drop_column("events", "dispatched_at")
    op.drop_index("ix_webhook_deliveries_merchant_id_id", table_name="webhook_deliveries")
    op.add_column("webhook_endpoints", sa.Column("disabled_notice_tried_at", TS))
    op.add_column("webhook_endpoints", sa.Column("disabled_notice_sent_at", TS))
    op.execute("ALTER TABLE webhook_deliveries SET (fillfactor = 70)")


def downgrade() -> None:
    op.execute("ALTER TABLE webhook_deliveries RESET (fillfactor)")
    op.drop_column("webhook_endpoints", "disabled_notice_sent_at")
    op.drop_column("webhook_endpoints", "disabled_notice_tried_at")
    op.create_index(
        "ix_webhook_deliveries_merchant_id_id", "webhook_deliveries", ["merchant_id", "id"]
    )
    op.add_column("events", sa.Column("dispatched_at", TS))
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
