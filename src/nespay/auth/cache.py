"""An in-process cache of who a credential is (API key prefix or Cognito `sub` → principal and
the merchant's invoice settings), so an authenticated request needs no database query.

Revocation takes effect at once on every replica: a write that changes who a credential is
(a key revoked, a merchant suspended, a user removed, merchant settings changed) marks its
session (`mark_changed`); after the commit the request's session dependency bumps a generation
counter in Redis and clears this process's cache. Every authenticated request reads that
generation in the same Redis round trip as its rate-limit counters (`RedisService.hits`), and an
entry is used only when it was made under the generation Redis still holds. An entry is tagged
with the generation known *before* its database read, so a change that commits while the read
runs is caught by the next request's generation check.

Without Redis (disabled, or degraded) there is no shared generation, so nothing is served from
the cache: every request reads the database, as before. A bump that Redis did not take is
repeated when Redis is back, and entries live at most `TTL_S` whatever happens.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from nespay.auth.principals import Principal

GENERATION_KEY = "auth:generation"
TTL_S = 60.0
MAX_ENTRIES = 10_000
CHANGED = "nespay_auth_changed"


@dataclass(frozen=True)
class MerchantSettings:
    """What invoice creation needs from the merchant row."""

    default_expiry_s: int
    underpayment_tolerance_bps: int


@dataclass
class Entry:
    principal: Principal
    settings: MerchantSettings | None
    generation: bytes | None
    made_at: float
    # API keys only: what the per-request checks need without the database.
    secret_hash: bytes = b""
    expires_at: datetime | None = None
    last_used_at: datetime | None = None


class PrincipalCache:
    def __init__(self, ttl_s: float = TTL_S, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.generation: bytes | None = None  # the last one Redis told us; None: unknown
        self._entries: OrderedDict[str, Entry] = OrderedDict()

    def get(self, key: str) -> Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if time.monotonic() - entry.made_at >= self.ttl_s:
            del self._entries[key]
            return None
        return entry

    def put(self, key: str, entry: Entry) -> None:
        if entry.generation is None:
            return  # made while the generation was unknown: nothing could invalidate it
        self._entries[key] = entry
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def observe(self, value: bytes | None, known: bool) -> None:
        """The generation Redis holds now (`known` false: Redis did not answer). A change
        drops every entry; an unknown generation disables the cache until Redis answers."""
        current = (value or b"0") if known else None
        if current is None or current != self.generation:
            self._entries.clear()
        self.generation = current

    def valid(self, entry: Entry) -> bool:
        """Whether `entry` may be trusted after `observe` (its generation is still current)."""
        return entry.generation is not None and entry.generation == self.generation

    def clear(self) -> None:
        self._entries.clear()


def mark_changed(session: AsyncSession) -> None:
    """Call from a write that changes who a credential is; the edge invalidates after commit."""
    session.info[CHANGED] = True
