"""`POST /api/v1/invoices`: the invoice as SPEC §13 describes it, its deposit address and
options, expiry (request, merchant default, the 15-minute default), and its creation event."""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from nespay.invoices import service
from nespay.invoices.schemas import InvoiceCreate
from nespay.kit.addresses import checksum_address
from tests.invoices.conftest import TOKEN

INVOICE_FIELDS = {
    "id", "status", "amount", "currency", "amount_paid", "amount_due", "rate",
    "payment_options", "payments", "order_id", "description", "metadata", "redirect_url",
    "hosted_url", "expires_at", "created_at", "paid_at", "confirmed_at", "expired_at",
    "cancelled_at", "flags",
}  # fmt: skip


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_create_answers_201_with_the_invoice(app, merchant, network):
    before = datetime.now(UTC)
    body = {
        "amount": "10.5",
        "currency": "usdt",
        "network": network,
        "order_id": "order-1001",
        "description": "Two mugs",
        "metadata": {"cart": [1, 2], "note": "ünïcode", "nested": {"a": None}},
        "redirect_url": "https://shop.example/thanks?o=1001",
    }
    response = await app.create(merchant, body)
    after = datetime.now(UTC)
    assert response.status_code == 201, response.text
    assert "Idempotent-Replayed" not in response.headers
    invoice = response.json()
    assert set(invoice) == INVOICE_FIELDS
    assert re.fullmatch(r"inv_[0-9a-z]{26}", invoice["id"])
    assert invoice["status"] == "pending"
    assert (invoice["amount"], invoice["currency"]) == ("10.5", "USDT")
    assert (invoice["amount_paid"], invoice["amount_due"], invoice["rate"]) == ("0", "10.5", "1")
    assert invoice["order_id"] == "order-1001"
    assert invoice["description"] == "Two mugs"
    assert invoice["metadata"] == body["metadata"]
    assert invoice["redirect_url"] == body["redirect_url"]
    # The payer's page, under BASE_URL (the test settings' default).
    assert invoice["hosted_url"] == f"http://localhost:8000/pay/{invoice['id']}"
    assert invoice["payments"] == []
    assert invoice["flags"] == {"overpaid": False, "paid_late": False}
    for name in ("paid_at", "confirmed_at", "expired_at", "cancelled_at"):
        assert invoice[name] is None
    created = at(invoice["created_at"])
    assert before - timedelta(seconds=1) <= created <= after + timedelta(seconds=1)
    assert invoice["created_at"].endswith("Z") and invoice["expires_at"].endswith("Z")
    # The merchant's default expiry: 900 s, the 15 minutes of the spec.
    assert at(invoice["expires_at"]) - created == timedelta(seconds=900)

    (option,) = invoice["payment_options"]
    assert option["network"] == network and option["currency"] == "USDT"
    assert option["address"] == checksum_address(option["address"])
    assert option["address"] != option["address"].lower()  # mixed case: EIP-55
    assert (option["amount"], option["amount_paid"], option["decimals"]) == ("10.5", "0", 6)
    assert option["token_contract"] == checksum_address(TOKEN)
    assert option["rate"] == "1"

    # What is stored: exact price, base units, the lower-case address, one deposit address.
    (row,) = await app.rows(
        "SELECT price_amount, price_currency, merchant_id FROM invoices WHERE id = :i",
        i=invoice["id"],
    )
    assert tuple(row) == (Decimal("10.5"), "USDT", merchant.merchant_id)
    (stored,) = await app.rows(
        "SELECT amount, address, rate FROM invoice_options WHERE invoice_id = :i", i=invoice["id"]
    )
    assert stored.amount == 10_500_000 and stored.rate == 1
    assert stored.address == option["address"].lower()
    deposits = await app.rows(
        "SELECT address, chain_family, merchant_id FROM deposit_addresses WHERE invoice_id = :i",
        i=invoice["id"],
    )
    assert [tuple(d) for d in deposits] == [(stored.address, "evm", merchant.merchant_id)]

    # A read answers the same document as the creation.
    read = await app.get(merchant, invoice["id"])
    assert read.status_code == 200 and read.json() == invoice


async def test_each_invoice_gets_its_own_deposit_address(app, merchant, network):
    addresses = {
        (await app.invoice(merchant, network))["payment_options"][0]["address"] for _ in range(3)
    }
    assert len(addresses) == 3


async def test_a_native_coin_option_has_no_token_contract(app, merchant, network):
    invoice = await app.invoice(merchant, network, amount="0.000000000000000001", currency="ETH")
    (option,) = invoice["payment_options"]
    assert (option["currency"], option["token_contract"], option["decimals"]) == ("ETH", None, 18)
    assert option["amount"] == invoice["amount"] == invoice["amount_due"] == "0.000000000000000001"


async def test_expires_in_overrides_the_default(app, merchant, network):
    invoice = await app.invoice(merchant, network, expires_in=3600)
    assert at(invoice["expires_at"]) - at(invoice["created_at"]) == timedelta(seconds=3600)


