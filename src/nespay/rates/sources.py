"""Where rates come from: pluggable sources behind `RateSource`.

A source answers "price of 1 `base` in `quote`" for the pairs it is asked, and leaves out the
pairs it does not know. Prices are parsed straight into `Decimal` (never through a float) and
cut to the table's 18 decimal places. A source that cannot answer this run raises
`RateSourceError`; a 429 raises `RateSourceLimited` carrying the server's Retry-After.

`admin` is a source name too (rows set in the backoffice), but it fetches nothing: it is not
in `FETCHERS`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from nespay.config import Settings

Pair = tuple[str, str]
ADMIN = "admin"
RATE_QUANTUM = Decimal("1e-18")  # NUMERIC(38, 18)
RATE_LIMIT = Decimal("1e20")  # 20 integer digits fit NUMERIC(38, 18)
DEFAULT_RETRY_AFTER_S = 60.0
MAX_RETRY_AFTER_S = 3600.0
TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class RateSourceError(Exception):
    """The source gave no usable answer this run (down, refused, malformed)."""


class RateSourceLimited(RateSourceError):
    """HTTP 429: do not ask again before `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RateSource(Protocol):
    name: str

    async def fetch(self, pairs: Iterable[Pair]) -> dict[Pair, Decimal]: ...


def storable(value: Any) -> Decimal | None:
    """`value` as a positive rate at the table's scale, or None if it is not one."""
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        return None  # floats never get here: JSON is parsed with parse_float=Decimal
    try:
        rate = Decimal(value).quantize(RATE_QUANTUM)
    except InvalidOperation:
        return None
    if not rate.is_finite() or rate <= 0 or rate >= RATE_LIMIT:
        return None
    return rate


def retry_after_s(header: str | None, now: datetime | None = None) -> float:
    """Retry-After in seconds (delta-seconds or an HTTP date), capped at an hour."""
    if header:
        header = header.strip()
        try:
            seconds = float(int(header))
        except ValueError:
            try:
                moment = parsedate_to_datetime(header)
            except (TypeError, ValueError):
                return DEFAULT_RETRY_AFTER_S
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            seconds = (moment - (now or datetime.now(UTC))).total_seconds()
        return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
    return DEFAULT_RETRY_AFTER_S


# Our currency codes → CoinGecko coin ids.
COINGECKO_IDS: dict[str, str] = {
    "USDT": "tether",
    "USDC": "usd-coin",
    "ETH": "ethereum",
    "BNB": "binancecoin",
    "POL": "polygon-ecosystem-token",
    "TRX": "tron",
}


def coingecko_headers(settings: Settings) -> dict[str, str]:
    headers = {"accept": "application/json"}
    if settings.coingecko_api_key is not None:
        host = urlsplit(settings.coingecko_api_url).hostname or ""
        name = "x-cg-pro-api-key" if "pro-api" in host else "x-cg-demo-api-key"
        headers[name] = settings.coingecko_api_key.get_secret_value()
    return headers


class CoinGeckoSource:
    """`GET /api/v3/simple/price?ids=…&vs_currencies=…&precision=full`, one request a run."""

    name = "coingecko"

    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self.url = settings.coingecko_api_url.rstrip("/") + "/api/v3/simple/price"
        self.headers = coingecko_headers(settings)
        self.http = http

    async def fetch(self, pairs: Iterable[Pair]) -> dict[Pair, Decimal]:
        wanted = [(base, quote) for base, quote in pairs if base in COINGECKO_IDS]
        if not wanted:
            return {}
        ids = sorted({COINGECKO_IDS[base] for base, _ in wanted})
        fiats = sorted({quote.lower() for _, quote in wanted})
        params = {"ids": ",".join(ids), "vs_currencies": ",".join(fiats), "precision": "full"}
        try:
            response = await self.http.get(
                self.url, params=params, headers=self.headers, timeout=TIMEOUT
            )
        except httpx.HTTPError as error:
            raise RateSourceError(f"coingecko unreachable: {type(error).__name__}") from None
        if response.status_code == 429:
            wait = retry_after_s(response.headers.get("retry-after"))
            raise RateSourceLimited(f"coingecko rate-limited us (retry after {wait:g}s)", wait)
        if response.status_code != 200:
            raise RateSourceError(f"coingecko answered HTTP {response.status_code}")
        try:
            body = json.loads(response.content, parse_float=Decimal)
        except ValueError:
            raise RateSourceError("coingecko answered with a body that is not JSON") from None
        if not isinstance(body, dict):
            raise RateSourceError("coingecko answered with an unexpected JSON shape")
        found: dict[Pair, Decimal] = {}
        for base, quote in wanted:
            prices = body.get(COINGECKO_IDS[base])
            if isinstance(prices, dict):
                rate = storable(prices.get(quote.lower()))
                if rate is not None:
                    found[(base, quote)] = rate
        return found


FETCHERS: dict[str, type[CoinGeckoSource]] = {"coingecko": CoinGeckoSource}


def fetching_sources(settings: Settings, http: httpx.AsyncClient) -> list[RateSource]:
    """The sources of `RATES_SOURCES` that fetch (all but `admin`), in that order."""
    return [FETCHERS[name](settings, http) for name in settings.rates_sources if name in FETCHERS]
