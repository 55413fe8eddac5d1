"""From a token transfer on a real chain to the merchant's server: the scanner moves the
invoice, its events commit with it, and the callback pipeline delivers them signed and in
order — partially paid, then paid, then confirmed. In a database of its own: the pipeline's
relay and sweep read everything committed."""

from __future__ import annotations

import pytest

from tests.callbacks.delivery_rig import body, hook, pipeline
from tests.fixtures.database import make_settings
from tests.payments.conftest import CONFIRMATIONS, units

pytestmark = pytest.mark.own_database


async def test_a_payment_on_chain_reaches_the_merchant_as_signed_ordered_callbacks(
    chain, database, database_url, receiver
):
    settings = make_settings(database_url, callback_delivery_enabled=True)
    merchant = await hook(
        database,
        settings,
        receiver.plan("/hook"),
        events=["invoice.partially_paid", "invoice.paid", "invoice.confirmed"],
        owner=chain.merchant,
    )
    async with pipeline(settings):
        invoice = await chain.invoice("10")
        chain.pay(invoice, units("4"))
        await chain.scan()
        chain.pay(invoice, units("6"))
        await chain.scan()
        chain.node.mine(CONFIRMATIONS)
        await chain.scan()
        got = await receiver.wait_for("/hook", 3)
    sent = [body(request) for request in got]
    assert [s["type"] for s in sent] == [
        "invoice.partially_paid",
        "invoice.paid",
        "invoice.confirmed",
    ]
    assert {s["data"]["id"] for s in sent} == {invoice["id"]}
    for request in got:
        merchant.verify(request)
