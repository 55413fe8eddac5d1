"""Response models of the audit log routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator


class AuditEntry(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    at: datetime
    actor_type: str
    actor_id: str | None
    merchant_id: str | None
    action: str
    target_type: str | None
    target_id: str | None
    ip: str | None
    request_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    detail: dict[str, Any] | None

    @field_validator("id", "ip", mode="before")
    @classmethod
    def _string(cls, value: object) -> object:
        return None if value is None else str(value)


class AuditEntryList(BaseModel):
    data: list[AuditEntry]
    has_more: bool
