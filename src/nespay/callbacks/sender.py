"""One POST of a callback: 10 s for the whole exchange, no redirects, the first 2 KB of the
answer kept and the rest never read, and the SSRF guard applied to the address actually
connected to (so a name that resolves somewhere harmless at registration and to 127.0.0.1 or
169.254.169.254 at delivery, DNS rebinding, is still refused before a byte is sent)."""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog

from nespay.callbacks.ssrf import CallbackUrlRefused, forbidden_address
from nespay.config import Settings

log = structlog.get_logger("nespay.callbacks")

TIMEOUT_S = 10.0
EXCERPT_BYTES = 2048
USER_AGENT = "Nespay-Webhooks/1 (+https://www.standardwebhooks.com/)"


@dataclass(frozen=True, slots=True)
class AttemptResult:
    status_code: int | None
    latency_ms: int
    excerpt: str | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class CallbackSender:
    """Holds the process's HTTP client for callbacks (keep-alive across deliveries)."""

    def __init__(self, settings: Settings, *, timeout_s: float = TIMEOUT_S) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self.client = httpx.AsyncClient(
            follow_redirects=False,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=256),
            headers={"user-agent": USER_AGENT},
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> AttemptResult:
        started = time.perf_counter()
        status: int | None = None
        excerpt: str | None = None
        error: str | None = None
        try:
            static_check(url, self.settings)
            async with self.client.stream(
                "POST",
                url,
                content=body,
                headers=headers,
                timeout=self.timeout_s,
                extensions=self._extensions(),
            ) as response:
                status = response.status_code
                excerpt = await _excerpt(response)
                if response.is_redirect:
                    error = "redirect not followed (callbacks must answer 2xx themselves)"
        except CallbackUrlRefused as refused:
            error = refused.message
        except httpx.TimeoutException:
            error = f"no answer within {self.timeout_s:g} s"
        except httpx.HTTPError as failure:
            error = f"{type(failure).__name__}: {failure}"[:500]
        except OSError as failure:  # raised below httpx by some connection failures
            error = f"{type(failure).__name__}: {failure}"[:500]
        latency_ms = int((time.perf_counter() - started) * 1000)
        return AttemptResult(status, latency_ms, excerpt, error)

    def _extensions(self) -> dict[str, Any]:
        if self.settings.callback_allow_private_urls:
            return {}
        return {"trace": _guard_connected_address}


def static_check(url: str, settings: Settings) -> None:
    """What can be checked without DNS (the address check happens on connect)."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise CallbackUrlRefused("The callback URL must be an absolute http(s) URL.")
    if settings.app_env == "production" and parts.scheme != "https":
        raise CallbackUrlRefused("Callback URLs must use https.")


async def _guard_connected_address(event: str, info: dict[str, Any]) -> None:
    """httpcore trace hook: refuse a connection whose peer is private, loopback, link-local,
    metadata or reserved, after it is made and before the request is written."""
    if event != "connection.connect_tcp.complete":
        return
    stream = info.get("return_value")
    if stream is None:
        return
    peer = stream.get_extra_info("server_addr")
    address = ipaddress.ip_address(str(peer[0]).split("%")[0]) if peer else None
    if address is None or forbidden_address(address):
        await stream.aclose()
        log.warning("callback_address_refused", address=str(address))
        raise CallbackUrlRefused(
            "The callback URL resolved to a private, loopback, link-local or reserved address "
            "at delivery; refused."
        )


async def _excerpt(response: httpx.Response) -> str:
    """The first 2 KB of the raw body; the rest is never read (closing the stream drops the
    connection, so a 100 MB answer costs 2 KB)."""
    kept = bytearray()
    async for chunk in response.aiter_raw():
        kept += chunk
        if len(kept) >= EXCERPT_BYTES:
            break
    return bytes(kept[:EXCERPT_BYTES]).decode("utf-8", errors="replace")
