"""Response and request models of the event routes (merchant API and backoffice)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


@dataclass(frozen=True)
class EventFilters:
    """What a list of events is narrowed to; None means any."""

    type: str | None = None
    subject_id: str | None = None
    created_gte: datetime | None = None
    created_lte: datetime | None = None


class Event(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    type: str
    created_at: datetime
    subject_id: str = Field(description="The object the event is about (invoice, payment, …)")
    data: dict[str, Any]


class EventList(BaseModel):
    data: list[Event]
    has_more: bool


class DeliveryCounts(BaseModel):
    total: int = 0
    pending: int = 0
    succeeded: int = 0
    failed: int = 0


class EventDetail(Event):
    deliveries: DeliveryCounts


class BackofficeEvent(Event):
    merchant_id: str
    published_at: datetime | None = Field(description="When the relay handed it to the broker")


class BackofficeEventList(BaseModel):
    data: list[BackofficeEvent]
    has_more: bool


class BackofficeEventDetail(BackofficeEvent):
    deliveries: DeliveryCounts


class Attempt(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime
    manual: bool = Field(description="Made by a redelivery asked for through the API")
    status_code: int | None
    latency_ms: int
    response_excerpt: str | None = Field(description="The first 2 KB of the answer")
    error: str | None


class Delivery(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    endpoint_id: str
    url: str
    status: str = Field(description="pending | succeeded | failed")
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    succeeded_at: datetime | None
    failed_at: datetime | None
    attempt_log: list[Attempt] = Field(description="Newest first, at most the last 50")


class DeliveryList(BaseModel):
    data: list[Delivery]
    has_more: bool = Field(False, description="Always false: one delivery per endpoint")


class Redeliver(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint_id: str | None = Field(
        None,
        max_length=40,
        description="Only to this endpoint (even if not subscribed to the type); "
        "by default to every enabled endpoint subscribed to it",
    )
