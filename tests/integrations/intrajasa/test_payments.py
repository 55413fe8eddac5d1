"""Intrajasa's rupiah virtual accounts end to end, through the real api and webhook apps and
the fake Intrajasa: an IDR invoice shows its VA, is paid, confirmed with Intrajasa, settled in
IDR (events, ledger credit less the fee), once — whatever repeats, replays or lies arrive."""

from __future__ import annotations

import json

import pytest

from tests.callbacks.delivery_rig import eventually
from tests.fixtures.fake_intrajasa import callback
from tests.inbox.rig import rows

pytestmark = pytest.mark.own_database

PAID_EVENTS = [
    "invoice.created",
    "payment.detected",
    "invoice.paid",
    "payment.confirmed",
    "invoice.confirmed",
]


def va_of(invoice: dict) -> str:
    (option,) = invoice["payment_options"]
    assert option["network"] == "intrajasa" and option["currency"] == "IDR"
    return option["address"]


async def test_an_idr_invoice_paid_through_intrajasa_is_confirmed_and_credited_once(rig):
    invoice = await rig.invoice(order_id="kopi-1")
    va_number = va_of(invoice)
    (option,) = invoice["payment_options"]
    assert option["amount"] == "25000" and option["rate"] == "1" and option["decimals"] == 2
    assert rig.fake.by_number(va_number)["totalAmount"] == "25000.00"
    assert rig.fake.by_number(va_number)["custName"] == "Toko Kopi Nusantara"
    public = await rig.api.get(f"/api/v1/public/invoices/{invoice['id']}")
    assert public.status_code == 200, public.text
    (shown,) = public.json()["payment_options"]
    assert shown["address"] == va_number and shown["amount_due"] == "25000"

    raw, headers = rig.fake.pay(va_number, transaction_id="IJTX0001")
    first = await rig.callback(raw, headers)
    assert first.status_code == 200, first.text
    await rig.settled(first.json()["id"])
    paid = await rig.get(invoice["id"])
    assert paid["status"] == "confirmed" and paid["amount_due"] == "0"
    (payment,) = paid["payments"]
    assert payment["tx_hash"] == "IJTX0001" and payment["amount"] == "25000"
    assert payment["status"] == "confirmed" and payment["network"] == "intrajasa"
    assert await rig.events(invoice["id"]) == PAID_EVENTS
    listed = await rig.api.get("/api/v1/events", params={"limit": 50}, headers=rig.merchant.headers)
    assert listed.status_code == 200, listed.text
    mine = [e for e in listed.json()["data"] if e["subject_id"] == invoice["id"]][::-1]
    assert [e["type"] for e in mine] == PAID_EVENTS  # what the merchant's server is sent
    confirmed = mine[3]["data"]
    assert confirmed["tx_hash"] == "IJTX0001" and confirmed["network"] == "intrajasa"
    assert mine[4]["data"]["status"] == "confirmed" and mine[4]["data"]["paid_share"] == "1"
    (balance,) = await rig.balances()
    assert balance == {
        "network": "intrajasa",
        "currency": "IDR",
        "available": "24750",  # 25,000 less the 1 % fee
        "pending": "0",
        "held": "0",
        "deficit": "0",
    }
    assert len(rig.fake.calls("getstatus")) == 1

    again = await rig.callback(raw, headers)  # Intrajasa repeats its callback
    assert again.json() == {"received": True, "id": first.json()["id"], "duplicate": True}
    # The same payment in a callback with other bytes (a field more) is stored anew and
    # handled, and changes nothing.
    raw2, headers2 = callback({**json.loads(raw), "transactionReference": "IJTX0001"})
    other = await rig.callback(raw2, headers2)
    assert other.json()["duplicate"] is True  # same transactionId: the same webhook
    raw3, _ = callback({**json.loads(raw), "paymentDate": "2026-12-04 10:00:00"})
    third = await rig.callback(raw3, headers)
    assert third.json()["duplicate"] is True
    assert (await rig.balances())[0]["available"] == "24750"
    assert await rig.events(invoice["id"]) == PAID_EVENTS
    assert await rig.scalar("SELECT count(*) FROM payments") == 1


