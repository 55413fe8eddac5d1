"""A card program end to end against the fake Rain: a card user applied and approved by
webhook, funded from the merchant's balance, a card issued; an authorisation approved then
completed, one declined for funds, one for a locked card; the balances right after each."""

from __future__ import annotations

import pytest

from tests.callbacks.delivery_rig import eventually
from tests.fixtures.fake_rain import RAIN_KEY

pytestmark = pytest.mark.own_database


async def test_a_card_user_is_funded_carded_and_its_authorisations_decided_against_its_balance(
    cards, fake_rain
):
    applied = await cards.apply()
    assert applied["application_status"] == "pending"
    (call,) = fake_rain.calls("POST", "/v1/issuing/applications/user")
    assert call["api_key"] == RAIN_KEY and call["body"]["nationalId"] == "123456789"
    early = await cards.client.post(
        f"/api/v1/card-users/{applied['id']}/cards",
        json={"type": "virtual", "limit": {"amount": "10", "frequency": "allTime"}},
        headers=cards.headers(),
    )
    assert early.status_code == 409 and early.json()["error"]["code"] == "card_user_not_approved"

    user, card, rain_card = await cards.funded_card("50")
    assert card["status"] == "active" and card["last4"] == "1142"
    assert card["limit"] == {"amount": "500", "frequency": "per30DayPeriod"}
    assert await cards.balance(user["id"]) == {"available": "50", "held": "0", "spent": "0"}
    assert await cards.merchant_available() == "50"

    approved = await cards.authorise(rain_card, 1250, transaction_id="tx-1", event_id="ev-1")
    assert approved.status_code == 200 and approved.json() == {"code": "ok"}
    assert await cards.balance(user["id"]) == {"available": "37.5", "held": "12.5", "spent": "0"}

    again = await cards.authorise(rain_card, 1250, transaction_id="tx-1", event_id="ev-1")
    assert again.status_code == 200 and again.json() == {"code": "ok"}
    assert await cards.balance(user["id"]) == {"available": "37.5", "held": "12.5", "spent": "0"}

    for action, status in (("created", "pending"), ("completed", "completed")):
        raw, headers = fake_rain.transaction(
            action, rain_card, 1250, status=status, transaction_id="tx-1"
        )
        assert (await cards.send(raw, headers)).status_code == 200
    await eventually(lambda: cards.transaction_status(card["id"], "completed"), what="completed")
    assert await cards.balance(user["id"]) == {"available": "37.5", "held": "0", "spent": "12.5"}

    short = await cards.authorise(rain_card, 5000)
    assert short.status_code == 402
    assert short.json()["rejectionCode"] == "INSUFFICIENT_FUNDS"
    assert await cards.balance(user["id"]) == {"available": "37.5", "held": "0", "spent": "12.5"}

    locked = await cards.client.patch(
        f"/api/v1/cards/{card['id']}", json={"status": "locked"}, headers=cards.headers()
    )
    assert locked.status_code == 200 and locked.json()["status"] == "locked", locked.text
    assert fake_rain.cards[rain_card]["status"] == "locked"
    refused = await cards.authorise(rain_card, 100)
    assert refused.status_code == 402
    assert refused.json()["rejectionCode"] == "NOT_PERMITTED"
    assert refused.json()["reason"] == "card_locked"
    assert await cards.balance(user["id"]) == {"available": "37.5", "held": "0", "spent": "12.5"}

    history = await cards.transactions(card["id"])
    assert [(t["decision"], t["decline_reason"], t["status"], t["amount"]) for t in history] == [
        ("declined", "card_locked", "declined", "1"),
        ("declined", "insufficient_funds", "declined", "50"),
        ("approved", None, "completed", "12.5"),
    ]
    assert history[2]["settled_amount"] == "12.5" and history[2]["merchant_name"] == "Coffee Shop"

    back = await cards.client.post(
        f"/api/v1/card-users/{user['id']}/defundings",
        json={"network": cards.network, "currency": "USDT", "amount": "37.5"},
        headers=cards.headers(),
    )
    assert back.status_code == 201, back.text
    assert await cards.balance(user["id"]) == {"available": "0", "held": "0", "spent": "12.5"}
    assert await cards.merchant_available() == "87.5"
    await cards.ledger_holds()
    events = [
        row[0]
        for row in await cards.app.rows(
            "SELECT type FROM events WHERE merchant_id = :m ORDER BY seq",
            m=cards.merchant.merchant_id,
        )
    ]
    assert events == [
        "card.application_updated",
        "card.created",
        "card.transaction",  # completed (created only confirmed what was decided)
        "card.updated",
    ]
