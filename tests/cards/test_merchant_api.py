"""The merchant's card routes: Rain called with its key, retried on 429 and 5xx only, its
refusals a clear 4xx/502 that stores nothing; idempotent creations and fundings; fundings
never overdraw either side; bad input a clear 4xx, never a 500; scopes and merchants apart."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from tests.cards.conftest import APPLICATION
from tests.fixtures.factories import key_for
from tests.invoices.conftest import error_code

pytestmark = pytest.mark.own_database


async def _count(cards, table: str) -> int:
    return await cards.app.scalar(f"SELECT count(*) FROM {table}")  # noqa: S608 - constant


async def test_rain_answering_503_or_429_is_retried_and_a_400_is_not(cards, fake_rain):
    fake_rain.fail_next(503)
    fake_rain.fail_next(429)
    created = await cards.apply()
    assert len(fake_rain.calls("POST", "/v1/issuing/applications/user")) == 3
    assert created["application_status"] == "pending"

    fake_rain.fail_next(400)
    refused = await cards.client.post(
        "/api/v1/card-users", json=APPLICATION, headers=cards.headers()
    )
    assert refused.status_code == 422 and error_code(refused) == "card_provider_rejected"
    assert len(fake_rain.calls("POST", "/v1/issuing/applications/user")) == 4
    assert await _count(cards, "card_users") == 1


async def test_rain_down_beyond_the_retries_is_a_502_and_nothing_is_kept(cards, fake_rain):
    fake_rain.fail_next(502, times=3)
    down = await cards.client.post("/api/v1/card-users", json=APPLICATION, headers=cards.headers())
    assert down.status_code == 502 and error_code(down) == "card_provider_unavailable"
    assert len(fake_rain.calls("POST", "/v1/issuing/applications/user")) == 3
    assert await _count(cards, "card_users") == 0


async def test_a_wrong_rain_key_is_a_502_that_names_the_setting_not_the_key(
    api_for, card_settings, merchant
):
    settings = card_settings.model_copy(update={"rain_api_key": SecretStr("not-rains-key")})
    async with api_for(settings) as app:
        answer = await app.client.post(
            "/api/v1/card-users", json=APPLICATION, headers=merchant.headers
        )
    assert answer.status_code == 502 and error_code(answer) == "card_provider_unavailable"
    assert "RAIN_API_KEY" in answer.json()["error"]["message"]
    assert "not-rains-key" not in answer.text


async def test_the_same_idempotency_key_gets_the_same_card_user_and_another_body_a_409(
    cards, fake_rain
):
    headers = cards.headers("apply-1")
    first = await cards.client.post("/api/v1/card-users", json=APPLICATION, headers=headers)
    again = await cards.client.post("/api/v1/card-users", json=APPLICATION, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() and again.headers["idempotent-replayed"] == "true"
    other = await cards.client.post(
        "/api/v1/card-users", json={**APPLICATION, "occupation": "Pilot"}, headers=headers
    )
    assert other.status_code == 409 and error_code(other) == "idempotency_key_reused"
    assert len(fake_rain.calls("POST", "/v1/issuing/applications/user")) == 1


async def test_an_application_with_a_share_token_needs_no_documents_and_keeps_none(cards):
    body = {
        k: APPLICATION[k]
        for k in (
            "ip_address",
            "occupation",
            "annual_salary",
            "account_purpose",
            "expected_monthly_volume",
            "is_terms_of_service_accepted",
        )
    }
    answer = await cards.client.post(
        "/api/v1/card-users", json={**body, "sumsub_share_token": "tok-1"}, headers=cards.headers()
    )
    assert answer.status_code == 201, answer.text
    missing = await cards.client.post("/api/v1/card-users", json=body, headers=cards.headers())
    assert missing.status_code == 422 and error_code(missing) == "validation_error"
    columns = await cards.app.rows(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'card_users'"
    )
    assert not {c[0] for c in columns} & {"national_id", "birth_date", "address"}


async def test_fundings_move_the_merchants_balance_never_overdraw_and_replay_by_key(cards):
    user = await cards.approved_user()
    too_much = await cards.fund(user["id"], "100.01")
    assert too_much.status_code == 422 and error_code(too_much) == "insufficient_balance"
    key = {**cards.headers("fund-1")}
    body = {"network": cards.network, "currency": "USDT", "amount": "40"}
    url = f"/api/v1/card-users/{user['id']}/fundings"
    first = await cards.client.post(url, json=body, headers=key)
    again = await cards.client.post(url, json=body, headers=key)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"] and again.headers["idempotent-replayed"]
    other = await cards.client.post(url, json={**body, "amount": "41"}, headers=key)
    assert other.status_code == 409 and error_code(other) == "idempotency_key_reused"
    assert await cards.merchant_available() == "60"
    assert await cards.balance(user["id"]) == {"available": "40", "held": "0", "spent": "0"}

    card = await cards.card(user["id"])
    rain_card = await cards.rain_id_of("cards", card["id"])
    assert (await cards.authorise(rain_card, 1000)).status_code == 200
    defund = f"/api/v1/card-users/{user['id']}/defundings"
    held_back = await cards.client.post(
        defund, json={**body, "amount": "30.01"}, headers=cards.headers()
    )
    assert held_back.status_code == 422 and error_code(held_back) == "insufficient_balance"
    assert await cards.balance(user["id"]) == {"available": "30", "held": "10", "spent": "0"}


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        ("-1", "validation_error"),
        ("0", "validation_error"),
        ("1e3", "validation_error"),
        ("10.5.1", "validation_error"),
        ("0.001", "invalid_amount"),
        (10, "validation_error"),
        ("9" * 40, "validation_error"),
    ],
)
async def test_funding_amounts_in_the_wrong_form_are_a_clear_4xx_and_move_nothing(
    cards, amount, code
):
    user = await cards.approved_user()
    answer = await cards.fund(user["id"], amount)
    assert answer.status_code == 422, answer.text
    assert error_code(answer) == code
    assert await cards.merchant_available() == "100"


async def test_only_usd_stablecoins_fund_a_card_user_and_its_currency_stays_fixed(cards):
    user = await cards.approved_user()
    eth = await cards.fund(user["id"], "1", currency="ETH")
    assert eth.status_code == 422 and error_code(eth) == "card_currency_not_allowed"
    nowhere = await cards.fund(user["id"], "1", network="no-such-network")
    assert nowhere.status_code == 422 and error_code(nowhere) == "card_currency_not_allowed"
    assert (await cards.fund(user["id"], "1")).status_code == 201
    other = await cards.app.network()
    from tests.fixtures.factories import fund_merchant

    await fund_merchant(cards.app.database, cards.merchant.merchant_id, other, 5_000_000)
    elsewhere = await cards.fund(user["id"], "1", network=other)
    assert elsewhere.status_code == 409 and error_code(elsewhere) == "card_user_currency_fixed"


async def test_cards_need_the_cards_scopes_and_another_merchants_card_user_is_not_found(
    cards, other_merchant
):
    user, card, _ = await cards.funded_card("5")
    reader = await key_for(cards.app.database, cards.merchant.merchant_id, scopes={"cards:read"})
    assert (
        await cards.client.get(f"/api/v1/card-users/{user['id']}", headers=reader.headers)
    ).status_code == 200
    write = await cards.client.post("/api/v1/card-users", json=APPLICATION, headers=reader.headers)
    assert write.status_code == 403
    for path in (
        f"/api/v1/card-users/{user['id']}",
        f"/api/v1/card-users/{user['id']}/balances",
        f"/api/v1/cards/{card['id']}",
        f"/api/v1/cards/{card['id']}/transactions",
    ):
        foreign = await cards.client.get(path, headers=other_merchant.headers)
        assert foreign.status_code == 404, path
    patched = await cards.client.patch(
        f"/api/v1/cards/{card['id']}", json={"status": "locked"}, headers=other_merchant.headers
    )
    assert patched.status_code == 404
    funded = await cards.client.post(
        f"/api/v1/card-users/{user['id']}/fundings",
        json={"network": cards.network, "currency": "USDT", "amount": "1"},
        headers=other_merchant.headers,
    )
    assert funded.status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"status": "frozen"},
        {"limit": {"amount": "10", "frequency": "perDay"}},
        {"limit": {"amount": "-5", "frequency": "allTime"}},
        {"limit": {"amount": "1.001", "frequency": "allTime"}},
        {"status": "locked", "pan": "4111111111111111"},
    ],
)
async def test_a_card_change_in_the_wrong_form_is_a_clear_4xx_and_reaches_no_one(cards, body):
    user, card, rain_card = await cards.funded_card("5")
    patches = len(cards.rain.calls("PATCH", "/v1/issuing/cards"))
    answer = await cards.client.patch(
        f"/api/v1/cards/{card['id']}", json=body, headers=cards.headers()
    )
    assert answer.status_code == 422, answer.text
    assert len(cards.rain.calls("PATCH", "/v1/issuing/cards")) == patches
    assert cards.rain.cards[rain_card]["status"] == "active"


async def test_a_new_limit_goes_to_rain_in_cents_and_shows_in_dollars(cards, fake_rain):
    _, card, rain_card = await cards.funded_card("5")
    answer = await cards.client.patch(
        f"/api/v1/cards/{card['id']}",
        json={"limit": {"amount": "250.75", "frequency": "per7DayPeriod"}},
        headers=cards.headers(),
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["limit"] == {"amount": "250.75", "frequency": "per7DayPeriod"}
    assert fake_rain.cards[rain_card]["limit"] == {"amount": 25075, "frequency": "per7DayPeriod"}