async def test_a_callback_intrajasa_does_not_confirm_credits_nothing_then_a_replay_does(
    rig_for, local_issuer
):
    from tests.fixtures.cognito import LOCAL_ADMIN_CLIENT, LOCAL_ADMIN_POOL, REGION

    cognito = {
        "aws_region": REGION,
        "cognito_admin_pool_id": LOCAL_ADMIN_POOL,
        "cognito_admin_client_id": LOCAL_ADMIN_CLIENT,
        "cognito_endpoint_url": local_issuer.endpoint_url,
    }
    async with rig_for(**cognito) as rig:
        invoice = await rig.invoice()
        rig.fake.confirm_payments = False  # the callback says paid; Intrajasa does not
        raw, headers = rig.fake.pay(va_of(invoice), transaction_id="IJTX0002")
        stored = (await rig.callback(raw, headers)).json()["id"]
        dead = await rig.settled(stored, "dead")
        assert dead["attempts"] == 3
        assert dead["last_error"].startswith("PaymentNotConfirmed")
        assert (await rig.get(invoice["id"]))["status"] == "pending"
        assert await rig.balances() == []
        assert await rig.scalar("SELECT count(*) FROM payments") == 0

        rig.fake.confirm_payments = True  # Intrajasa caught up; an operator replays it
        claims = local_issuer.claims(
            "admin", sub="a1b2c3d4-0000-4000-8000-00000000000a", **{"cognito:groups": ["admin"]}
        )
        admin = {"authorization": f"Bearer {local_issuer.mint(claims)}"}
        replay = await rig.api.post(
            f"/api/backoffice/v1/provider-webhooks/{stored}/replay", headers=admin
        )
        assert replay.status_code == 202, replay.text
        await rig.settled(stored)
        assert (await rig.get(invoice["id"]))["status"] == "confirmed"
        assert (await rig.balances())[0]["available"] == "24750"
        # Replayed again: handled again, credited once.
        await rig.api.post(f"/api/backoffice/v1/provider-webhooks/{stored}/replay", headers=admin)
        await eventually(
            lambda: rows(
                rig.database,
                "id = :i AND replayed_at IS NOT NULL AND status = 'handled' AND attempts = 1",
                i=stored,
            ),
            what="handled after the second replay",
        )
        assert (await rig.balances())[0]["available"] == "24750"
        assert await rig.scalar("SELECT count(*) FROM payments") == 1


@pytest.mark.parametrize("amount", ["30000.00", "24999.99", 26000])
async def test_a_callback_for_another_amount_credits_nothing(rig, amount):
    invoice = await rig.invoice()
    raw, headers = rig.fake.pay(va_of(invoice), amount=amount)
    stored = (await rig.callback(raw, headers)).json()["id"]
    dead = await rig.settled(stored, "dead")
    assert dead["last_error"].startswith("AmountMismatch")
    assert rig.fake.calls("getstatus") == []  # refused before asking Intrajasa
    assert (await rig.get(invoice["id"]))["status"] == "pending"
    assert await rig.balances() == []


async def test_a_status_for_another_amount_credits_nothing(rig):
    invoice = await rig.invoice()
    va = rig.fake.by_number(va_of(invoice))
    raw, headers = rig.fake.pay(va["vaNumber"])
    va["totalAmount"] = "20000.00"  # Intrajasa's record disagrees: its status says not found
    stored = (await rig.callback(raw, headers)).json()["id"]
    dead = await rig.settled(stored, "dead")
    assert dead["last_error"].startswith("IntrajasaRejected")
    assert await rig.balances() == []


async def test_an_unknown_va_is_stored_acknowledged_logged_and_ignored(rig, caplog):
    raw, headers = callback(
        {"vaNumber": "8999000011112222", "totalAmount": "25000.00", "transactionId": "IJX9"}
    )
    response = await rig.callback(raw, headers)
    assert response.status_code == 200, response.text
    row = await rig.settled(response.json()["id"], "ignored")
    assert bytes(row["body"]) == raw
    assert rig.fake.calls("getstatus") == []
    assert "intrajasa_callback_unknown_va" in caplog.text


@pytest.mark.parametrize(
    "amount",
    [
        "-25000.00",
        "0",
        "0.00",
        "2.5e4",
        "25000.001",
        "25,000",
        " 25000",
        "NaN",
        True,
        [],
        {"value": "25000"},
        "1" + "0" * 40,
        "",
    ],
)
async def test_an_amount_in_the_wrong_form_is_an_acknowledged_no_op(rig, amount):
    invoice = await rig.invoice()
    raw, headers = rig.fake.pay(va_of(invoice), amount=amount)
    response = await rig.callback(raw, headers)
    assert response.status_code == 200, response.text
    await rig.settled(response.json()["id"], "ignored")
    assert (await rig.get(invoice["id"]))["status"] == "pending"
    assert rig.fake.calls("getstatus") == []


