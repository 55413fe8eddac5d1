"""Platform plumbing tables: job schedules with leases, and the Redis fallback (locks, counters)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String, text
from sqlalchemy.orm import Mapped, mapped_column

from nespay.models.base import Base


class JobSchedule(Base):
    """One row per named job; the lease makes one replica run it at a time.

    `lease_token` is a fencing token: it grows on every claim, and a holder may only record its
    outcome while the row still carries its token.
    """

    __tablename__ = "job_schedules"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    schedule: Mapped[str] = mapped_column(String(100))
    enabled: Mapped[bool] = mapped_column(server_default=text("true"))
    next_run_at: Mapped[datetime]
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_token: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    lease_expires_at: Mapped[datetime | None]
    last_started_at: Mapped[datetime | None]
    last_finished_at: Mapped[datetime | None]
    last_outcome: Mapped[str | None] = mapped_column(String(16))  # ok | error | timeout
    last_error: Mapped[str | None] = mapped_column(String(1000))
    last_duration_ms: Mapped[int | None]
    run_count: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class AppLock(Base):
    """Named lease used when Redis is disabled or down (database-backed locks)."""

    __tablename__ = "app_locks"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str] = mapped_column(String(100))
    token: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime]


class RateCounter(Base):
    """Fixed-window counter used when Redis is disabled or down (database-backed rate limits)."""

    __tablename__ = "rate_counters"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(index=True)
