"""Cognito sign-in at the routes: merchants' people (user pool) and admins (admin pool), each
kept to their side; admin roles from `cognito:groups`; suspension; the audit log."""

import itertools

import pytest
from sqlalchemy import text

from nespay.apps import api
from nespay.auth.scopes import INVOICES_READ
from tests.fixtures.app import app_client
from tests.fixtures.database import make_settings
from tests.fixtures.factories import key_for, merchant_with_key

_n = itertools.count()


@pytest.fixture
async def client(cognito, database_url):
    settings = make_settings(database_url, **cognito.setting_values())
    async with app_client(api.create_app, settings) as (_, client):
        yield client


def bearer(token):
    return {"authorization": f"Bearer {token}"}


def new_user_token(cognito, pool="user", groups=(), kind="IdToken"):
    username = f"{pool}{next(_n)}-{id(cognito)}@example.com"
    sub = cognito.new_user(pool, username, groups)
    return sub, cognito.tokens(pool, username)[kind]


async def create_merchant(client, token, name="Warung Kopi"):
    return await client.post(
        "/api/v1/merchants",
        headers=bearer(token),
        json={"name": name, "email": "owner@warung.example", "country": "ID"},
    )


async def test_signed_in_user_creates_its_merchant_and_becomes_owner(client, cognito, database):
    sub, token = new_user_token(cognito)
    before = await client.get("/api/v1/merchants/me", headers=bearer(token))
    created = await create_merchant(client, token)
    me = await client.get("/api/v1/merchants/me", headers=bearer(token))
    again = await create_merchant(client, token)
    assert before.status_code == 403 and before.json()["error"]["code"] == "merchant_required"
    assert created.status_code == 201 and created.json()["status"] == "active"
    assert me.json()["id"] == created.json()["id"]
    assert again.status_code == 409 and again.json()["error"]["code"] == "merchant_exists"
    async with database.engine.connect() as conn:
        role = await conn.scalar(
            text("SELECT role FROM merchant_users WHERE cognito_sub = :s"), {"s": sub}
        )
    assert role == "owner"


async def test_access_tokens_work_like_id_tokens(client, cognito):
    _, token = new_user_token(cognito, kind="AccessToken")
    assert (await create_merchant(client, token)).status_code == 201


async def test_an_admin_token_never_acts_as_a_merchant(client, cognito):
    _, admin = new_user_token(cognito, "admin", ("admin",))
    response = await client.get("/api/v1/merchants/me", headers=bearer(admin))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "wrong_user_pool"


async def test_a_merchant_token_never_opens_the_backoffice(client, cognito):
    _, token = new_user_token(cognito)
    await create_merchant(client, token)
    response = await client.get("/api/backoffice/v1/merchants", headers=bearer(token))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "wrong_user_pool"


async def test_backoffice_without_credentials_is_401(client):
    response = await client.get("/api/backoffice/v1/merchants")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_required"


async def test_bad_tokens_at_a_route_are_401_never_500(client, cognito):
    _, token = new_user_token(cognito)
    header, payload, signature = token.split(".")
    for bad, code in [
        ("not-a-token", "token_malformed"),
        (f"{header}.{payload}.", "token_malformed"),
        (f"{header}.{payload[:-4]}AAAA.{signature}", "token_malformed"),
        (f"{header}.{payload}.{signature[:-6]}AAAAAA", "token_signature_invalid"),
    ]:
        response = await client.get("/api/v1/merchants/me", headers=bearer(bad))
        assert response.status_code == 401, bad
        assert response.json()["error"]["code"] in {code, "token_signature_invalid"}


async def test_support_admins_search_but_only_admins_change_merchants_or_read_audit(
    client, cognito, database
):
    target = await merchant_with_key(database, name="Searchable Batik House")
    _, support = new_user_token(cognito, "admin", ("support",))
    found = await client.get(
        "/api/backoffice/v1/merchants", params={"q": "batik h"}, headers=bearer(support)
    )
    patch = await client.patch(
        f"/api/backoffice/v1/merchants/{target.merchant_id}",
        headers=bearer(support),
        json={"status": "suspended", "reason": "fraud review"},
    )
    audit = await client.get("/api/backoffice/v1/audit-logs", headers=bearer(support))
    assert [m["id"] for m in found.json()["data"]] == [target.merchant_id]
    assert patch.status_code == 403 and patch.json()["error"]["code"] == "admin_role_missing"
    assert audit.status_code == 403


