"""Backoffice rates through the real app with real (moto) admin tokens: who may set a rate,
what a rate may be, and the audit trail."""

import uuid

import pytest
from sqlalchemy import text

from nespay.apps.common import build_app
from nespay.rates.endpoints import rates_router
from tests.fixtures.app import app_client
from tests.fixtures.database import make_settings

PREFIX = "/api/backoffice/v1"
BASE, QUOTE = "TSTUSD", "IDR"  # a pair no other test uses; removed afterwards


def bearer(token):
    return {"authorization": f"Bearer {token}"}


def new_admin(cognito, groups):
    username = f"rates-{'-'.join(groups) or 'nogroup'}-{uuid.uuid4().hex[:8]}@example.com"
    sub = cognito.new_user("admin", username, groups)
    return sub, cognito.tokens("admin", username)["IdToken"]


@pytest.fixture
async def backoffice(database_url, cognito, database):
    cognito_values = cognito.settings().model_dump(
        include={
            "cognito_admin_pool_id",
            "cognito_admin_client_id",
            "cognito_user_pool_id",
            "cognito_user_client_id",
            "cognito_endpoint_url",
            "aws_region",
        }
    )
    settings = make_settings(database_url, **cognito_values)

    def factory(settings):
        return build_app("api", settings, routers=[(PREFIX, rates_router)])

    async with app_client(factory, settings) as (_, client):
        yield client
    async with database.engine.begin() as conn:
        await conn.execute(text("DELETE FROM rates WHERE base = :b"), {"b": BASE})


async def last_audit(database, action):
    async with database.engine.connect() as conn:
        result = await conn.execute(
            text(
                "SELECT actor_type, actor_id, target_type, target_id, before, after"
                " FROM audit_logs WHERE action = :a AND target_id = :t ORDER BY id DESC LIMIT 1"
            ),
            {"a": action, "t": f"{BASE}/{QUOTE}"},
        )
        return result.mappings().one_or_none()


async def test_an_admin_sets_a_rate_it_is_listed_with_its_age_and_audited(
    backoffice, cognito, database
):
    admin_token = cognito.tokens("admin")["IdToken"]
    response = await backoffice.put(
        f"{PREFIX}/rates/{BASE.lower()}/{QUOTE}",
        headers=bearer(admin_token),
        json={"rate": "16250.5"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["base"] == BASE and body["quote"] == QUOTE and body["source"] == "admin"
    assert body["rate"] == "16250.5" and body["fresh"] is True and body["age_s"] >= 0

    listed = await backoffice.get(f"{PREFIX}/rates", headers=bearer(admin_token))
    assert listed.status_code == 200
    rows = [r for r in listed.json()["data"] if (r["base"], r["quote"]) == (BASE, QUOTE)]
    assert [(r["source"], r["rate"]) for r in rows] == [("admin", "16250.5")]
    assert {"age_s", "fetched_at", "updated_by"} <= set(rows[0])
    assert listed.json()["sources"] == ["admin", "coingecko"]

    entry = await last_audit(database, "rate.set")
    assert entry["actor_type"] == "admin" and entry["actor_id"] == rows[0]["updated_by"]
    assert entry["target_type"] == "rate"
    assert entry["before"] is None and entry["after"]["rate"] == "16250.5"

    again = await backoffice.put(
        f"{PREFIX}/rates/{BASE}/{QUOTE}", headers=bearer(admin_token), json={"rate": "16300"}
    )
    assert again.status_code == 200 and again.json()["rate"] == "16300"
    entry = await last_audit(database, "rate.set")
    assert entry["before"]["rate"] == "16250.5" and entry["after"]["rate"] == "16300"


async def test_finance_may_set_a_rate_support_may_only_read(backoffice, cognito):
    _, finance = new_admin(cognito, ("finance",))
    _, support = new_admin(cognito, ("support",))
    url = f"{PREFIX}/rates/{BASE}/{QUOTE}"
    assert (
        await backoffice.put(url, headers=bearer(finance), json={"rate": "1"})
    ).status_code == 200
    refused = await backoffice.put(url, headers=bearer(support), json={"rate": "2"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "admin_role_missing"
    assert (await backoffice.get(f"{PREFIX}/rates", headers=bearer(support))).status_code == 200


async def test_tokens_without_an_admin_group_or_from_the_user_pool_are_refused(backoffice, cognito):
    _, nobody = new_admin(cognito, ())
    user_token = cognito.tokens("user")["IdToken"]
    url = f"{PREFIX}/rates/{BASE}/{QUOTE}"
    no_group = await backoffice.put(url, headers=bearer(nobody), json={"rate": "1"})
    assert no_group.status_code == 403
    assert no_group.json()["error"]["code"] == "admin_role_missing"
    wrong_pool = await backoffice.put(url, headers=bearer(user_token), json={"rate": "1"})
    assert wrong_pool.status_code == 403
    assert wrong_pool.json()["error"]["code"] == "wrong_user_pool"
    anonymous = await backoffice.put(url, json={"rate": "1"})
    assert anonymous.status_code == 401
    assert (await backoffice.get(f"{PREFIX}/rates", headers=bearer(nobody))).status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        b'{"rate": "abc"}',
        b'{"rate": "-1"}',
        b'{"rate": "0"}',
        b'{"rate": "0.000"}',
        b'{"rate": 1e400}',
        b'{"rate": "1e400"}',
        b'{"rate": 16250.5}',  # a JSON number would pass through a float: refused
        b'{"rate": "1e5"}',
        b'{"rate": "0.0000000000000000001"}',  # 19 places do not fit NUMERIC(38, 18)
        b'{"rate": "100000000000000000000"}',  # 21 digits
        b'{"rate": "NaN"}',
        b'{"rate": " 1"}',
        b'{"rate": "1", "extra": true}',
        b"{}",
    ],
)
async def test_a_bad_rate_is_422_and_changes_nothing(backoffice, cognito, database, body):
    admin_token = cognito.tokens("admin")["IdToken"]
    response = await backoffice.put(
        f"{PREFIX}/rates/{BASE}/{QUOTE}",
        headers={**bearer(admin_token), "content-type": "application/json"},
        content=body,
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
    async with database.engine.connect() as conn:
        count = await conn.scalar(text("SELECT count(*) FROM rates WHERE base = :b"), {"b": BASE})
    assert count == 0


async def test_bad_codes_are_422(backoffice, cognito):
    admin_token = cognito.tokens("admin")["IdToken"]
    headers = bearer(admin_token)
    same = await backoffice.put(f"{PREFIX}/rates/IDR/idr", headers=headers, json={"rate": "1"})
    assert same.status_code == 422 and same.json()["error"]["code"] == "invalid_rate"
    long = "X" * 17
    too_long = await backoffice.put(
        f"{PREFIX}/rates/{long}/IDR", headers=headers, json={"rate": "1"}
    )
    assert too_long.status_code == 422


async def test_deleting_an_admin_rate_is_audited_and_a_missing_one_is_404(
    backoffice, cognito, database
):
    admin_token = cognito.tokens("admin")["IdToken"]
    url = f"{PREFIX}/rates/{BASE}/{QUOTE}"
    await backoffice.put(url, headers=bearer(admin_token), json={"rate": "16250.5"})
    deleted = await backoffice.delete(url, headers=bearer(admin_token))
    assert deleted.status_code == 204
    entry = await last_audit(database, "rate.delete")
    assert entry["before"]["rate"] == "16250.5" and entry["after"] is None
    missing = await backoffice.delete(url, headers=bearer(admin_token))
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "rate_not_found"
