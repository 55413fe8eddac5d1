"""Fiat-priced invoices: converted at a rate locked at creation (rounded up, so the merchant is
never short), unaffected by later rate changes; no usable rate → 503 for fiat only.

Rates rows are global in the test database: these tests use quote currencies no other test
uses (MYR, SGD) and remove their rows afterwards."""

import socket
from decimal import Decimal

from tests.fixtures.database import make_settings
from tests.invoices.conftest import error_code


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_a_fiat_price_is_converted_at_a_rate_locked_at_creation(
    app, merchant, network, admin_rate
):
    await admin_rate("USDT", "MYR", "16250")
    response = await app.create(
        merchant,
        {
            "amount": "100000",
            "currency": "myr",
            "payment_options": [{"network": network, "currency": "USDT"}],
        },
    )
    assert response.status_code == 201, response.text
    invoice = response.json()
    # 100000 / 16250 = 6.15384615…, rounded up at 6 decimals.
    assert (invoice["amount"], invoice["currency"], invoice["rate"]) == ("100000", "MYR", "16250")
    assert (invoice["amount_due"], invoice["amount_paid"]) == ("100000", "0")
    (option,) = invoice["payment_options"]
    assert (option["currency"], option["amount"], option["rate"]) == ("USDT", "6.153847", "16250")
    (stored,) = await app.rows(
        "SELECT amount, rate FROM invoice_options WHERE invoice_id = :i", i=invoice["id"]
    )
    assert (stored.amount, stored.rate) == (6_153_847, Decimal(16250))

    # A later rate applies to new invoices only.
    await admin_rate("USDT", "MYR", "20000")
    assert (await app.get(merchant, invoice["id"])).json() == invoice
    newer = await app.invoice(merchant, network, amount="100000", currency="MYR")
    assert (newer["rate"], newer["payment_options"][0]["amount"]) == ("20000", "5")


async def test_a_fiat_invoice_on_a_network_offers_its_stablecoins(
    app, merchant, network, admin_rate
):
    await admin_rate("USDT", "MYR", "4.7")
    invoice = await app.invoice(merchant, network, amount="47", currency="MYR")
    assert [(o["network"], o["currency"], o["amount"]) for o in invoice["payment_options"]] == [
        (network, "USDT", "10")
    ]


async def test_each_option_is_priced_at_its_own_rate(app, merchant, network, admin_rate):
    await admin_rate("USDT", "MYR", "4.5")
    await admin_rate("ETH", "MYR", "15000.123")
    response = await app.create(
        merchant,
        {
            "amount": "90",
            "currency": "MYR",
            "payment_options": [
                {"network": network, "currency": "USDT"},
                {"network": network, "currency": "ETH"},
            ],
        },
    )
    assert response.status_code == 201, response.text
    usdt, eth = response.json()["payment_options"]
    assert (usdt["amount"], usdt["rate"]) == ("20", "4.5")
    # ceil(90 / 15000.123 × 10^18) base units
    expected = -(-(90 * 10**18 * 1000) // 15000123)
    assert Decimal(eth["amount"]).scaleb(18) == expected
    assert eth["rate"] == "15000.123"
    assert eth["address"] == usdt["address"]


async def test_a_usd_price_uses_the_stablecoin_peg(api_for, database_url, merchant):
    settings = make_settings(database_url, rates_sources=["admin"])
    async with api_for(settings) as app:
        network = await app.network()
        invoice = await app.invoice(merchant, network, amount="19.99", currency="USD")
    assert invoice["rate"] == "1"
    assert invoice["payment_options"][0]["amount"] == "19.99"
    assert (invoice["amount"], invoice["currency"]) == ("19.99", "USD")


async def test_no_usable_rate_refuses_fiat_with_503_and_crypto_still_works(
    api_for, database_url, merchant, admin_rate
):
    # An admin MYR rate exists, but admin is not a source here; CoinGecko does not answer.
    await admin_rate("USDT", "MYR", "4.7")
    settings = make_settings(
        database_url,
        rates_sources=["coingecko"],
        coingecko_api_url=f"http://127.0.0.1:{closed_port()}",
    )
    async with api_for(settings) as app:
        network = await app.network()
        for currency in ("SGD", "MYR"):
            response = await app.create(
                merchant, {"amount": "10", "currency": currency, "network": network}
            )
            assert response.status_code == 503, response.text
            assert error_code(response) == "rates_unavailable"
        assert await app.invoice_count(merchant) == 0
        assert (
            await app.scalar(
                "SELECT count(*) FROM deposit_addresses WHERE merchant_id = :m",
                m=merchant.merchant_id,
            )
            == 0
        )
        crypto = await app.create(
            merchant, {"amount": "10", "currency": "USDT", "network": network}
        )
        assert crypto.status_code == 201, crypto.text
        assert await app.invoice_count(merchant) == 1
