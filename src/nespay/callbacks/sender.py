"""One POST of a callback: 10 s for the whole exchange, no redirects, the first 2 KB of the
answer kept and the rest never read, and the SSRF guard applied to the addresses the request
can actually connect to.

aiohttp, not httpx, on this path: a callback POST is the jobs process's main cost, and
aiohttp's C parser and connection pool cost a fraction of httpx's per request
(docs/benchmarks.md, finding C1). The SSRF guard sits in the resolver: the connector only
ever connects to addresses the resolver returned, and the resolver returns nothing forbidden,
so a name that resolved somewhere harmless at registration and to 127.0.0.1 or
169.254.169.254 at delivery (DNS rebinding) is refused before anything is sent. A URL whose
host is an IP literal never reaches a resolver and is checked directly. With
CALLBACK_ALLOW_PRIVATE_URLS the resolver still refuses metadata addresses (`ssrf.address_rule`).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
import structlog
from aiohttp.resolver import ThreadedResolver

from nespay.callbacks.keys import signing_keys
from nespay.callbacks.messages import envelope
from nespay.callbacks.ssrf import (
    CallbackUrlRefused,
    IPAddress,
    address_rule,
    any_forbidden,
    check_form,
    forbidden_address,
    literal_address,
)
from nespay.config import Settings
from nespay.kit import signing

log = structlog.get_logger("nespay.callbacks")

TIMEOUT_S = 10.0
EXCERPT_BYTES = 2048
USER_AGENT = "Nespay-Webhooks/1 (+https://www.standardwebhooks.com/)"
REFUSED = (
    "The callback URL resolved to a private, loopback, link-local or reserved address, or a "
    "cloud metadata service, at delivery; refused."
)


@dataclass(frozen=True, slots=True)
class AttemptResult:
    status_code: int | None
    latency_ms: int
    excerpt: str | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class GuardedResolver(ThreadedResolver):
    """The system resolver, refusing any name that leads to an address `rule` forbids."""

    def __init__(self, rule: Callable[[IPAddress], bool] = forbidden_address) -> None:
        super().__init__()
        self.rule = rule

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[Any]:
        results = await super().resolve(host, port, family)
        if any_forbidden((result["host"] for result in results), self.rule):
            log.warning("callback_address_refused", host=host)
            raise CallbackUrlRefused(REFUSED)
        return results


class CallbackSender:
    """Holds the process's HTTP client for callbacks (keep-alive across deliveries)."""

    def __init__(self, settings: Settings, *, timeout_s: float = TIMEOUT_S) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use, inside the running loop (aiohttp binds its session to it).
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=0,  # CALLBACK_CONCURRENCY bounds requests in flight
                limit_per_host=64,
                resolver=GuardedResolver(address_rule(self.settings)),
                ttl_dns_cache=30,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"user-agent": USER_AGENT},
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                auto_decompress=False,  # the excerpt is raw bytes; no decompression bombs
                trust_env=False,
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def post_event(
        self,
        *,
        url: str,
        endpoint_id: str,
        secret_encrypted: str,
        previous_secret_encrypted: str | None,
        previous_secret_expires_at: datetime | None,
        now: datetime,
        event_id: str,
        type: str,
        created_at: datetime,
        data: str,
    ) -> AttemptResult:
        """POST an event to an endpoint: its envelope, signed with the endpoint's keys (both
        while a rotated secret is still valid), `webhook-id` = the event id. `data` is the
        event's JSON text."""
        body = envelope(event_id, type, created_at, data)
        keys = signing_keys(
            self.settings,
            endpoint_id,
            secret_encrypted,
            previous_secret_encrypted,
            previous_secret_expires_at,
            now,
        )
        headers = signing.headers(keys, event_id, int(time.time()), body)
        return await self.post(url, body, headers)

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> AttemptResult:
        started = time.perf_counter()
        status: int | None = None
        excerpt: str | None = None
        error: str | None = None
        try:
            static_check(url, self.settings)
            async with self._client().post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                excerpt = await _excerpt(response)
                if 300 <= status < 400:
                    error = "redirect not followed (callbacks must answer 2xx themselves)"
        except CallbackUrlRefused as refused:
            error = refused.message
        except TimeoutError:
            error = f"no answer within {self.timeout_s:g} s"
        except (aiohttp.ClientError, OSError) as failure:
            error = f"{type(failure).__name__}: {failure}"[:500]
        latency_ms = int((time.perf_counter() - started) * 1000)
        return AttemptResult(status, latency_ms, excerpt, error)


def static_check(url: str, settings: Settings) -> None:
    """What is checked before connecting: the URL's form (as at registration), and an
    IP-literal host, which no resolver sees."""
    parts = check_form(url, settings)
    literal = literal_address(parts.hostname or "")  # None for a name: the resolver judges it
    if literal is not None and address_rule(settings)(literal):
        raise CallbackUrlRefused(REFUSED)


async def _excerpt(response: aiohttp.ClientResponse) -> str:
    """The first 2 KB of the raw body; the rest is never read. A body longer than that closes
    the connection (a 100 MB answer costs 2 KB); a short one leaves it for the next POST."""
    kept = bytearray()
    while len(kept) < EXCERPT_BYTES:
        chunk = await response.content.read(EXCERPT_BYTES - len(kept))
        if not chunk:
            break
        kept += chunk
    if not response.content.at_eof():
        response.close()
    return bytes(kept).decode("utf-8", errors="replace")
