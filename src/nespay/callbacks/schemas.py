"""Request and response models of the webhook endpoint routes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nespay.callbacks.events import EVENT_TYPES, WILDCARD


class WebhookEndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2000)
    events: list[str] = Field(min_length=1, description=f'Event types, or ["{WILDCARD}"] for all')
    description: str | None = Field(None, max_length=500)

    @field_validator("events")
    @classmethod
    def _known(cls, events: list[str]) -> list[str]:
        if events == [WILDCARD]:
            return events
        unknown = sorted(set(events) - EVENT_TYPES)
        if unknown:
            raise ValueError(f"unknown event types {unknown}; known: {sorted(EVENT_TYPES)}")
        return sorted(set(events))


class WebhookEndpoint(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    url: str
    events: list[str]
    enabled: bool
    description: str | None
    created_at: datetime


class WebhookEndpointCreated(WebhookEndpoint):
    secret: str = Field(description="Signing secret (whsec_…). Shown once: store it now.")


class WebhookEndpointList(BaseModel):
    data: list[WebhookEndpoint]
    has_more: bool
