"""`get_rate` (source order, freshness, admin overrides, pegs, cross via USD), `convert`, and
setting an admin rate. Rows are written inside the test's rolled-back transaction."""

from decimal import Decimal

import pytest
from sqlalchemy import select

from nespay.auth.principals import Actor
from nespay.errors import ServiceUnavailable
from nespay.models import AuditLog
from nespay.rates.service import (
    InvalidRate,
    RatesUnavailable,
    convert,
    get_rate,
    set_admin_rate,
)
from tests.fixtures.database import make_settings


@pytest.fixture
def settings_for(database_url):
    def build(sources=("admin", "coingecko"), **overrides):
        return make_settings(
            database_url, rates_sources=list(sources), rates_max_age_s=900, **overrides
        )

    return build


# --- source order and freshness -----------------------------------------------------------
async def test_the_first_source_in_rates_sources_wins(session, rates_table, settings_for):
    await rates_table("USDT", "IDR", "admin", "16000")
    await rates_table("USDT", "IDR", "coingecko", "16234.5")
    admin_first = settings_for(("admin", "coingecko"))
    coingecko_first = settings_for(("coingecko", "admin"))
    assert await get_rate(session, admin_first, "USDT", "IDR") == Decimal("16000")
    assert await get_rate(session, coingecko_first, "USDT", "IDR") == Decimal("16234.5")


async def test_stale_rows_are_ignored_and_fresh_ones_used(session, rates_table, settings_for):
    await rates_table("USDT", "IDR", "coingecko", "16234.5", age_s=901)
    await rates_table("ETH", "IDR", "coingecko", "56000000", age_s=899)
    settings = settings_for()
    with pytest.raises(RatesUnavailable):
        await get_rate(session, settings, "USDT", "IDR")
    assert await get_rate(session, settings, "ETH", "IDR") == Decimal("56000000")


async def test_a_fresh_lower_source_is_used_when_the_first_is_stale(
    session, rates_table, settings_for
):
    await rates_table("USDT", "IDR", "coingecko", "16234.5", age_s=5000)
    await rates_table("USDT", "IDR", "admin", "16100")
    assert await get_rate(session, settings_for(("coingecko", "admin")), "USDT", "IDR") == 16100


async def test_an_admin_rate_never_expires_and_overrides_when_first(
    session, rates_table, settings_for
):
    await rates_table("USDT", "IDR", "admin", "16000", age_s=30 * 86400)
    await rates_table("USDT", "IDR", "coingecko", "16234.5")
    assert await get_rate(session, settings_for(), "USDT", "IDR") == Decimal("16000")


async def test_admin_rows_are_ignored_when_admin_is_not_a_source(
    session, rates_table, settings_for
):
    await rates_table("USDT", "IDR", "admin", "16000")
    with pytest.raises(RatesUnavailable):
        await get_rate(session, settings_for(("coingecko",)), "USDT", "IDR")


# --- pegs ---------------------------------------------------------------------------------
async def test_a_stablecoin_is_at_its_peg_when_no_source_prices_it(
    session, rates_table, settings_for
):
    settings = settings_for()
    await rates_table("USDT", "USD", "coingecko", "0.97", age_s=901)  # stale
    assert await get_rate(session, settings, "USDT", "USD") == Decimal(1)
    assert await get_rate(session, settings, "usdc", "usd") == Decimal(1)
    with pytest.raises(RatesUnavailable):
        await get_rate(session, settings, "ETH", "USD")  # no peg for a non-stablecoin
    with pytest.raises(RatesUnavailable):
        await get_rate(session, settings, "USDT", "EUR")  # pegged to USD, not EUR


async def test_a_fresh_source_beats_the_peg(session, rates_table, settings_for):
    await rates_table("USDT", "USD", "coingecko", "0.9998")
    assert await get_rate(session, settings_for(), "USDT", "USD") == Decimal("0.9998")


async def test_configured_peg_values_apply(session, rates_table, settings_for):
    settings = settings_for(stablecoin_pegs=["USDT=USD:1.0005", "EURC=EUR:1"])
    assert await get_rate(session, settings, "USDT", "USD") == Decimal("1.0005")
    assert await get_rate(session, settings, "EURC", "EUR") == Decimal(1)


# --- cross via USD ------------------------------------------------------------------------
async def test_cross_via_usd_when_the_direct_pair_is_missing(session, rates_table, settings_for):
    await rates_table("USDT", "USD", "coingecko", "1.0001")
    await rates_table("USDC", "USD", "coingecko", "1")
    await rates_table("USDC", "IDR", "coingecko", "16250")
    # USDT→IDR = USDT→USD × USD→IDR, USD→IDR = USDC/IDR ÷ USDC/USD
    assert await get_rate(session, settings_for(), "USDT", "IDR") == Decimal("16251.625")


async def test_cross_result_is_cut_to_18_places(session, rates_table, settings_for):
    await rates_table("USDC", "USD", "coingecko", "0.9999")
    await rates_table("USDC", "IDR", "coingecko", "16000")
    settings = settings_for()
    # USDT has no row: its peg (1) × 16000 / 0.9999
    assert await get_rate(session, settings, "USDT", "IDR") == Decimal("16001.600160016001600160")
    assert await get_rate(session, settings, "USD", "IDR") == Decimal("16001.600160016001600160")


