"""Provider webhooks (Rain, Intrajasa, Privy) as received: the inbox.

A row is written, raw, before anything else happens to a webhook; it is the truth of what
still has to be handled (`status`, `next_attempt_at`). RabbitMQ messages only wake a handler
up; the webhook process's sweep finds any row whose message was lost (docs/webhooks.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Index, LargeBinary, SmallInteger, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from nespay.models.base import Base

STATUSES = ("pending", "handled", "ignored", "dead")


class ProviderWebhook(Base):
    __tablename__ = "provider_webhooks"
    __table_args__ = (
        Index("uq_provider_webhooks_provider_external_id", "provider", "external_id", unique=True),
        # The sweep: rows still to be handled, by when they are due.
        Index(
            "ix_provider_webhooks_pending_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        CheckConstraint("provider IN ('rain', 'intrajasa', 'privy')", name="provider"),
        CheckConstraint("status IN ('pending', 'handled', 'ignored', 'dead')", name="status"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    # Rain's event id, the Svix message id, Intrajasa's transaction reference; without one,
    # `sha256:` and the hex SHA-256 of the body.
    external_id: Mapped[str] = mapped_column(String(200))
    event_type: Mapped[str] = mapped_column(String(100))
    body: Mapped[bytes] = mapped_column(LargeBinary)  # byte for byte as received
    # The headers a handler or an operator may need (never a secret, token or signature).
    headers: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    source_ip: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    status: Mapped[str] = mapped_column(String(16), server_default=text("'pending'"))
    attempts: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(String(500))
    next_attempt_at: Mapped[datetime | None] = mapped_column(server_default=text("now()"))
    handled_at: Mapped[datetime | None]
    replayed_at: Mapped[datetime | None]
