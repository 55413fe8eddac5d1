"""All SQL of rates. One row per (base, quote, source): a refresh overwrites its own rows,
so that row is the freshest that source has. Ages are measured on the database's clock
(`now()`), the same clock that stamps `fetched_at`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import delete, func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from nespay.models import Currency, Network, Rate
from nespay.rates.sources import ADMIN, Pair


@dataclass(frozen=True)
class RateRow:
    base: str
    quote: str
    source: str
    rate: Decimal
    fetched_at: datetime
    updated_by: str | None
    age_s: int


def _age_s():
    return func.floor(func.extract("epoch", func.now() - Rate.fetched_at))


def _row(rate: Rate, age: Decimal | float | int | None) -> RateRow:
    return RateRow(
        rate.base,
        rate.quote,
        rate.source,
        rate.rate,
        rate.fetched_at,
        rate.updated_by,
        max(int(age or 0), 0),
    )


async def upsert(
    session: AsyncSession, source: str, rates: Mapping[Pair, Decimal], updated_by: str | None
) -> int:
    """Write `rates` as `source`'s rows, stamped now; returns how many."""
    if not rates:
        return 0
    values = [
        {"base": base, "quote": quote, "source": source, "rate": rate, "updated_by": updated_by}
        for (base, quote), rate in sorted(rates.items())
    ]
    statement = insert(Rate).values(values)
    statement = statement.on_conflict_do_update(
        index_elements=[Rate.base, Rate.quote, Rate.source],
        set_={
            "rate": statement.excluded.rate,
            "fetched_at": func.now(),
            "updated_by": statement.excluded.updated_by,
        },
    )
    await session.execute(statement)
    return len(values)


async def usable(
    session: AsyncSession, sources: Iterable[str], max_age_s: int, quotes: Iterable[str]
) -> list[RateRow]:
    """Rows of `sources` quoted in one of `quotes` that may be used now: younger than
    `max_age_s`, or set by an admin (those never expire)."""
    query = (
        select(Rate, _age_s())
        .where(Rate.source.in_(list(sources)), Rate.quote.in_(list(quotes)))
        .where(
            or_(
                Rate.source == ADMIN,
                Rate.fetched_at > func.now() - timedelta(seconds=max_age_s),
            )
        )
    )
    return [_row(rate, age) for rate, age in (await session.execute(query)).all()]


async def list_all(session: AsyncSession) -> list[RateRow]:
    query = select(Rate, _age_s()).order_by(Rate.base, Rate.quote, Rate.source)
    return [_row(rate, age) for rate, age in (await session.execute(query)).all()]


async def get(session: AsyncSession, base: str, quote: str, source: str) -> RateRow | None:
    query = select(Rate, _age_s()).where(
        Rate.base == base, Rate.quote == quote, Rate.source == source
    )
    found = (await session.execute(query)).one_or_none()
    return None if found is None else _row(*found)


async def remove(session: AsyncSession, base: str, quote: str, source: str) -> bool:
    result = await session.execute(
        delete(Rate).where(Rate.base == base, Rate.quote == quote, Rate.source == source)
    )
    return bool(result.rowcount)


async def enabled_currency_codes(session: AsyncSession) -> Sequence[str]:
    """Codes of the currencies accepted now: enabled, on an enabled network."""
    query = (
        select(Currency.code)
        .join(Network, Network.code == Currency.network_code)
        .where(Currency.enabled, Network.enabled)
        .distinct()
        .order_by(Currency.code)
    )
    return (await session.scalars(query)).all()
