"""`rates.refresh` against a local CoinGecko: exact decimals stored, failures leave the old rows,
a 429 is respected. Each test has a database of its own: the job prices every currency it finds
there."""

from decimal import Decimal

import pytest
from sqlalchemy import text

from nespay.rates.tasks import RatesRefreshFailed, refresh_rates
from nespay.runtime import Runtime
from tests.fixtures.database import make_settings

pytestmark = pytest.mark.own_database

NETWORK = "rates-testnet"
CODES = ("USDT", "ETH", "TRX")


@pytest.fixture
async def currencies(database):
    async with database.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO networks (code, name, chain_family, chain_id, enabled)"
                " VALUES (:n, 'Rates test', 'evm', 424242, true)"
            ),
            {"n": NETWORK},
        )
        for code in (*CODES, "NOPRICE"):
            await conn.execute(
                text(
                    "INSERT INTO currencies (id, network_code, code, name, decimals)"
                    " VALUES (:id, :n, :c, :c, 6)"
                ),
                {"id": f"cur_rates_{code.lower()}", "n": NETWORK, "c": code},
            )


@pytest.fixture
async def runtime(database_url, fake_coingecko, currencies):
    settings = make_settings(
        database_url, coingecko_api_url=fake_coingecko.url, coingecko_api_key="demo-key-1"
    )
    runtime = Runtime(settings, "jobs")
    await runtime.start()
    yield runtime
    await runtime.close()


async def stored(runtime):
    async with runtime.db.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT base, quote, rate, fetched_at FROM rates WHERE source = 'coingecko'")
        )
        return {(r.base, r.quote): (r.rate, r.fetched_at) for r in rows}


def price_everything(fake):
    fake.set_price("tether", "usd", "1.0001")
    fake.set_price("tether", "idr", "16234.123456789012345678")
    fake.set_price("tether", "eur", "0.92")
    fake.set_price("ethereum", "usd", "3456.1234567890123456789")  # 19 places: rounded to 18
    fake.set_price("ethereum", "idr", "56123456.5")
    fake.set_price("tron", "usd", "2.5e-1")  # exponent form, still exact


async def test_refresh_stores_every_price_exactly_as_a_decimal(runtime, fake_coingecko):
    price_everything(fake_coingecko)
    summary = await refresh_rates(runtime)
    assert summary == "coingecko: 6 rates"
    rows = await stored(runtime)
    assert rows[("USDT", "IDR")][0] == Decimal("16234.123456789012345678")
    assert rows[("USDT", "USD")][0] == Decimal("1.0001")
    assert rows[("ETH", "USD")][0] == Decimal("3456.123456789012345679")
    assert rows[("TRX", "USD")][0] == Decimal("0.25")
    assert ("ETH", "EUR") not in rows  # CoinGecko left it out: nothing invented
    assert not any(base == "NOPRICE" for base, _ in rows)

    [request] = fake_coingecko.requests
    assert request.path == "/api/v3/simple/price"
    assert sorted(request.query["ids"].split(",")) == ["ethereum", "tether", "tron"]
    assert request.query["vs_currencies"] == "eur,idr,usd"
    assert request.query["precision"] == "full"
    assert request.headers["x-cg-demo-api-key"] == "demo-key-1"


async def test_a_second_refresh_overwrites_its_rows_and_restamps_them(runtime, fake_coingecko):
    price_everything(fake_coingecko)
    await refresh_rates(runtime)
    first = await stored(runtime)
    fake_coingecko.set_price("tether", "idr", "16300.5")
    await refresh_rates(runtime)
    second = await stored(runtime)
    assert second[("USDT", "IDR")][0] == Decimal("16300.5")
    assert second[("USDT", "USD")][1] > first[("USDT", "USD")][1]
    assert len(second) == len(first)


