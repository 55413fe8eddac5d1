"""IDR invoices offering Intrajasa: the VA is made at creation, for the invoice's amount
exactly; a refusal or an outage of Intrajasa is a clear error and no invoice; an
Idempotency-Key never makes two VAs; other currencies and fractions of a rupiah are refused."""

from __future__ import annotations

import asyncio

import pytest

pytestmark = pytest.mark.own_database


async def invoices(rig) -> int:
    return await rig.scalar("SELECT count(*) FROM invoices")


async def test_the_va_is_made_for_the_exact_amount_and_kept_with_its_reference(rig):
    invoice = await rig.invoice(amount="1250000")
    (option,) = invoice["payment_options"]
    (va,) = rig.fake.vas.values()
    assert option["address"] == va["vaNumber"] and va["totalAmount"] == "1250000.00"
    (generate,) = rig.fake.calls("generateva")
    assert generate["vaType"] == 1 and generate["customerData"] == {"custName": va["custName"]}
    stored = await rig.scalar(
        "SELECT provider || ':' || provider_wallet_id FROM deposit_addresses"
        " WHERE chain_family = 'va' AND address = :a",
        a=va["vaNumber"],
    )
    assert stored == f"intrajasa:{va['merchantRefCode']}"
    assert len(va["merchantRefCode"]) <= 20 and va["merchantRefCode"].isalnum()


async def test_network_intrajasa_alone_offers_the_va_and_a_plain_idr_invoice_does_not(rig):
    created = await rig.create({"amount": "25000", "currency": "IDR", "network": "intrajasa"})
    assert created.status_code == 201, created.text
    assert [o["network"] for o in created.json()["payment_options"]] == ["intrajasa"]
    plain = await rig.create({"amount": "25000", "currency": "IDR"})
    # No stablecoin network is enabled here, and the VA is offered only when asked for.
    assert plain.status_code == 422, plain.text
    assert len(rig.fake.vas) == 1


@pytest.mark.parametrize("currency", ["USD", "USDT"])
async def test_another_currency_offering_intrajasa_is_refused(rig, currency):
    response = await rig.create(
        {
            "amount": "10",
            "currency": currency,
            "payment_options": [{"network": "intrajasa", "currency": "IDR"}],
        }
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] in {"va_currency_mismatch", "unknown_currency"}
    assert await invoices(rig) == 0 and rig.fake.requests == []


async def test_the_va_currency_mismatch_is_named(rig):
    response = await rig.create(
        {
            "amount": "10",
            "currency": "USD",
            "payment_options": [{"network": "intrajasa", "currency": "IDR"}],
        }
    )
    assert response.json()["error"]["code"] == "va_currency_mismatch"
    assert "IDR" in response.json()["error"]["message"]


@pytest.mark.parametrize("amount", ["25000.50", "0.01"])
async def test_a_fraction_of_a_rupiah_is_refused(rig, amount):
    response = await rig.create(
        {
            "amount": amount,
            "currency": "IDR",
            "payment_options": [{"network": "intrajasa", "currency": "IDR"}],
        }
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "amount_precision"
    assert await invoices(rig) == 0 and rig.fake.requests == []


async def test_intrajasa_down_is_a_503_and_no_invoice(rig):
    rig.fake.fail_next(503, 503, 503)
    response = await rig.create()
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "intrajasa_unavailable" and error["request_id"]
    assert await invoices(rig) == 0
    assert len(rig.fake.requests) == 3  # gettoken tried three times, then given up
    again = await rig.create()  # back up: the merchant's retry works
    assert again.status_code == 201, again.text


async def test_a_refusal_by_intrajasa_is_a_502_without_the_secret_and_no_invoice(rig, caplog):
    rig.fake.secret_word = "rotated-at-intrajasa"  # our secure codes no longer match
    response = await rig.create()
    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "intrajasa_rejected"
    assert await invoices(rig) == 0
    assert len(rig.fake.requests) == 1  # a refusal is not retried
    assert "intrajasa-secret-word" not in caplog.text + response.text


async def test_without_intrajasa_settings_the_option_is_refused_as_not_configured(rig_for):
    async with rig_for(intrajasa_merchant_id=None, intrajasa_secret_word=None) as rig:
        response = await rig.create()
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "intrajasa_not_configured"
        assert await invoices(rig) == 0


async def test_a_disabled_intrajasa_network_is_refused_with_the_command_to_enable_it(rig):
    async with rig.database.engine.begin() as conn:
        from sqlalchemy import text

        await conn.execute(text("UPDATE networks SET enabled = false WHERE code = 'intrajasa'"))
    rig.api._transport.app.state.runtime.catalog.invalidate()  # noqa: SLF001
    response = await rig.create({"amount": "25000", "currency": "IDR", "network": "intrajasa"})
    assert response.status_code == 422, response.text
    assert "nespay networks enable intrajasa" in response.json()["error"]["message"]


async def test_a_replay_with_the_same_key_answers_the_invoice_without_calling_intrajasa(rig):
    first = await rig.create(key="order-77")
    assert first.status_code == 201, first.text
    calls = len(rig.fake.requests)
    again = await rig.create(key="order-77")
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert len(rig.fake.requests) == calls
    other = await rig.create(
        {"amount": "26000", "currency": "IDR", "network": "intrajasa"}, key="order-77"
    )
    assert other.status_code == 409
    assert len(rig.fake.vas) == 1


async def test_a_concurrent_pair_with_one_key_makes_one_invoice_and_one_va(rig):
    first, second = await asyncio.gather(rig.create(key="order-88"), rig.create(key="order-88"))
    assert first.status_code == second.status_code == 201, (first.text, second.text)
    assert first.json()["id"] == second.json()["id"]
    assert await invoices(rig) == 1
    assert len(rig.fake.vas) == 1


async def test_a_va_paid_invoice_cannot_be_refunded_through_nespay(rig):
    invoice = await rig.invoice()
    raw, headers = rig.fake.pay(invoice["payment_options"][0]["address"])
    await rig.settled((await rig.callback(raw, headers)).json()["id"])
    response = await rig.api.post(
        f"/api/v1/invoices/{invoice['id']}/refunds",
        json={"amount": "1000", "address": "0x" + "11" * 20},
        headers=rig.merchant.headers,
    )
    assert response.status_code == 422, response.text
    assert "virtual account" in response.json()["error"]["message"]
    assert await rig.scalar("SELECT count(*) FROM withdrawals") == 0
