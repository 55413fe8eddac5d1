"""The client for Rain's card-issuing API: `{RAIN_API_URL}/v1/issuing`, header `Api-Key`.

Each call has `RAIN_TIMEOUT_S`; an answer 429 or 5xx, or a connection that could not be made
(nothing was sent), is tried again up to `RAIN_MAX_RETRIES` times with backoff (a 429's
`Retry-After` is honoured up to a few seconds). Any other 4xx is never retried: 400/404/409/422
become `RainRejected` (422 for the merchant, with Rain's status but not its text, which may
echo personal data), 401/403 and everything left after the retries `RainUnavailable` (502).
A read that timed out is not retried either: Rain may have acted on it.

What Rain answers goes through `redaction.scrub` before anyone keeps or logs it, so a card
number, CVC or PIN (or an encrypted one) never leaves this module. The API key never appears
in a message or a log line."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
import structlog

from nespay.cards.redaction import scrub
from nespay.config import Settings
from nespay.errors import NespayError

log = structlog.get_logger("nespay.cards.rain")

ISSUING = "/v1/issuing"
BACKOFF_S = (0.2, 1.0, 3.0)
MAX_RETRY_AFTER_S = 3.0


class RainNotConfigured(NespayError):
    status_code = 503
    code = "card_issuing_not_configured"
    message = "Card issuing is not configured (RAIN_API_KEY is not set)."


class RainUnavailable(NespayError):
    status_code = 502
    code = "card_provider_unavailable"
    message = "The card issuer did not answer; try again shortly."


class RainRejected(NespayError):
    status_code = 422
    code = "card_provider_rejected"
    message = "The card issuer refused the request."

    def __init__(self, status: int, message: str | None = None) -> None:
        super().__init__(message or f"The card issuer refused the request (HTTP {status}).")
        self.status = status


def base_url(settings: Settings) -> str:
    """`RAIN_API_URL` with `/v1/issuing` appended (unless it is there already)."""
    url = settings.rain_api_url.rstrip("/")
    return url if url.endswith(ISSUING) else url + ISSUING


class RainClient:
    def __init__(self, settings: Settings, *, http: httpx.AsyncClient | None = None) -> None:
        self._settings = settings
        self._base = base_url(settings)
        self._http = http or httpx.AsyncClient(
            timeout=settings.rain_timeout_s, follow_redirects=False
        )

    async def close(self) -> None:
        await self._http.aclose()

    def _headers(self) -> dict[str, str]:
        key = self._settings.rain_api_key
        if key is None or not key.get_secret_value():
            raise RainNotConfigured()
        return {
            "Api-Key": key.get_secret_value(),
            "Accept": "application/json",
            "Content-Type": "application/json",
        }

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Rain's JSON answer (scrubbed of card data), or `RainRejected` / `RainUnavailable`."""
        headers = self._headers()
        url = self._base + path
        retries = self._settings.rain_max_retries
        for attempt in range(retries + 1):
            wait: float | None = None
            try:
                response = await self._http.request(method, url, json=body, headers=headers)
            except (httpx.ConnectError, httpx.ConnectTimeout) as error:
                failure = type(error).__name__
            except httpx.HTTPError as error:
                # Sent, and perhaps acted on: never sent twice.
                log.warning(
                    "rain_call_failed", method=method, path=_shape(path), error=type(error).__name__
                )
                raise RainUnavailable() from None
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return scrub(_json(response))
                if status != 429 and status < 500:
                    return self._refused(method, path, status)
                failure = f"HTTP {status}"
                wait = _retry_after(response) if status == 429 else None
            if attempt == retries:
                break
            delay = wait if wait is not None else BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
            log.info("rain_call_retried", method=method, path=_shape(path), failure=failure)
            await asyncio.sleep(delay * (0.8 + 0.4 * random.random()))  # noqa: S311 - jitter
        log.warning("rain_call_failed", method=method, path=_shape(path), error=failure)
        raise RainUnavailable()

    def _refused(self, method: str, path: str, status: int) -> Any:
        log.warning("rain_call_refused", method=method, path=_shape(path), status=status)
        if status in (401, 403):
            raise RainUnavailable(
                f"The card issuer refused our credentials (HTTP {status}); an operator checks "
                "RAIN_API_KEY."
            )
        raise RainRejected(status)

    # --- the calls Nespay makes ------------------------------------------------------------

    async def create_user_application(self, application: dict[str, Any]) -> dict[str, Any]:
        return await self.call("POST", "/applications/user", application)

    async def get_user_application(self, user_id: str) -> dict[str, Any]:
        return await self.call("GET", f"/applications/user/{_segment(user_id)}")

    async def create_card(self, user_id: str, card: dict[str, Any]) -> dict[str, Any]:
        return await self.call("POST", f"/users/{_segment(user_id)}/cards", card)

    async def update_card(self, card_id: str, change: dict[str, Any]) -> dict[str, Any]:
        return await self.call("PATCH", f"/cards/{_segment(card_id)}", change)

    async def get_balances(self, user_id: str) -> dict[str, Any]:
        return await self.call("GET", f"/users/{_segment(user_id)}/balances")


def _segment(value: str) -> str:
    """An id as one path segment (Rain's ids are UUIDs; anything else is refused here)."""
    if not value or any(c in value for c in "/?#%\\") or len(value) > 100:
        raise RainRejected(400, "The card issuer's id is malformed.")
    return value


def _shape(path: str) -> str:
    """The path without its ids, for logs (`/users/{id}/cards`)."""
    parts = path.split("/")
    return "/".join(
        part if part in ("", "applications", "user", "users", "cards", "balances") else "{id}"
        for part in parts
    )


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        log.warning("rain_answer_not_json", status=response.status_code)
        raise RainUnavailable("The card issuer's answer could not be read.") from None


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return min(MAX_RETRY_AFTER_S, max(0.0, float(response.headers.get("retry-after", ""))))
    except ValueError:
        return None
