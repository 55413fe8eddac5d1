"""Pricing in fiat: which rate applies, and turning a fiat price into base units.

`get_rate(session, settings, base, quote)` is the price of 1 `base` in `quote`, decided in
this order:

1. the same code: 1;
2. a direct row, trying the sources of `RATES_SOURCES` in order; a fetched row counts only
   while younger than `RATES_MAX_AGE_S`, an `admin` row always (an admin-set rate is a
   deliberate override that stays until an admin changes or deletes it);
3. a stablecoin's peg (`STABLECOIN_PEGS`, e.g. USDT=USD:1) when priced in its peg currency;
4. a cross via USD: `base`→USD (2 or 3) × USD→`quote`, where USD→`quote` is a direct row or,
   per source in order, derived from any coin that source priced in both (X/quote ÷ X/USD).

Nothing fits → `RatesUnavailable` (503). Every rate returned has at most 18 decimal places
(what `NUMERIC(38, 18)` stores), so a locked rate read back is the rate that was used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from nespay.audit.service import record
from nespay.auth.principals import Actor
from nespay.config import Settings
from nespay.errors import NespayError, NotFound, ServiceUnavailable
from nespay.rates import repository
from nespay.rates.repository import RateRow
from nespay.rates.sources import ADMIN, RATE_LIMIT, RATE_QUANTUM

USD = "USD"
ONE = Decimal(1)
CODE = re.compile(r"[A-Z0-9]{2,16}")
_WIDE = Context(prec=80)


class RatesUnavailable(ServiceUnavailable):
    code = "rates_unavailable"
    message = (
        "No usable exchange rate: fiat-priced invoices need one. Check that the rates.refresh "
        "job runs and its sources (RATES_SOURCES) answer, or set a rate in the backoffice."
    )


class InvalidRate(NespayError):
    status_code = 422
    code = "invalid_rate"
    message = "A rate is a positive decimal with at most 20 digits before the point and 18 after."


class RateNotFound(NotFound):
    code = "rate_not_found"
    message = "No admin-set rate for this pair."


def parse_pegs(settings: Settings) -> dict[str, tuple[str, Decimal]]:
    """`USDT=USD:1` → {"USDT": ("USD", Decimal("1"))}."""
    pegs: dict[str, tuple[str, Decimal]] = {}
    for item in settings.stablecoin_pegs:
        code, _, rest = item.partition("=")
        fiat, _, value = rest.partition(":")
        pegs[code] = (fiat, Decimal(value))
    return pegs


def _quantized(value: Decimal) -> Decimal:
    return value.quantize(RATE_QUANTUM, rounding=ROUND_HALF_EVEN, context=_WIDE)


@dataclass
class _Book:
    """The usable rows, by source in preference order."""

    order: list[str]
    rows: dict[str, dict[tuple[str, str], Decimal]]
    usd_stablecoins: frozenset[str]

    def direct(self, base: str, quote: str) -> Decimal | None:
        for source in self.order:
            rate = self.rows[source].get((base, quote))
            if rate is not None:
                return rate
        return None

    def usd_to(self, quote: str) -> Decimal | None:
        """USD→quote: per source in order, a direct row or one derived from a coin priced in
        both (stablecoins first, then by code, so the choice is stable)."""
        for source in self.order:
            rows = self.rows[source]
            rate = rows.get((USD, quote))
            if rate is not None:
                return rate
            coins = sorted(
                {base for base, q in rows if q == quote and (base, USD) in rows and base != USD},
                key=lambda code: (code not in self.usd_stablecoins, code),
            )
            if coins:
                with localcontext(_WIDE):
                    return rows[(coins[0], quote)] / rows[(coins[0], USD)]
        return None


async def _book(
    session: AsyncSession, settings: Settings, quote: str, pegs: dict[str, tuple[str, Decimal]]
) -> _Book:
    order = list(dict.fromkeys(settings.rates_sources))
    rows: dict[str, dict[tuple[str, str], Decimal]] = {source: {} for source in order}
    found = await repository.usable(session, order, settings.rates_max_age_s, {quote, USD})
    for row in found:
        rows[row.source][(row.base, row.quote)] = row.rate
    stable = frozenset(code for code, (fiat, _) in pegs.items() if fiat == USD)
    return _Book(order, rows, stable)


async def get_rate(session: AsyncSession, settings: Settings, base: str, quote: str) -> Decimal:
    """The price of 1 `base` in `quote` (see the module's docstring for the order)."""
    base, quote = base.strip().upper(), quote.strip().upper()
    if base == quote:
        return ONE
    pegs = parse_pegs(settings)
    book = await _book(session, settings, quote, pegs)

    def direct_or_peg(code: str, target: str) -> Decimal | None:
        rate = book.direct(code, target)
        if rate is None and code in pegs and pegs[code][0] == target:
            rate = pegs[code][1]
        return rate

    rate = direct_or_peg(base, quote)
    if rate is None and quote != USD:
        leg = ONE if base == USD else direct_or_peg(base, USD)
        usd_to_quote = book.usd_to(quote) if leg is not None else None
        if leg is not None and usd_to_quote is not None:
            with localcontext(_WIDE):
                rate = leg * usd_to_quote
    if rate is None:
        raise RatesUnavailable(
            f"No usable exchange rate for {base}→{quote}: fiat-priced invoices need one. "
            "Check that the rates.refresh job runs and its sources (RATES_SOURCES) answer, "
            "or set a rate in the backoffice."
        )
    rate = _quantized(rate)
    if rate <= 0:
        raise RatesUnavailable(f"The exchange rate for {base}→{quote} rounds to zero.")
    return rate


def convert(amount: Decimal, rate: Decimal, decimals: int) -> int:
    """`amount` (priced in the rate's quote currency) → base units of the rate's base
    currency, rounded up so the merchant is never short: ceil(amount / rate × 10^decimals).

    `rate` is `get_rate(currency, price_currency)`, e.g. 16234.5 (IDR per USDT): 1 IDR with
    6 decimals → ceil(61.597…) = 62 units. Exact integer arithmetic, no float anywhere."""
    if not isinstance(amount, Decimal) or not isinstance(rate, Decimal):
        raise TypeError("amount and rate must be Decimal (money is never a float)")
    if not amount.is_finite() or amount < 0:
        raise ValueError("amount must be a finite, non-negative Decimal")
    if not rate.is_finite() or rate <= 0:
        raise ValueError("rate must be a finite, positive Decimal")
    if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 36:
        raise ValueError("decimals must be an integer between 0 and 36")
    amount_num, amount_den = amount.as_integer_ratio()
    rate_num, rate_den = rate.as_integer_ratio()
    numerator = amount_num * rate_den * 10**decimals
    denominator = amount_den * rate_num
    return -(-numerator // denominator)


def parse_code(value: str) -> str:
    code = value.strip().upper()
    if not CODE.fullmatch(code):
        raise InvalidRate("A currency code is 2 to 16 letters or digits, e.g. USDT or IDR.")
    return code


def check_rate(rate: Decimal) -> Decimal:
    """A rate an admin may set: positive, finite, exactly storable in NUMERIC(38, 18)."""
    if not isinstance(rate, Decimal) or not rate.is_finite() or rate <= 0 or rate >= RATE_LIMIT:
        raise InvalidRate()
    stored = rate.quantize(RATE_QUANTUM, context=_WIDE)
    if stored != rate:
        raise InvalidRate()
    return stored


def _audit_view(row: RateRow | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "rate": format_rate(row.rate),
        "fetched_at": row.fetched_at.isoformat(),
        "updated_by": row.updated_by,
    }


def format_rate(rate: Decimal) -> str:
    """A rate as a plain decimal string without trailing zeros (`16250.5`, `100`)."""
    text = format(rate, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


async def set_admin_rate(
    session: AsyncSession, actor: Actor, base: str, quote: str, rate: Decimal
) -> RateRow:
    """Set (or replace) the `admin` row for base/quote, audit-logged as `rate.set`."""
    base, quote = parse_code(base), parse_code(quote)
    if base == quote:
        raise InvalidRate("A currency is always worth 1 of itself; no rate is needed.")
    rate = check_rate(rate)
    before = await repository.get(session, base, quote, ADMIN)
    await repository.upsert(session, ADMIN, {(base, quote): rate}, (actor.id or actor.type)[:100])
    after = await repository.get(session, base, quote, ADMIN)
    assert after is not None
    await record(
        session,
        actor,
        "rate.set",
        target_type="rate",
        target_id=f"{base}/{quote}",
        before=_audit_view(before),
        after=_audit_view(after),
    )
    return after


async def delete_admin_rate(session: AsyncSession, actor: Actor, base: str, quote: str) -> None:
    """Remove an admin override (the fetched sources apply again), audit-logged."""
    base, quote = parse_code(base), parse_code(quote)
    before = await repository.get(session, base, quote, ADMIN)
    if before is None or not await repository.remove(session, base, quote, ADMIN):
        raise RateNotFound(f"No admin-set rate for {base}/{quote}.")
    await record(
        session,
        actor,
        "rate.delete",
        target_type="rate",
        target_id=f"{base}/{quote}",
        before=_audit_view(before),
    )
