"""The event log, which is also the transactional outbox: a state change and its event commit
together; the relay publishes rows with `published_at` NULL."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from nespay.models.base import Base


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_merchant_id_id", "merchant_id", "id"),
        Index("ix_events_unpublished", "seq", postgresql_where=text("published_at IS NULL")),
        Index("ix_events_subject_id_seq", "subject_id", "seq"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # Commit order of events (per subject it orders an invoice's callbacks).
    seq: Mapped[int] = mapped_column(BigInteger, server_default=text("nextval('events_seq')"))
    merchant_id: Mapped[str] = mapped_column(String(40))
    type: Mapped[str] = mapped_column(String(40))
    subject_id: Mapped[str] = mapped_column(String(40))  # the invoice, payment, … it is about
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    request_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    # RabbitMQ confirmed it (or, without a broker, its deliveries were handed to the worker).
    published_at: Mapped[datetime | None]