async def test_usd_to_fiat_is_derived_from_tether(session, rates_table, settings_for):
    await rates_table("USDT", "IDR", "coingecko", "16234.5")
    await rates_table("USDT", "USD", "coingecko", "1.0001")
    await rates_table("ETH", "USD", "coingecko", "3000")
    # ETH has no IDR row: ETH→USD × (USDT/IDR ÷ USDT/USD)
    expected = (Decimal(3000) * Decimal("16234.5") / Decimal("1.0001")).quantize(Decimal("1e-18"))
    assert await get_rate(session, settings_for(), "ETH", "IDR") == expected
    assert await get_rate(session, settings_for(), "USD", "IDR") == Decimal(
        "16232.876712328767123288"
    )


async def test_an_admin_usd_rate_and_a_peg_price_a_stablecoin(session, rates_table, settings_for):
    await rates_table("USD", "IDR", "admin", "16300")
    settings = settings_for()
    assert await get_rate(session, settings, "USDT", "IDR") == Decimal("16300")
    assert await get_rate(session, settings, "USD", "IDR") == Decimal("16300")


# --- nothing fits ---------------------------------------------------------------------------
async def test_every_source_down_means_503_for_fiat_but_same_code_is_still_one(
    session, rates_table, settings_for
):
    await rates_table("USDT", "IDR", "coingecko", "16234.5", age_s=3600)
    await rates_table("USDT", "USD", "coingecko", "1", age_s=3600)
    settings = settings_for()
    for base in ("USD", "USDT"):
        with pytest.raises(RatesUnavailable) as raised:
            await get_rate(session, settings, base, "IDR")
        error = raised.value
        assert isinstance(error, ServiceUnavailable)
        assert (error.status_code, error.code) == (503, "rates_unavailable")
        assert f"{base}→IDR" in error.message
        assert "fiat-priced invoices" in error.message and "rates.refresh" in error.message
    assert await get_rate(session, settings, "USDT", "USDT") == Decimal(1)
    assert await get_rate(session, settings, "idr", "IDR") == Decimal(1)


# --- convert ---------------------------------------------------------------------------------
def test_convert_turns_a_price_into_base_units():
    assert convert(Decimal("10.5"), Decimal(1), 6) == 10_500_000
    assert convert(Decimal("10.5"), Decimal(1), 0) == 11
    assert convert(Decimal(0), Decimal("16234.5"), 6) == 0
    assert convert(Decimal(100), Decimal(1), 18) == 100 * 10**18


def test_convert_rounds_up_so_the_merchant_is_never_short():
    # 1 IDR at 16234.5 IDR per USDT = 0.0000615975… USDT = 61.597… units → 62
    assert convert(Decimal(1), Decimal("16234.5"), 6) == 62
    # an exact result is not bumped
    assert convert(Decimal("16234.5"), Decimal("16234.5"), 6) == 1_000_000
    # the tiniest remainder still rounds up
    assert convert(Decimal("1.000000000000000001"), Decimal(1), 6) == 1_000_001
    # 18-decimal coin at a rate with 18 places: exact integer arithmetic, no float
    rate = Decimal("3456.123456789012345679")
    units = convert(Decimal("1000000"), rate, 18)
    assert (units - 1) * rate < Decimal(1000000) * 10**18 <= units * rate


def test_convert_refuses_floats_and_nonsense():
    with pytest.raises(TypeError):
        convert(10.5, Decimal(1), 6)
    with pytest.raises(ValueError):
        convert(Decimal(1), Decimal(0), 6)
    with pytest.raises(ValueError):
        convert(Decimal(-1), Decimal(1), 6)
    with pytest.raises(ValueError):
        convert(Decimal("NaN"), Decimal(1), 6)
    with pytest.raises(ValueError):
        convert(Decimal(1), Decimal("Infinity"), 6)
    with pytest.raises(ValueError):
        convert(Decimal(1), Decimal(1), 37)


# --- admin rates ------------------------------------------------------------------------------
ACTOR = Actor("admin", "admin-sub-1", None, "10.0.0.1", "req-1")


async def test_set_admin_rate_writes_the_row_and_audits_before_and_after(
    session, rates_table, settings_for
):
    first = await set_admin_rate(session, ACTOR, "usdt", "idr", Decimal("16250.5"))
    assert (first.base, first.quote, first.source) == ("USDT", "IDR", "admin")
    assert first.rate == Decimal("16250.5") and first.updated_by == "admin-sub-1"
    await set_admin_rate(session, ACTOR, "USDT", "IDR", Decimal("16260"))
    assert await get_rate(session, settings_for(), "USDT", "IDR") == Decimal("16260")
    entries = (
        await session.scalars(
            select(AuditLog)
            .where(AuditLog.action == "rate.set", AuditLog.target_id == "USDT/IDR")
            .order_by(AuditLog.id)
        )
    ).all()
    assert [e.before and e.before["rate"] for e in entries[-2:]] == [None, "16250.5"]
    assert [e.after["rate"] for e in entries[-2:]] == ["16250.5", "16260"]
    assert entries[-1].actor_id == "admin-sub-1" and entries[-1].target_type == "rate"


@pytest.mark.parametrize(
    "rate", ["0", "-1", "NaN", "Infinity", "1e20", "0.0000000000000000001", "1.0000000000000000001"]
)
async def test_set_admin_rate_refuses_what_is_not_a_storable_positive_rate(
    session, rates_table, rate
):
    with pytest.raises(InvalidRate):
        await set_admin_rate(session, ACTOR, "USDT", "IDR", Decimal(rate))


async def test_set_admin_rate_refuses_a_rate_of_a_currency_in_itself_or_bad_codes(
    session, rates_table
):
    with pytest.raises(InvalidRate):
        await set_admin_rate(session, ACTOR, "USDT", "usdt", Decimal(1))
    with pytest.raises(InvalidRate):
        await set_admin_rate(session, ACTOR, "US$", "IDR", Decimal(1))
