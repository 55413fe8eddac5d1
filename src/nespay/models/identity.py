"""Who may act: merchants, their people (Cognito users), their servers' API keys, and the
append-only audit log of security events and backoffice writes."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    LargeBinary,
    Numeric,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import INET, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from nespay.models.base import Base, TimestampMixin
from nespay.security.encryption import register


class Merchant(TimestampMixin, Base):
    __tablename__ = "merchants"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'suspended')", name="status"),
        CheckConstraint("underpayment_tolerance_bps BETWEEN 0 AND 10000", name="tolerance_range"),
        CheckConstraint("fee_bps BETWEEN 0 AND 10000", name="fee_range"),
        Index(
            "ix_merchants_name_trgm",
            "name",
            postgresql_using="gin",
            postgresql_ops={"name": "gin_trgm_ops"},
        ),
        Index(
            "ix_merchants_email_trgm",
            "email",
            postgresql_using="gin",
            postgresql_ops={"email": "gin_trgm_ops"},
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    country: Mapped[str] = mapped_column(String(2))
    status: Mapped[str] = mapped_column(String(16), server_default=text("'active'"))
    suspended_reason: Mapped[str | None] = mapped_column(String(500))
    # Settings: basis points of the amount due that may be missing and still count as paid.
    underpayment_tolerance_bps: Mapped[int] = mapped_column(server_default=text("0"))
    default_expiry_s: Mapped[int] = mapped_column(server_default=text("900"))
    # Withdrawals above this (USD equivalent) wait for an admin's approval.
    withdrawal_approval_threshold_usd: Mapped[Decimal] = mapped_column(
        Numeric(20, 2), server_default=text("1000")
    )
    # The platform's fee on confirmed payments, in basis points; NULL: the platform default
    # (`PLATFORM_FEE_BPS`).
    fee_bps: Mapped[int | None]


class MerchantUser(TimestampMixin, Base):
    """A Cognito user of a merchant; one merchant per user (the `sub`)."""

    __tablename__ = "merchant_users"
    __table_args__ = (
        CheckConstraint("role IN ('owner', 'admin', 'developer', 'viewer')", name="role"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(
        ForeignKey("merchants.id", ondelete="CASCADE"), index=True
    )
    cognito_sub: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(16))


class ApiKey(Base):
    """A merchant server's key: only a SHA-256 of it is stored; `prefix` finds the row."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(
        ForeignKey("merchants.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(40)))
    created_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    last_used_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class AuditLog(Base):
    """Append-only: a trigger refuses UPDATE, DELETE and TRUNCATE (see the migration)."""

    __tablename__ = "audit_logs"
    __table_args__ = (
        Index("ix_audit_logs_merchant_id_id", "merchant_id", "id"),
        Index("ix_audit_logs_action_id", "action", "id"),
        Index("ix_audit_logs_actor_id_id", "actor_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    actor_type: Mapped[str] = mapped_column(
        String(20)
    )  # admin | merchant_user | api_key | system | anonymous
    actor_id: Mapped[str | None] = mapped_column(String(100))
    merchant_id: Mapped[str | None] = mapped_column(String(40))
    action: Mapped[str] = mapped_column(String(60))
    target_type: Mapped[str | None] = mapped_column(String(40))
    target_id: Mapped[str | None] = mapped_column(String(100))
    ip: Mapped[str | None] = mapped_column(INET)
    request_id: Mapped[str | None] = mapped_column(String(128))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))


class WebhookEndpoint(TimestampMixin, Base):
    """A merchant's callback endpoint; its signing secret is stored encrypted."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(
        ForeignKey("merchants.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(ARRAY(String(40)))
    enabled: Mapped[bool] = mapped_column(server_default=text("true"))
    secret_encrypted: Mapped[str] = mapped_column(Text)
    # After a rotation the previous secret keeps signing beside the new one until it expires.
    previous_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None]
    description: Mapped[str | None] = mapped_column(String(500))
    # Set by the first failed attempt, cleared by any success: how long it has been failing.
    failing_since: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
    # The merchant's email about the disabling: last try, and when it went out (retried until).
    disabled_notice_tried_at: Mapped[datetime | None]
    disabled_notice_sent_at: Mapped[datetime | None]


# Every encrypted column is declared beside its model, so `nespay keys rotate` finds them all.
WEBHOOK_SECRET = register("webhook_endpoints", "secret_encrypted")
WEBHOOK_PREVIOUS_SECRET = register("webhook_endpoints", "previous_secret_encrypted")
