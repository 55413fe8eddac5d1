"""API keys: shown once, stored hashed, scoped, revocable everywhere at once, expiring."""

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from nespay.apps import api
from nespay.auth.scopes import API_KEYS_READ, API_KEYS_WRITE, INVOICES_READ
from tests.fixtures.app import app_client
from tests.fixtures.factories import key_for, merchant_with_key


@pytest.fixture
async def client(settings):
    async with app_client(api.create_app, settings) as (_, client):
        yield client


async def audit_actions(database, target_id):
    async with database.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT action FROM audit_logs WHERE target_id = :t ORDER BY id"), {"t": target_id}
        )
        return [row[0] for row in rows]


async def test_key_is_shown_once_and_only_its_hash_is_stored(client, database):
    owner = await merchant_with_key(database)
    created = await client.post(
        "/api/v1/api-keys",
        headers=owner.headers,
        json={"name": "checkout server", "scopes": [INVOICES_READ]},
    )
    assert created.status_code == 201
    body = created.json()
    assert body["key"].startswith("npk_") and body["scopes"] == [INVOICES_READ]
    listed = await client.get("/api/v1/api-keys", headers=owner.headers)
    assert all("key" not in item for item in listed.json()["data"])
    assert body["id"] in [item["id"] for item in listed.json()["data"]]
    async with database.engine.connect() as conn:
        stored = (
            (await conn.execute(text("SELECT * FROM api_keys WHERE id = :i"), {"i": body["id"]}))
            .mappings()
            .one()
        )
    assert bytes(stored["secret_hash"]) == hashlib.sha256(body["key"].encode()).digest()
    assert body["key"] not in str(dict(stored))
    assert await audit_actions(database, body["id"]) == ["api_key.created"]


async def test_the_new_key_works_and_records_last_use(client, database):
    owner = await merchant_with_key(database)
    new = await client.post(
        "/api/v1/api-keys",
        headers=owner.headers,
        json={"name": "reader", "scopes": [API_KEYS_READ]},
    )
    key = new.json()["key"]
    assert (await client.get("/api/v1/api-keys", headers={"x-api-key": key})).status_code == 200
    listed = await client.get("/api/v1/api-keys", headers={"x-api-key": key})
    mine = next(item for item in listed.json()["data"] if item["id"] == new.json()["id"])
    assert mine["last_used_at"] is not None


async def test_revocation_takes_effect_at_once_on_every_replica(redis_settings, database):
    """Two api replicas sharing Redis; the second serves the key from its memory, and refuses
    it on the request right after the first one revoked it."""
    owner = await merchant_with_key(database)
    victim = await key_for(database, owner.merchant_id, scopes={API_KEYS_READ})
    async with (
        app_client(api.create_app, redis_settings) as (_, one),
        app_client(api.create_app, redis_settings) as (_, two),
    ):
        for _ in range(2):  # the first request learns Redis's generation, the second caches
            assert (await two.get("/api/v1/api-keys", headers=victim.headers)).status_code == 200
        # Its scope taken away in the database alone (nothing announces it): the key still
        # works on the second replica, which shows that replica answers from its memory.
        async with database.engine.begin() as conn:
            await conn.execute(
                text("UPDATE api_keys SET scopes = '{}' WHERE id = :k"), {"k": victim.key_id}
            )
        cached = await two.get("/api/v1/api-keys", headers=victim.headers)
        revoked = await one.delete(f"/api/v1/api-keys/{victim.key_id}", headers=owner.headers)
        after = await two.get("/api/v1/api-keys", headers=victim.headers)
        still = await two.get("/api/v1/api-keys", headers=owner.headers)
    assert cached.status_code == 200, cached.text
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "api_key_revoked"
    assert still.status_code == 200  # the other keys keep working (read again, then cached)
    assert await audit_actions(database, victim.key_id) == ["api_key.created", "api_key.revoked"]


async def test_expired_key_is_refused(client, database):
    expired = await merchant_with_key(database, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    response = await client.get("/api/v1/merchants/me", headers=expired.headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_expired"


@pytest.mark.parametrize(
    ("mangle", "code"),
    [
        (lambda key: key[:-5], "api_key_malformed"),  # truncated
        (lambda key: key + "x", "api_key_malformed"),
        (lambda key: "sk_live_" + key[4:], "api_key_malformed"),
        (lambda key: key[:-1] + ("A" if key[-1] != "A" else "B"), "api_key_invalid"),
        (lambda key: "npk_aaaaaaaaaaaa" + key[16:], "api_key_invalid"),  # unknown prefix
        (lambda key: "", "api_key_malformed"),
    ],
)
async def test_wrong_keys_are_401_each_with_its_code(client, database, mangle, code):
    owner = await merchant_with_key(database)
    response = await client.get("/api/v1/merchants/me", headers={"x-api-key": mangle(owner.key)})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    assert owner.key not in response.text


async def test_a_key_cannot_grant_scopes_it_does_not_have(client, database):
    owner = await merchant_with_key(database)
    limited = await key_for(database, owner.merchant_id, scopes={API_KEYS_WRITE, INVOICES_READ})
    response = await client.post(
        "/api/v1/api-keys",
        headers=limited.headers,
        json={"name": "escalate", "scopes": [INVOICES_READ, "withdrawals:write"]},
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "scopes_not_allowed"


async def test_unknown_scope_is_a_validation_error_naming_the_field(client, database):
    owner = await merchant_with_key(database)
    response = await client.post(
        "/api/v1/api-keys", headers=owner.headers, json={"name": "x", "scopes": ["god:mode"]}
    )
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "scopes"


async def test_missing_scope_is_403(client, database):
    owner = await merchant_with_key(database, scopes={INVOICES_READ})
    response = await client.get("/api/v1/api-keys", headers=owner.headers)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "scope_missing"
    assert API_KEYS_READ in response.json()["error"]["message"]


async def test_revoking_another_merchants_key_is_404_and_changes_nothing(client, database):
    mine = await merchant_with_key(database)
    theirs = await merchant_with_key(database)
    response = await client.delete(f"/api/v1/api-keys/{theirs.key_id}", headers=mine.headers)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "api_key_not_found"
    assert (await client.get("/api/v1/merchants/me", headers=theirs.headers)).status_code == 200


async def test_repeated_failures_reach_the_audit_log_as_a_counter(settings, database):
    # A fresh client IP (through a trusted proxy) so the count starts at zero.
    settings = settings.model_copy(update={"trusted_proxies": ["127.0.0.1/32"]})
    ip = "203.0.113.77"
    async with app_client(api.create_app, settings) as (_, client):
        for _ in range(5):
            response = await client.get(
                "/api/v1/merchants/me",
                headers={"x-api-key": "npk_zzzzzzzzzzzz_" + "A" * 40, "x-forwarded-for": ip},
            )
            assert response.status_code == 401
    async with database.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT detail FROM audit_logs WHERE action = 'auth.sign_in_failed'"
                " AND ip = CAST(:ip AS inet) ORDER BY id"
            ),
            {"ip": ip},
        )
        details = [row[0] for row in rows]
    assert [d["failures"] for d in details] == [1, 5]
    assert all(d["code"] == "api_key_invalid" for d in details)
