"""Callback deliveries: one row per (event, endpoint), one attempt row per POST.

The delivery row is the truth of what still has to reach a merchant (status, when the next
attempt is due, who holds it); RabbitMQ messages only wake a worker up to do it, so a lost
message delays a callback and never drops it (the relay's sweep republishes what is due).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, SmallInteger, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from nespay.models.base import Base


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("uq_webhook_deliveries_event_endpoint", "event_id", "endpoint_id", unique=True),
        # Ordering: the earliest pending delivery of a subject (invoice) to an endpoint goes
        # first; later ones wait for it.
        Index(
            "ix_webhook_deliveries_pending_order",
            "endpoint_id",
            "subject_id",
            "event_seq",
            postgresql_where=text("status = 'pending'"),
        ),
        # The sweep: pending deliveries whose wake-up message may have been lost.
        Index(
            "ix_webhook_deliveries_pending_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
    )  # fillfactor 70 (set by the migration): room for the claim's update to stay HOT

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    merchant_id: Mapped[str] = mapped_column(String(40))
    subject_id: Mapped[str] = mapped_column(String(40))
    event_seq: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), server_default=text("'pending'"))
    attempts: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    # Start of the current retry window (creation, or the last manual redelivery).
    window_started_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    next_attempt_at: Mapped[datetime | None] = mapped_column(server_default=text("now()"))
    lease_until: Mapped[datetime | None]
    # Set by a manual redelivery: the next attempt is recorded as manual.
    manual: Mapped[bool] = mapped_column(server_default=text("false"))
    last_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    succeeded_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery_id_id", "delivery_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE")
    )
    at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    manual: Mapped[bool] = mapped_column(server_default=text("false"))
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)
    response_excerpt: Mapped[str | None] = mapped_column(Text)  # first 2 KB
    error: Mapped[str | None] = mapped_column(String(500))
