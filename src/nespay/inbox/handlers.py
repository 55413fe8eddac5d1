"""What handles a stored webhook: one handler per (provider, event type), registered by the
domains that care (cards: Rain's `transaction.*`, `card.*`; fiat: Intrajasa's payments).

A handler runs inside the transaction that stamps the row `handled`: whatever it writes
commits with the stamp or not at all, so a handler that fails (or a process that dies
mid-way) leaves no half-handled webhook. It is called again after a failure and after a
replay, so it must be idempotent on the provider's ids. A webhook with no handler is
`ignored` (stored, acknowledged, logged); so is one whose handler returns "ignored" (it found
nothing to do: say why in a log line). `session.info["runtime"]` is the process's `Runtime`,
for a handler that needs its settings or clients (Intrajasa's status inquiry)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class StoredWebhook:
    id: str
    provider: str
    external_id: str
    event_type: str
    body: bytes
    headers: dict[str, Any]
    received_at: datetime
    attempts: int  # tries before this one


# Returns None (handled) or "ignored".
Handler = Callable[[AsyncSession, StoredWebhook], Awaitable[str | None]]


class HandlerRegistry:
    def __init__(self) -> None:
        self._handlers: dict[tuple[str, str], Handler] = {}

    def register(self, provider: str, event_type: str) -> Callable[[Handler], Handler]:
        """Decorator: `@handlers.register("rain", "card.updated")`."""

        def add(handler: Handler) -> Handler:
            self.add(provider, event_type, handler)
            return handler

        return add

    def add(self, provider: str, event_type: str, handler: Handler) -> None:
        if (provider, event_type) in self._handlers:
            raise ValueError(f"a handler for {provider} {event_type} is already registered")
        self._handlers[(provider, event_type)] = handler

    def remove(self, provider: str, event_type: str) -> None:
        self._handlers.pop((provider, event_type), None)

    def get(self, provider: str, event_type: str) -> Handler | None:
        return self._handlers.get((provider, event_type))

    def handled(self) -> list[tuple[str, str]]:
        """Every (provider, event type) with a handler."""
        return list(self._handlers)


handlers = HandlerRegistry()