async def test_a_json_number_amount_is_read_exactly(rig):
    invoice = await rig.invoice()
    va_number = va_of(invoice)
    rig.fake.by_number(va_number)["paid"] = True
    raw = (
        b'{"vaNumber": "' + va_number.encode() + b'", "totalAmount": 25000.00, '
        b'"transactionId": "IJNUM1"}'
    )
    _, headers = callback({})
    stored = (await rig.callback(raw, headers)).json()["id"]
    await rig.settled(stored)
    assert (await rig.get(invoice["id"]))["status"] == "confirmed"


async def test_bad_requests_are_refused_clearly_and_store_nothing(rig):
    invoice = await rig.invoice()
    raw, headers = rig.fake.pay(va_of(invoice))
    wrong = await rig.callback(raw, {**headers, "x-callback-token": "guess"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "webhook_token_invalid"
    missing = await rig.callback(raw, {"content-type": "application/json"})
    assert missing.status_code == 401
    for malformed in (b"{not json", b"[]", b"", b'{"vaNumber": "\x00"}'):
        response = await rig.callback(malformed, headers)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "webhook_malformed_json"
    assert await rows(rig.database) == []
    assert (await rig.get(invoice["id"]))["status"] == "pending"


async def test_a_second_transaction_on_a_one_time_va_is_not_credited_again(rig):
    invoice = await rig.invoice()
    va_number = va_of(invoice)
    raw, headers = rig.fake.pay(va_number, transaction_id="IJTXA")
    await rig.settled((await rig.callback(raw, headers)).json()["id"])
    raw, headers = rig.fake.pay(va_number, transaction_id="IJTXB")
    second = await rig.callback(raw, headers)
    assert second.json()["duplicate"] is False
    await rig.settled(second.json()["id"], "ignored")
    assert (await rig.balances())[0]["available"] == "24750"
    assert await rig.scalar("SELECT count(*) FROM payments") == 1


async def test_a_callback_naming_another_reference_or_merchant_is_ignored(rig):
    invoice = await rig.invoice()
    va_number = va_of(invoice)
    for extra in ({"merchantRefCode": "NPSOMEONEELSE0001"}, {"merchantId": "OTHER"}):
        raw, headers = rig.fake.pay(va_number, **extra)
        await rig.settled((await rig.callback(raw, headers)).json()["id"], "ignored")
    assert rig.fake.calls("getstatus") == []
    assert await rig.balances() == []


async def test_a_late_payment_on_an_expired_invoice_is_credited_and_flagged(rig):
    from nespay.invoices.tasks import expire_invoices

    invoice = await rig.invoice(expires_in=60)
    async with rig.database.engine.begin() as conn:
        from sqlalchemy import text

        await conn.execute(
            text("UPDATE invoices SET expires_at = now() - interval '1 minute' WHERE id = :i"),
            {"i": invoice["id"]},
        )
    runtime = rig.api._transport.app.state.runtime  # noqa: SLF001 - the app's own runtime
    # The expiry job does not wait for a scanner of the VA network (it has none).
    assert (await expire_invoices(runtime)).startswith("1 invoices expired")
    assert (await rig.get(invoice["id"]))["status"] == "expired"
    raw, headers = rig.fake.pay(va_of(invoice))
    await rig.settled((await rig.callback(raw, headers)).json()["id"])
    late = await rig.get(invoice["id"])
    assert late["status"] == "confirmed" and late["flags"]["paid_late"] is True
    assert late["payments"][0]["late"] is True
    assert (await rig.balances())[0]["available"] == "24750"


async def test_intrajasa_down_while_confirming_is_retried_and_then_credited(rig):
    invoice = await rig.invoice()
    raw, headers = rig.fake.pay(va_of(invoice))
    rig.fake.fail_next(503, 502, 500)  # the handler's first try: three failed attempts
    stored = (await rig.callback(raw, headers)).json()["id"]
    handled = await rig.settled(stored)
    assert handled["attempts"] == 2
    assert (await rig.get(invoice["id"]))["status"] == "confirmed"
    assert (await rig.balances())[0]["available"] == "24750"
