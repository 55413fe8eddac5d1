"""Request and response models of the webhook endpoint routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nespay.callbacks.events import EVENT_TYPES, WILDCARD

EVENTS_DESCRIPTION = f'Event types, or ["{WILDCARD}"] for all'
EVENTS_SCHEMA = {"items": {"type": "string", "enum": [WILDCARD, *sorted(EVENT_TYPES)]}}


def known_events(events: list[str]) -> list[str]:
    """`["*"]`, or known event types (sorted, without repeats); else a ValueError."""
    if events == [WILDCARD]:
        return events
    unknown = sorted(set(events) - EVENT_TYPES)
    if unknown:
        raise ValueError(f"unknown event types {unknown}; known: {sorted(EVENT_TYPES)}")
    return sorted(set(events))


class WebhookEndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2000)
    events: list[str] = Field(
        min_length=1, description=EVENTS_DESCRIPTION, json_schema_extra=EVENTS_SCHEMA
    )
    description: str | None = Field(None, max_length=500)

    @field_validator("events")
    @classmethod
    def _known(cls, events: list[str]) -> list[str]:
        return known_events(events)


class WebhookEndpointUpdate(BaseModel):
    """Only the fields sent change; `description` may be null (cleared), the others may not."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, min_length=1, max_length=2000)
    events: list[str] | None = Field(
        None, min_length=1, description=EVENTS_DESCRIPTION, json_schema_extra=EVENTS_SCHEMA
    )
    enabled: bool | None = Field(
        None, description="false stops deliveries; true resumes them (pending ones at once)"
    )
    description: str | None = Field(None, max_length=500)

    @field_validator("url", "events", "enabled")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may be left out, but not null")
        return value

    @field_validator("events")
    @classmethod
    def _known(cls, events: list[str]) -> list[str]:
        return known_events(events)


class WebhookEndpoint(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    url: str
    events: list[str]
    enabled: bool
    description: str | None
    created_at: datetime
    failing_since: datetime | None = Field(
        description="Since when every attempt has failed (null once one succeeds)"
    )
    disabled_at: datetime | None
    disabled_reason: str | None
    previous_secret_expires_at: datetime | None = Field(
        description="Until then deliveries are also signed with the secret before the last rotation"
    )


class WebhookEndpointCreated(WebhookEndpoint):
    secret: str = Field(description="Signing secret (whsec_…). Shown once: store it now.")


class WebhookEndpointList(BaseModel):
    data: list[WebhookEndpoint]
    has_more: bool


class SecretRotated(BaseModel):
    secret: str = Field(description="The new signing secret (whsec_…). Shown once: store it now.")
    previous_secret_expires_at: datetime = Field(
        description="Deliveries carry a signature with the previous secret too until then"
    )


class PingResult(BaseModel):
    success: bool = Field(description="The endpoint answered 2xx within 10 s")
    status_code: int | None
    latency_ms: int
    response_excerpt: str | None = Field(description="The first 2 KB of the answer")
    error: str | None
