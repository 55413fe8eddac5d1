"""The in-process auth cache (API key or Cognito sub → principal and merchant settings): with
Redis, replicas serve keys from memory and still see a revocation (tests/identity/test_apikeys.py),
a suspension or a settings change on their very next request; without Redis nothing is cached."""

from datetime import datetime

import pytest

from nespay.apikeys import service as apikeys
from nespay.apps import api
from nespay.auth.cache import mark_changed
from nespay.auth.principals import Actor
from nespay.auth.scopes import API_KEYS_READ
from nespay.db import Database, after_commit
from nespay.runtime import Runtime
from tests.fixtures.app import app_client
from tests.fixtures.factories import key_for, merchant_with_key, register_network


def cached(app) -> int:
    return len(app.state.runtime.principals._entries)


async def test_a_cached_key_still_needs_its_whole_secret(redis_settings, database):
    owner = await merchant_with_key(database)
    async with app_client(api.create_app, redis_settings) as (app, client):
        assert (await client.get("/api/v1/merchants/me", headers=owner.headers)).status_code == 200
        assert (await client.get("/api/v1/merchants/me", headers=owner.headers)).status_code == 200
        assert cached(app) >= 1
        wrong = owner.key[:-1] + ("A" if owner.key[-1] != "A" else "B")
        response = await client.get("/api/v1/merchants/me", headers={"x-api-key": wrong})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_invalid"


async def test_a_settings_change_reaches_invoice_creation_on_every_replica(
    redis_settings, database
):
    owner = await merchant_with_key(database)
    network = await register_network(database, ["http://127.0.0.1:9"], "0x" + "22" * 20)
    body = {"amount": "5", "currency": "USDT", "network": network}

    def lifetime(response) -> float:
        invoice = response.json()
        expires = datetime.fromisoformat(invoice["expires_at"])
        return (expires - datetime.fromisoformat(invoice["created_at"])).total_seconds()

    async with (
        app_client(api.create_app, redis_settings) as (_, one),
        app_client(api.create_app, redis_settings) as (_, two),
    ):
        first = await two.post("/api/v1/invoices", json=body, headers=owner.headers)
        changed = await one.patch(
            "/api/v1/merchants/me", json={"default_expiry_s": 3600}, headers=owner.headers
        )
        second = await two.post("/api/v1/invoices", json=body, headers=owner.headers)
    assert first.status_code == 201 and changed.status_code == 200, changed.text
    assert lifetime(first) == 900
    assert second.status_code == 201 and lifetime(second) == 3600


async def test_without_redis_every_request_reads_the_database(settings, database):
    owner = await merchant_with_key(database)
    async with app_client(api.create_app, settings) as (app, client):
        for _ in range(2):
            response = await client.get("/api/v1/merchants/me", headers=owner.headers)
            assert response.status_code == 200
        assert cached(app) == 0


async def test_a_credential_change_reaches_redis_even_when_an_after_commit_hook_fails(
    settings,
):
    told: list[str] = []

    async def credentials_changed() -> None:
        told.append("credentials_changed")

    async def failing_hook() -> None:
        told.append("hook")
        raise RuntimeError("wake-up not published")

    db = Database(settings)
    db.credentials_changed = credentials_changed
    try:
        with pytest.raises(RuntimeError):
            async with db.session() as session:
                mark_changed(session)
                after_commit(session, failing_hook)
    finally:
        await db.dispose()
    assert told == ["credentials_changed", "hook"]


async def test_renaming_the_merchant_keeps_the_auth_cache(redis_settings, database):
    owner = await merchant_with_key(database)
    async with app_client(api.create_app, redis_settings) as (app, client):
        for _ in range(2):
            assert (
                await client.get("/api/v1/merchants/me", headers=owner.headers)
            ).status_code == 200
        renamed = await client.patch(
            "/api/v1/merchants/me", json={"name": "Renamed"}, headers=owner.headers
        )
        kept = cached(app)
        await client.patch(
            "/api/v1/merchants/me", json={"default_expiry_s": 1800}, headers=owner.headers
        )
        after_expiry_change = cached(app)
    assert renamed.status_code == 200, renamed.text
    assert kept >= 1  # a name is not something a credential's cache entry holds
    assert after_expiry_change == 0


def bearer_of(cognito, pool: str, name: str, groups=()) -> dict[str, str]:
    username = f"{name}-{id(cognito)}@example.com"
    cognito.new_user(pool, username, groups)
    return {"authorization": f"Bearer {cognito.tokens(pool, username)['IdToken']}"}


async def test_a_suspension_refuses_the_merchants_cached_keys_and_people_on_every_replica(
    redis_settings, cognito, database
):
    settings = redis_settings.model_copy(update=cognito.setting_values())
    owner = bearer_of(cognito, "user", "cached-owner")
    admin = bearer_of(cognito, "admin", "suspender", ("admin",))
    body = {"name": "Cached Batik", "email": "owner@batik.example", "country": "ID"}
    async with (
        app_client(api.create_app, settings) as (_, one),
        app_client(api.create_app, settings) as (app_two, two),
    ):
        merchant_id = (await two.post("/api/v1/merchants", headers=owner, json=body)).json()["id"]
        key = await key_for(database, merchant_id)
        for _ in range(2):
            assert (await two.get("/api/v1/whoami", headers=key.headers)).status_code == 200
            assert (await two.get("/api/v1/whoami", headers=owner)).status_code == 200
        assert cached(app_two) == 2  # the key and the owner's sub
        suspended = await one.patch(
            f"/api/backoffice/v1/merchants/{merchant_id}",
            headers=admin,
            json={"status": "suspended", "reason": "chargeback fraud"},
        )
        by_key = await two.get("/api/v1/whoami", headers=key.headers)
        by_user = await two.get("/api/v1/whoami", headers=owner)
    assert suspended.status_code == 200, suspended.text
    assert by_key.status_code == 403 and by_key.json()["error"]["code"] == "merchant_suspended"
    assert by_user.status_code == 403 and by_user.json()["error"]["code"] == "merchant_suspended"


async def test_a_key_revoked_by_a_job_or_the_cli_is_refused_at_once_by_a_replica(
    redis_settings, database
):
    """Not only requests: a unit of work of the jobs process or the CLI (`Database.session`)
    that changes a credential tells every replica's cache too."""
    owner = await merchant_with_key(database)
    victim = await key_for(database, owner.merchant_id, scopes={API_KEYS_READ})
    jobs = Runtime(redis_settings, "jobs")
    await jobs.start()
    try:
        async with app_client(api.create_app, redis_settings) as (app, client):
            for _ in range(3):
                served = await client.get("/api/v1/api-keys", headers=victim.headers)
                assert served.status_code == 200
            assert cached(app) >= 1
            async with jobs.db.session() as session:
                await apikeys.revoke(
                    session, owner.merchant_id, victim.key_id, Actor("system", "test-job")
                )
            after = await client.get("/api/v1/api-keys", headers=victim.headers)
    finally:
        await jobs.close()
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "api_key_revoked"
