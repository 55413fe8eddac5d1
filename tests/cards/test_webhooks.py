"""Rain's asynchronous webhooks through the inbox's card handlers: a user or card Nespay does
not know, a body not in Rain's shape, an unknown resource or action — each stored,
acknowledged and handled as a no-op (or ignored), never retried forever, never a 500; a card
user's KYC decision and a card's state followed, with their events, once."""

from __future__ import annotations

import pytest

from nespay.apps import api
from tests.callbacks.delivery_rig import eventually
from tests.fixtures.app import app_client
from tests.inbox.rig import rows
from tests.inbox.test_handling import admin, backoffice_settings  # noqa: F401 - a fixture

pytestmark = pytest.mark.own_database
BO = "/api/backoffice/v1/provider-webhooks"


@pytest.fixture
def card_settings(database_url, fake_rain, local_issuer):
    """With the backoffice's admin pool (the replay below) and 2 tries before `dead`."""
    return backoffice_settings(
        database_url, local_issuer, rain_api_url=fake_rain.url, webhook_max_attempts=2
    )


async def _settled(cards) -> list:
    found = await rows(cards.app.database)
    return found if found and all(r["status"] != "pending" for r in found) else []


async def test_webhooks_about_nobody_here_or_not_in_rains_shape_are_handled_as_no_ops(cards):
    rain = cards.rain
    sent = [
        rain.webhook("user", "updated", {"id": "nobody", "applicationStatus": "approved"}),
        rain.webhook("user", "updated", {"id": "x", "applicationStatus": "sideways"}),
        rain.webhook("user", "updated", []),
        rain.webhook("card", "updated", {"id": "nothing", "status": "active"}),
        rain.webhook("card", "updated", {"id": 7}),
        rain.transaction("completed", "no-such-card", 100, status="completed"),
        rain.transaction("updated", "no-such-card", 100, status="reversed"),
        rain.webhook("transaction", "completed", {"spend": {"amount": "1"}}),
        rain.webhook("contract", "created", {"id": "c"}),
        rain.webhook("spaceship", "launched", {"id": "s"}),
    ]
    for raw, headers in sent:
        answer = await cards.send(raw, headers)
        assert answer.status_code == 200, answer.text
    settled = await eventually(lambda: _settled(cards), what="all handled")
    statuses = sorted(r["status"] for r in settled)
    assert statuses == ["handled"] * 8 + ["ignored"] * 2
    assert all(r["attempts"] == 1 and r["last_error"] is None for r in settled)
    assert await cards.app.scalar("SELECT count(*) FROM events") == 0


async def test_a_kyc_decision_and_a_card_change_are_followed_once_with_their_events(cards):
    user, card, rain_card = await cards.funded_card("1")
    rain_user = await cards.rain_id_of("card_users", user["id"])
    raw, headers = cards.rain.approve(rain_user, "locked")
    for _ in range(2):  # Rain's retry: a duplicate, acknowledged, not handled again
        assert (await cards.send(raw, headers)).json()["received"] is True

    async def locked():
        got = await cards.client.get(f"/api/v1/card-users/{user['id']}", headers=cards.headers())
        return got.json()["application_status"] == "locked"

    await eventually(locked, what="application locked")
    limit = {"amount": 7500, "frequency": "per24HourPeriod"}
    raw, headers = cards.rain.card_updated(rain_card, limit=limit)
    assert (await cards.send(raw, headers)).status_code == 200

    async def new_limit():
        got = await cards.client.get(f"/api/v1/cards/{card['id']}", headers=cards.headers())
        return got.json()["limit"] == {"amount": "75", "frequency": "per24HourPeriod"}

    await eventually(new_limit, what="limit followed")
    await eventually(lambda: _settled(cards), what="all handled")
    events = await cards.app.rows(
        "SELECT type FROM events WHERE merchant_id = :m ORDER BY seq", m=cards.merchant.merchant_id
    )
    assert [e[0] for e in events] == [
        "card.application_updated",  # approved
        "card.created",
        "card.application_updated",  # locked, once
        "card.updated",
    ]


async def test_a_card_handler_that_fails_is_retried_then_dead_then_replayed_and_settles_once(
    cards,
    card_settings,
    admin,  # noqa: F811
):
    user, card, rain_card = await cards.funded_card("10")
    assert (await cards.authorise(rain_card, 400, transaction_id="tx-f")).status_code == 200
    # A broken card user row: the completion's handler cannot price a cent and raises.
    await cards.app.execute("UPDATE card_users SET cent_units = NULL WHERE id = :i", i=user["id"])
    raw, headers = cards.rain.transaction(
        "completed", rain_card, 400, status="completed", transaction_id="tx-f"
    )
    webhook_id = (await cards.send(raw, headers)).json()["id"]
    (dead,) = await eventually(
        lambda: rows(cards.app.database, "id = :i AND status = 'dead'", i=webhook_id),
        what="dead",
    )
    assert dead["attempts"] == 2 and dead["last_error"].startswith("TypeError")
    assert await _held(cards, user["id"]) == 400 * 10**4

    await cards.app.execute("UPDATE card_users SET cent_units = 10000 WHERE id = :i", i=user["id"])
    async with app_client(api.create_app, card_settings) as (_, backoffice):
        replayed = await backoffice.post(f"{BO}/{webhook_id}/replay", headers=admin())
    assert replayed.status_code == 202, replayed.text
    await eventually(
        lambda: rows(cards.app.database, "id = :i AND status = 'handled'", i=webhook_id),
        what="handled after the replay",
    )
    assert await cards.balance(user["id"]) == {"available": "6", "held": "0", "spent": "4"}
    await cards.ledger_holds()


async def _held(cards, card_user_id: str) -> int:
    return int(
        await cards.app.scalar(
            "SELECT debits_pending FROM ledger_accounts WHERE id LIKE :p",
            p=f"c:{card_user_id}:available:%",
        )
    )