async def test_suspension_is_audited_and_refuses_the_merchants_keys_and_people(
    client, cognito, database
):
    _, owner_token = new_user_token(cognito)
    merchant = (await create_merchant(client, owner_token)).json()
    key = await client.post(
        "/api/v1/api-keys",
        headers=bearer(owner_token),
        json={"name": "server", "scopes": ["merchant:read"]},
    )
    admin_sub, admin = new_user_token(cognito, "admin", ("admin",))
    no_reason = await client.patch(
        f"/api/backoffice/v1/merchants/{merchant['id']}",
        headers=bearer(admin),
        json={"status": "suspended"},
    )
    suspended = await client.patch(
        f"/api/backoffice/v1/merchants/{merchant['id']}",
        headers=bearer(admin),
        json={"status": "suspended", "reason": "chargeback fraud"},
    )
    by_key = await client.get("/api/v1/merchants/me", headers={"x-api-key": key.json()["key"]})
    by_user = await client.get("/api/v1/merchants/me", headers=bearer(owner_token))
    log = await client.get(
        "/api/backoffice/v1/audit-logs",
        params={"merchant_id": merchant["id"], "action": "merchant.suspended"},
        headers=bearer(admin),
    )
    assert no_reason.status_code == 422 and no_reason.json()["error"]["code"] == "reason_required"
    assert suspended.json()["status"] == "suspended"
    assert by_key.status_code == 403 and by_key.json()["error"]["code"] == "merchant_suspended"
    assert by_user.status_code == 403 and by_user.json()["error"]["code"] == "merchant_suspended"
    (entry,) = log.json()["data"]
    assert entry["actor_type"] == "admin" and entry["actor_id"] == admin_sub
    assert entry["before"]["status"] == "active"
    assert entry["after"] == {"status": "suspended", "suspended_reason": "chargeback fraud"}
    assert entry["ip"] and entry["request_id"]


async def test_a_viewer_reads_but_cannot_change_the_merchant(client, cognito):
    _, owner = new_user_token(cognito)
    await create_merchant(client, owner)
    viewer_sub, viewer = new_user_token(cognito)
    added = await client.post(
        "/api/v1/merchants/me/users",
        headers=bearer(owner),
        json={"cognito_sub": viewer_sub, "role": "viewer"},
    )
    read = await client.get("/api/v1/merchants/me", headers=bearer(viewer))
    write = await client.patch(
        "/api/v1/merchants/me", headers=bearer(viewer), json={"default_expiry_s": 600}
    )
    owner_write = await client.patch(
        "/api/v1/merchants/me", headers=bearer(owner), json={"underpayment_tolerance_bps": 50}
    )
    assert added.status_code == 201
    assert read.status_code == 200
    assert write.status_code == 403 and write.json()["error"]["code"] == "scope_missing"
    assert owner_write.json()["underpayment_tolerance_bps"] == 50


async def test_whoami_tells_a_user_and_a_key_what_they_are_and_may_do(client, cognito, database):
    sub, token = new_user_token(cognito)
    before = (await client.get("/api/v1/whoami", headers=bearer(token))).json()
    merchant = (await create_merchant(client, token)).json()
    after = (await client.get("/api/v1/whoami", headers=bearer(token))).json()
    narrow = await key_for(database, merchant["id"], scopes={INVOICES_READ})
    by_key = (await client.get("/api/v1/whoami", headers=narrow.headers)).json()
    anonymous = await client.get("/api/v1/whoami")
    assert before["kind"] == "user" and before["id"] == sub and before["merchant_id"] is None
    assert after["kind"] == "merchant_user" and after["merchant_id"] == merchant["id"]
    assert after["role"] == "owner" and INVOICES_READ in after["scopes"]
    assert by_key == {
        "kind": "api_key",
        "id": narrow.key_id,
        "merchant_id": merchant["id"],
        "role": None,
        "scopes": [INVOICES_READ],
    }
    assert anonymous.status_code == 401