async def test_a_failing_source_fails_the_run_and_keeps_the_previous_rows(runtime, fake_coingecko):
    price_everything(fake_coingecko)
    await refresh_rates(runtime)
    before = await stored(runtime)
    fake_coingecko.fail_with(500)
    with pytest.raises(RatesRefreshFailed, match="coingecko answered HTTP 500"):
        await refresh_rates(runtime)
    assert await stored(runtime) == before


async def test_a_429_fails_the_run_and_the_source_rests_for_its_retry_after(
    runtime, fake_coingecko
):
    price_everything(fake_coingecko)
    fake_coingecko.fail_with(429, retry_after="120")
    with pytest.raises(RatesRefreshFailed, match=r"rate-limited us \(retry after 120s\)"):
        await refresh_rates(runtime)
    fake_coingecko.recover()
    with pytest.raises(RatesRefreshFailed, match="skipped, rate-limited"):
        await refresh_rates(runtime)
    assert len(fake_coingecko.requests) == 1  # not asked again before Retry-After
    assert await stored(runtime) == {}


async def test_an_unreachable_source_fails_the_run(database_url, currencies):
    from tests.fixtures.processes import free_port

    settings = make_settings(database_url, coingecko_api_url=f"http://127.0.0.1:{free_port()}")
    runtime = Runtime(settings, "jobs")
    await runtime.start()
    try:
        with pytest.raises(RatesRefreshFailed, match="coingecko unreachable"):
            await refresh_rates(runtime)
    finally:
        await runtime.close()


async def test_admin_only_sources_fetch_nothing(database_url, currencies, fake_coingecko):
    settings = make_settings(database_url, rates_sources=["admin"])
    runtime = Runtime(settings, "jobs")
    await runtime.start()
    try:
        assert "admin rates only" in await refresh_rates(runtime)
    finally:
        await runtime.close()
    assert fake_coingecko.requests == []


async def test_an_outage_is_one_warning_when_it_starts_and_one_info_line_when_it_ends(
    database_url, currencies, fake_coingecko, caplog
):
    """Offline, the job fails every run: one warning as the source goes down, no traceback
    per run, one info line as it comes back. Read as the process writes them (structlog's
    loggers are cached once configured, so capturing structlog itself depends on test order)."""
    import logging
    from urllib.parse import urlsplit

    from nespay.jobs.registry import all_jobs
    from nespay.jobs.runner import JobRunner
    from nespay.logging import configure_logging
    from tests.fixtures.tcpproxy import TcpProxy

    price_everything(fake_coingecko)
    target = urlsplit(fake_coingecko.url)
    proxy = TcpProxy(target.hostname, target.port)
    port = await proxy.start()
    settings = make_settings(database_url, coingecko_api_url=f"http://127.0.0.1:{port}")
    configure_logging(settings.model_copy(update={"log_level": "info"}), "jobs")
    runtime = Runtime(settings, "jobs")
    await runtime.start()
    runner = JobRunner(runtime, {"rates.refresh": all_jobs(settings)["rates.refresh"]})
    try:
        await runner.register()
        with caplog.at_level(logging.INFO):
            assert await runner.run_now("rates.refresh") == "ok"
            await proxy.cut()  # the machine goes offline
            outcomes = [await runner.run_now("rates.refresh") for _ in range(3)]
            await proxy.start(port)
            assert await runner.run_now("rates.refresh") == "ok"
    finally:
        await proxy.cut()
        await runtime.close()
    assert outcomes == ["error"] * 3
    logs = [
        {**r.msg, "log_level": r.levelname.lower(), "exc": r.exc_info or r.msg.get("exception")}
        for r in caplog.records
        if isinstance(r.msg, dict)
    ]
    loud = [entry for entry in logs if entry["log_level"] in ("warning", "error", "critical")]
    assert [(entry["event"], entry["source"]) for entry in loud] == [
        ("rates_source_down", "coingecko")
    ]
    assert "coingecko unreachable" in loud[0]["error"]
    assert not any(entry["exc"] for entry in logs)
    recovered = [entry for entry in logs if entry["event"] == "rates_source_recovered"]
    assert len(recovered) == 1 and recovered[0]["log_level"] == "info"
