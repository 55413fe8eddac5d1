"""The payer's view `GET /api/v1/public/invoices/{id}`: no authentication, only what paying
needs; amounts due per option follow the payments seen on a real chain."""

from nespay.kit.addresses import checksum_address
from tests.invoices.conftest import TOKEN, error_code
from tests.payments.conftest import units

PUBLIC_FIELDS = {
    "id", "status", "amount", "currency", "amount_due", "payment_options", "expires_at",
    "redirect_url",
}  # fmt: skip
OPTION_FIELDS = {
    "network", "currency", "address", "amount_due", "token_contract", "decimals", "chain_id"
}  # fmt: skip


async def public(client, invoice_id):
    return await client.get(f"/api/v1/public/invoices/{invoice_id}")


async def test_the_public_view_shows_what_paying_needs_and_nothing_more(app, merchant, network):
    invoice = await app.invoice(
        merchant,
        network,
        amount="42.5",
        order_id="secret-order-77",
        description="secret description",
        metadata={"customer_email": "secret@example.com"},
        redirect_url="https://shop.example/done",
    )
    response = await public(app.client, invoice["id"])  # no key, no token
    assert response.status_code == 200, response.text
    view = response.json()
    assert set(view) == PUBLIC_FIELDS
    assert view == {
        "id": invoice["id"],
        "status": "pending",
        "amount": "42.5",
        "currency": "USDT",
        "amount_due": "42.5",
        "expires_at": invoice["expires_at"],
        "redirect_url": "https://shop.example/done",
        "payment_options": [
            {
                "network": network,
                "currency": "USDT",
                "address": invoice["payment_options"][0]["address"],
                "amount_due": "42.5",
                "token_contract": checksum_address(TOKEN),
                "decimals": 6,
                "chain_id": 31337,
            }
        ],
    }
    assert set(view["payment_options"][0]) == OPTION_FIELDS
    for secret in ("secret", merchant.merchant_id, "mer_", "customer_email"):
        assert secret not in response.text


async def test_an_unknown_invoice_is_404(app):
    for invoice_id in ("inv_00000000000000000000000000", "x"):
        response = await public(app.client, invoice_id)
        assert response.status_code == 404 and error_code(response) == "invoice_not_found"


async def test_the_public_view_follows_the_invoice_state(app, merchant, network):
    invoice = await app.invoice(merchant, network)
    cancelled = await app.client.post(
        f"/api/v1/invoices/{invoice['id']}/cancel", headers=merchant.headers
    )
    assert cancelled.status_code == 200
    assert (await public(app.client, invoice["id"])).json()["status"] == "cancelled"


async def test_a_partial_payment_shrinks_the_amount_due_per_option(chain):
    invoice = await chain.invoice("10")
    chain.pay(invoice, units("4"))
    await chain.scan()
    view = (await public(chain.client, invoice["id"])).json()
    assert (view["status"], view["amount"], view["amount_due"]) == ("partially_paid", "10", "6")
    (option,) = view["payment_options"]
    assert option["amount_due"] == "6"
    assert option["address"] == invoice["payment_options"][0]["address"]
    assert option["token_contract"] == checksum_address(chain.token)
    chain.pay(invoice, units("6"))
    await chain.scan()
    paid = (await public(chain.client, invoice["id"])).json()
    assert (paid["status"], paid["amount_due"], paid["payment_options"][0]["amount_due"]) == (
        "paid",
        "0",
        "0",
    )


async def test_a_fiat_invoice_partly_paid_shows_each_options_remainder(chain, database):
    """Two options (USDT and ETH) at locked rates: paying 25% in USDT leaves 75% of each."""
    from decimal import Decimal

    from sqlalchemy import text

    from nespay.rates.service import set_admin_rate
    from tests.fixtures.factories import TEST_ACTOR

    async with database.session() as session:
        await set_admin_rate(session, TEST_ACTOR, "USDT", "SGD", Decimal("1.25"))
        await set_admin_rate(session, TEST_ACTOR, "ETH", "SGD", Decimal("5000"))
    try:
        invoice = await chain.invoice(
            "100",
            "SGD",
            payment_options=[
                {"network": chain.network, "currency": "USDT"},
                {"network": chain.network, "currency": "ETH"},
            ],
        )
        usdt, eth = invoice["payment_options"]
        assert (usdt["amount"], eth["amount"]) == ("80", "0.02")
        chain.pay(invoice, units("20"))
        await chain.scan()
        view = (await public(chain.client, invoice["id"])).json()
        assert (view["status"], view["amount_due"]) == ("partially_paid", "75")
        assert [o["amount_due"] for o in view["payment_options"]] == ["60", "0.015"]
        merchant_view = await chain.get(invoice["id"])
        assert (merchant_view["amount_paid"], merchant_view["amount_due"]) == ("25", "75")
    finally:
        async with database.engine.begin() as conn:
            await conn.execute(text("DELETE FROM rates WHERE quote = 'SGD' AND source = 'admin'"))


async def test_a_tiny_payment_already_blocks_cancelling(chain):
    invoice = await chain.invoice("10")
    chain.pay(invoice, 1)  # one base unit: 0.000001 of 10 USDT
    await chain.scan()
    seen = await chain.get(invoice["id"])
    assert seen["status"] == "partially_paid" and seen["amount_paid"] == "0.000001"
    response = await chain.client.post(
        f"/api/v1/invoices/{invoice['id']}/cancel", headers=chain.merchant.headers
    )
    assert response.status_code == 409 and error_code(response) == "invoice_not_cancellable"
