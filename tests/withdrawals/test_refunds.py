"""Refunds on a real chain: up to what the invoice received in confirmed payments, less
earlier refunds; an overpayment alone; never another merchant's invoice."""

from __future__ import annotations

import pytest

from tests.invoices.conftest import error_code
from tests.payments.conftest import CONFIRMATIONS, units
from tests.withdrawals.conftest import PAYEE


@pytest.fixture(autouse=True)
async def payouts_wallet(chain):
    """The chain's network gets a payouts hot wallet (these tests do not send)."""
    from tests.wallets.sending import import_key

    await import_key(chain.runtime.settings, chain.runtime.db, chain.network)


async def _refund(chain, invoice_id: str, amount: str, merchant=None):
    merchant = merchant or chain.merchant
    return await chain.client.post(
        f"/api/v1/invoices/{invoice_id}/refunds",
        json={"amount": amount, "address": PAYEE},
        headers=merchant.headers,
    )


async def _paid(chain, amount: str = "10", pay: str = "10") -> dict:
    invoice = await chain.invoice(amount)
    chain.pay(invoice, units(pay))
    chain.node.mine(CONFIRMATIONS)
    await chain.scan()
    return invoice


async def test_a_refund_is_limited_to_what_the_invoice_received(chain):
    invoice = await _paid(chain)
    first = await _refund(chain, invoice["id"], "4")
    assert first.status_code == 201, first.text
    refund = first.json()
    assert refund["kind"] == "refund" and refund["invoice_id"] == invoice["id"]
    assert refund["network"] == chain.network and refund["currency"] == "USDT"
    too_much = await _refund(chain, invoice["id"], "6.000001")
    assert too_much.status_code == 422 and error_code(too_much) == "refund_exceeds_payments"
    assert "6" in too_much.json()["error"]["message"]
    rest = await _refund(chain, invoice["id"], "6")
    assert rest.status_code == 201
    listed = await chain.client.get(
        "/api/v1/withdrawals", params={"invoice_id": invoice["id"]}, headers=chain.merchant.headers
    )
    assert len(listed.json()["data"]) == 2


async def test_an_overpayment_can_be_refunded_alone(chain):
    invoice = await _paid(chain, "10", "12.5")
    assert (await chain.get(invoice["id"]))["flags"]["overpaid"] is True
    response = await _refund(chain, invoice["id"], "2.5")
    assert response.status_code == 201 and response.json()["amount"] == "2.5"


async def test_an_invoice_without_a_confirmed_payment_has_nothing_to_refund(chain):
    invoice = await chain.invoice("10")
    chain.pay(invoice, units("10"))
    await chain.scan()  # seen, not yet confirmed
    response = await _refund(chain, invoice["id"], "1")
    assert response.status_code == 422 and error_code(response) == "refund_exceeds_payments"


async def test_another_merchants_invoice_is_not_found(chain, database):
    from tests.fixtures.factories import merchant_with_key

    invoice = await _paid(chain)
    other = await merchant_with_key(database)
    response = await _refund(chain, invoice["id"], "1", merchant=other)
    assert response.status_code == 404 and error_code(response) == "invoice_not_found"