async def test_the_merchants_default_expiry_applies_and_expires_in_still_wins(
    app, merchant, network
):
    patched = await app.client.patch(
        "/api/v1/merchants/me", headers=merchant.headers, json={"default_expiry_s": 1800}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["default_expiry_s"] == 1800
    invoice = await app.invoice(merchant, network)
    assert at(invoice["expires_at"]) - at(invoice["created_at"]) == timedelta(seconds=1800)
    explicit = await app.invoice(merchant, network, expires_in=120)
    assert at(explicit["expires_at"]) - at(explicit["created_at"]) == timedelta(seconds=120)


async def test_explicit_options_on_two_networks_share_one_evm_address(app, merchant, network):
    second = await app.network()
    response = await app.create(
        merchant,
        {
            "amount": "25",
            "currency": "USDT",
            "payment_options": [
                {"network": network, "currency": "USDT"},
                {"network": second, "currency": "usdt"},
            ],
        },
    )
    assert response.status_code == 201, response.text
    options = response.json()["payment_options"]
    assert [(o["network"], o["currency"], o["amount"]) for o in options] == [
        (network, "USDT", "25"),
        (second, "USDT", "25"),
    ]
    assert options[0]["address"] == options[1]["address"]
    assert (
        await app.scalar(
            "SELECT count(*) FROM deposit_addresses WHERE invoice_id = :i", i=response.json()["id"]
        )
        == 1
    )


async def test_a_repeated_option_is_offered_once(app, merchant, network):
    pair = {"network": network, "currency": "USDT"}
    response = await app.create(
        merchant, {"amount": "1", "currency": "USDT", "payment_options": [pair, pair]}
    )
    assert response.status_code == 201, response.text
    assert len(response.json()["payment_options"]) == 1


async def test_without_network_every_enabled_network_offering_the_currency_is_an_option(
    app, merchant, network
):
    second = await app.network()
    response = await app.create(merchant, {"amount": "3", "currency": "USDT"})
    assert response.status_code == 201, response.text
    options = response.json()["payment_options"]
    assert {network, second} <= {o["network"] for o in options}
    assert {o["currency"] for o in options} == {"USDT"}
    assert len({o["address"] for o in options if o["network"] in (network, second)}) == 1


async def test_creation_writes_exactly_one_created_event_equal_to_the_answer(
    app, merchant, network
):
    invoice = await app.invoice(
        merchant, network, order_id="evt-1", metadata={"k": "v"}, description="d"
    )
    events = await app.events(invoice["id"])
    assert [(e.type, e.merchant_id) for e in events] == [("invoice.created", merchant.merchant_id)]
    assert events[0].data == invoice


async def test_the_hosted_url_is_under_each_apps_own_base_url_in_answers_reads_and_event(
    app, api_for, settings, merchant, network
):
    shop = settings.model_copy(update={"base_url": "https://pay.example.com/"})
    async with api_for(shop) as other:
        invoice = await other.invoice(merchant, network)
        hosted = f"https://pay.example.com/pay/{invoice['id']}"
        assert invoice["hosted_url"] == hosted
        assert (await other.get(merchant, invoice["id"])).json()["hosted_url"] == hosted
        listed = await other.client.get("/api/v1/invoices", headers=merchant.headers)
        assert [i["hosted_url"] for i in listed.json()["data"]] == [hosted]
        (event,) = await other.events(invoice["id"])
        assert event.data["hosted_url"] == hosted
    # Two apps in one process: the other keeps its own base (there is no global).
    read = (await app.get(merchant, invoice["id"])).json()
    assert read["hosted_url"] == f"http://localhost:8000/pay/{invoice['id']}"


async def test_reads_list_the_options_in_the_order_asked(app, merchant, network, admin_rate):
    await admin_rate("USDT", "MYR", "4.5")
    await admin_rate("ETH", "MYR", "15000")
    second = await app.network()
    asked = [
        (second, "ETH"), (network, "USDT"), (second, "USDT"), (network, "ETH"),
    ]  # fmt: skip
    for _ in range(3):
        response = await app.create(
            merchant,
            {
                "amount": "1",
                "currency": "MYR",
                "payment_options": [{"network": n, "currency": c} for n, c in asked],
            },
            key=None,
        )
        assert response.status_code == 201, response.text
        invoice = response.json()
        assert [(o["network"], o["currency"]) for o in invoice["payment_options"]] == asked
        assert (await app.get(merchant, invoice["id"])).json() == invoice


async def test_without_cached_settings_creation_reads_the_merchants_own(app, merchant, network):
    # As the sandbox (and any caller without the auth cache's settings) creates invoices.
    await app.execute(
        "UPDATE merchants SET default_expiry_s = 1234, underpayment_tolerance_bps = 77 "
        "WHERE id = :m",
        m=merchant.merchant_id,
    )
    body = InvoiceCreate(amount="1", currency="USDT", network=network)
    created = await service.create(app.runtime, merchant.merchant_id, body, None)
    invoice = created.data
    assert not created.replayed
    assert at(invoice["expires_at"]) - at(invoice["created_at"]) == timedelta(seconds=1234)
    tolerance = await app.scalar(
        "SELECT underpayment_tolerance_bps FROM invoices WHERE id = :i", i=invoice["id"]
    )
    assert tolerance == 77
    assert (await app.get(merchant, invoice["id"])).json() == invoice
    assert [e.data for e in await app.events(invoice["id"])] == [invoice]
