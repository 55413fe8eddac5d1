"""Pieces of the sources that need no server: headers, Retry-After, what counts as a rate."""

from datetime import UTC, datetime
from decimal import Decimal

from nespay.rates.sources import coingecko_headers, retry_after_s, storable
from tests.fixtures.database import make_settings

DB = "postgresql://postgres@127.0.0.1:5432/x"


def test_demo_key_header_by_default_and_pro_key_header_on_a_pro_api_host():
    assert "x-cg-demo-api-key" not in coingecko_headers(make_settings(DB))
    demo = coingecko_headers(make_settings(DB, coingecko_api_key="k-demo"))
    assert demo["x-cg-demo-api-key"] == "k-demo" and "x-cg-pro-api-key" not in demo
    pro = coingecko_headers(
        make_settings(
            DB, coingecko_api_key="k-pro", coingecko_api_url="https://pro-api.coingecko.com"
        )
    )
    assert pro["x-cg-pro-api-key"] == "k-pro" and "x-cg-demo-api-key" not in pro


def test_retry_after_reads_seconds_and_http_dates_and_is_capped():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_s("30") == 30
    assert retry_after_s("Thu, 01 Jan 2026 12:01:30 GMT", now) == 90
    assert retry_after_s("999999") == 3600
    assert retry_after_s(None) == 60 and retry_after_s("soon") == 60


def test_only_positive_finite_decimals_that_fit_the_table_are_rates():
    assert storable(Decimal("16234.123456789012345678")) == Decimal("16234.123456789012345678")
    assert storable(Decimal("1.0000000000000000005")) == Decimal("1.000000000000000000")
    assert storable(5) == Decimal(5)
    for bad in (
        1.5,
        True,
        "1",
        None,
        Decimal(0),
        Decimal(-1),
        Decimal("Infinity"),
        Decimal("NaN"),
        Decimal("1e20"),
        Decimal("1e-19"),
    ):
        assert storable(bad) is None, bad
