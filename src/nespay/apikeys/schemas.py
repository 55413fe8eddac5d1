"""Request and response models of the API keys routes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nespay.auth.scopes import ALL_SCOPES


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(
        min_length=1,
        max_length=len(ALL_SCOPES),
        json_schema_extra={"items": {"type": "string", "enum": sorted(ALL_SCOPES)}},
    )
    expires_at: datetime | None = None

    @field_validator("scopes")
    @classmethod
    def _known(cls, scopes: list[str]) -> list[str]:
        unknown = sorted(set(scopes) - ALL_SCOPES)
        if unknown:
            raise ValueError(f"unknown scopes {unknown}; known: {sorted(ALL_SCOPES)}")
        return sorted(set(scopes))

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("expected an RFC 3339 time with a timezone, e.g. 2027-01-01T00:00:00Z")
        return value


class ApiKey(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKey):
    key: str = Field(description="The key itself. Shown once: store it now.")


class ApiKeyList(BaseModel):
    data: list[ApiKey]
    has_more: bool
