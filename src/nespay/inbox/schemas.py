"""What the provider routes answer and what the backoffice shows of a stored webhook."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class WebhookReceipt(BaseModel):
    received: Literal[True] = True
    id: str = Field(description="The stored webhook (`pwh_…`).")
    duplicate: bool = Field(
        description="True when this (provider, external id) was already stored: it is "
        "acknowledged and not handled again."
    )


class ProviderWebhook(BaseModel):
    id: str
    provider: Literal["rain", "intrajasa", "privy"]
    external_id: str = Field(description="The provider's id, or `sha256:<hex>` of the body.")
    event_type: str
    status: Literal["pending", "handled", "ignored", "dead"]
    attempts: int = Field(description="Handling tries so far (reset by a replay).")
    last_error: str | None
    received_at: datetime
    next_attempt_at: datetime | None
    handled_at: datetime | None
    replayed_at: datetime | None
    source_ip: str | None
    headers: dict[str, Any] = Field(description="The headers kept (never a signature or token).")
    body: str = Field(description="The raw body as received (UTF-8; invalid bytes as U+FFFD).")


class ProviderWebhookList(BaseModel):
    data: list[ProviderWebhook]
    has_more: bool
