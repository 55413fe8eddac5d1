"""`rates.refresh`: fetch every enabled currency's price in the fiats we price invoices in,
from each fetching source of `RATES_SOURCES`, and store them.

No transaction is held open across the network calls: read the currencies, fetch, then write.
A source that fails this run leaves its previous rows as they were (they age out after
`RATES_MAX_AGE_S`); one that answers 429 is not asked again before its Retry-After. The run
fails (and the job status says why) only when every fetching source failed. An outage is one
warning line when the source starts failing and one info line when it answers again, however
many runs it lasts (a machine offline must not log a traceback every five minutes).
"""

from __future__ import annotations

import time
from decimal import Decimal

import httpx
import structlog

from nespay.jobs.registry import JobFailed
from nespay.rates import repository
from nespay.rates.sources import (
    Pair,
    RateSource,
    RateSourceError,
    RateSourceLimited,
    fetching_sources,
)
from nespay.runtime import Runtime

log = structlog.get_logger("nespay.rates")

# Fiats invoices may be priced in; each enabled currency is fetched in every one of them.
FIATS: tuple[str, ...] = ("USD", "IDR", "EUR")
UPDATED_BY = "rates.refresh"


class RatesRefreshFailed(JobFailed):
    pass


class Cooldowns:
    """Per-source "not before" times after a 429, in this process (monotonic clock)."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def remaining(self, source: str) -> float:
        return max(self._until.get(source, 0.0) - time.monotonic(), 0.0)

    def start(self, source: str, seconds: float) -> None:
        self._until[source] = time.monotonic() + seconds

    def clear(self) -> None:
        self._until.clear()


cooldowns = Cooldowns()


class Outages:
    """Per source, since when it has been failing in this process: a warning as an outage
    starts, an info line as it ends, nothing in between."""

    def __init__(self) -> None:
        self._since: dict[str, float] = {}

    def failed(self, source: str, error: str) -> None:
        if source not in self._since:
            self._since[source] = time.monotonic()
            log.warning("rates_source_down", source=source, error=error)

    def answered(self, source: str) -> None:
        since = self._since.pop(source, None)
        if since is not None:
            down_for = round(time.monotonic() - since)
            log.info("rates_source_recovered", source=source, down_for_s=down_for)

    def clear(self) -> None:
        self._since.clear()


outages = Outages()


def pairs_for(codes: list[str] | tuple[str, ...]) -> list[Pair]:
    return [(code, fiat) for code in codes for fiat in FIATS if code != fiat]


async def refresh_rates(runtime: Runtime) -> str:
    """The `rates.refresh` job."""
    async with runtime.db.session() as session:
        codes = list(await repository.enabled_currency_codes(session))
    if not codes:
        return "no enabled currencies"
    async with httpx.AsyncClient(follow_redirects=False) as http:
        sources = fetching_sources(runtime.settings, http)
        if not sources:
            return "no fetching source in RATES_SOURCES (admin rates only)"
        fetched, failures = await fetch_all(sources, pairs_for(codes))
    written: list[str] = []
    async with runtime.db.session() as session:
        for name, rates in fetched.items():
            count = await repository.upsert(session, name, rates, UPDATED_BY)
            written.append(f"{name}: {count} rates")
    summary = "; ".join(written + failures)
    if not fetched:
        raise RatesRefreshFailed(summary)
    return summary


async def fetch_all(
    sources: list[RateSource], pairs: list[Pair]
) -> tuple[dict[str, dict[Pair, Decimal]], list[str]]:
    """Each source's answer (by name), and a line per source that gave none."""
    fetched: dict[str, dict[Pair, Decimal]] = {}
    failures: list[str] = []
    for source in sources:
        wait = cooldowns.remaining(source.name)
        if wait > 0:
            failures.append(f"{source.name}: skipped, rate-limited for {wait:.0f}s more")
            continue
        try:
            rates = await source.fetch(pairs)
        except RateSourceLimited as error:
            cooldowns.start(source.name, error.retry_after_s)
            failures.append(f"{source.name}: {error}")
            outages.failed(source.name, str(error))
        except RateSourceError as error:
            failures.append(f"{source.name}: {error}")
            outages.failed(source.name, str(error))
        else:
            outages.answered(source.name)
            if rates:
                fetched[source.name] = rates
            else:
                failures.append(f"{source.name}: no prices for the enabled currencies")
    return fetched, failures
