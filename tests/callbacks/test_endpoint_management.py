"""Managing a webhook endpoint: changes (PATCH), disabling and re-enabling (pending deliveries
resume), secret rotation (24 h of dual signing), and the signed test ping."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from nespay.apps import api
from nespay.auth.scopes import ALL_SCOPES, WEBHOOKS_WRITE
from nespay.callbacks.keys import signing_keys
from nespay.callbacks.service import signing_secret
from nespay.kit import signing
from nespay.models import WebhookEndpoint
from tests.fixtures.app import app_client, unthrottled
from tests.fixtures.callbacks import API, add_delivery, emit_event, register
from tests.fixtures.factories import key_for, merchant_with_key

HOOK = "/hooks/nespay"


@pytest.fixture
async def client(settings):
    async with app_client(api.create_app, unthrottled(settings)) as (_, client):
        yield client


async def audit_entries(database, target_id):
    async with database.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT action, actor_type, before, after, detail FROM audit_logs"
                " WHERE target_id = :t ORDER BY id"
            ),
            {"t": target_id},
        )
        return [row._mapping for row in rows]


async def patch(client, owner, endpoint_id, **body):
    return await client.patch(
        f"{API}/webhook-endpoints/{endpoint_id}", headers=owner.headers, json=body
    )


# --- PATCH ---------------------------------------------------------------------------------------


async def test_patch_changes_only_the_fields_sent_and_audits_before_and_after(client, database):
    owner = await merchant_with_key(database)
    endpoint = await register(client, owner)
    response = await patch(
        client,
        owner,
        endpoint["id"],
        url="http://127.0.0.1:9/new",
        events=["payment.detected", "invoice.paid", "invoice.paid"],
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["url"] == "http://127.0.0.1:9/new"
    assert body["events"] == ["invoice.paid", "payment.detected"]
    assert body["description"] is None and body["enabled"] is True
    for field in ("disabled_at", "disabled_reason", "failing_since", "previous_secret_expires_at"):
        assert body[field] is None
    again = await patch(client, owner, endpoint["id"], description="orders")
    assert again.json()["url"] == "http://127.0.0.1:9/new"
    assert again.json()["description"] == "orders"
    updated = [e for e in await audit_entries(database, endpoint["id"]) if "updated" in e["action"]]
    assert updated[0]["before"] == {"url": endpoint["url"], "events": ["invoice.paid"]}
    assert updated[0]["after"] == {
        "url": "http://127.0.0.1:9/new",
        "events": ["invoice.paid", "payment.detected"],
    }
    assert updated[1]["before"] == {"description": None}
    assert updated[1]["after"] == {"description": "orders"}


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"events": ["invoice.teleported"]}, "validation_error", "events"),
        ({"events": []}, "validation_error", "events"),
        ({"events": None}, "validation_error", "events"),
        ({"url": None}, "validation_error", "url"),
        ({"enabled": None}, "validation_error", "enabled"),
        ({"secret": "whsec_AAAA"}, "validation_error", "secret"),
        ({"url": "ftp://example.com/hook"}, "callback_url_refused", None),
        ({"url": "https://user:pass@example.com/hook"}, "callback_url_refused", None),
    ],
)
async def test_patch_refuses_bad_values_and_changes_nothing(client, database, body, code, field):
    owner = await merchant_with_key(database)
    endpoint = await register(client, owner)
    response = await client.patch(
        f"{API}/webhook-endpoints/{endpoint['id']}", headers=owner.headers, json=body
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code
    if field:
        assert error["fields"][0]["field"] == field
    same = await client.get(f"{API}/webhook-endpoints/{endpoint['id']}", headers=owner.headers)
    assert same.json() == {k: v for k, v in endpoint.items() if k != "secret"}


async def test_patch_refuses_a_private_url_when_private_urls_are_not_allowed(settings, database):
    strict = settings.model_copy(update={"callback_allow_private_urls": False})
    owner = await merchant_with_key(database)
    async with app_client(api.create_app, settings) as (_, client):
        endpoint = await register(client, owner)
    async with app_client(api.create_app, strict) as (_, client):
        response = await patch(client, owner, endpoint["id"], url="http://169.254.169.254/x")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "callback_url_refused"


async def test_disabling_then_enabling_clears_the_marks_and_resumes_pending_deliveries(
    woken_client, database, wake_ups
):
    owner = await merchant_with_key(database)
    endpoint = await register(woken_client, owner)
    later = datetime.now(UTC) + timedelta(hours=5)
    pending = await add_delivery(
        database,
        await emit_event(database, owner.merchant_id),
        endpoint["id"],
        next_attempt_at=later,
    )
    done = await add_delivery(
        database,
        await emit_event(database, owner.merchant_id),
        endpoint["id"],
        status="succeeded",
        next_attempt_at=later,
    )

    disabled = (await patch(woken_client, owner, endpoint["id"], enabled=False)).json()
    assert disabled["enabled"] is False
    assert disabled["disabled_at"] is not None and "API" in disabled["disabled_reason"]
    assert await wake_ups.taken() == []
    async with database.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE webhook_endpoints SET failing_since = now() - interval '3 days'"
                " WHERE id = :w"
            ),
            {"w": endpoint["id"]},
        )

    enabled = (await patch(woken_client, owner, endpoint["id"], enabled=True)).json()
    assert enabled["enabled"] is True
    assert enabled["disabled_at"] is None and enabled["disabled_reason"] is None
    assert enabled["failing_since"] is None
    assert await wake_ups.taken() == [[pending]]
    async with database.engine.connect() as conn:
        due = dict(
            (
                await conn.execute(
                    text("SELECT id, next_attempt_at FROM webhook_deliveries WHERE id IN (:a, :b)"),
                    {"a": pending, "b": done},
                )
            ).all()
        )
    assert due[pending] <= datetime.now(UTC) and due[done] > datetime.now(UTC) + timedelta(hours=4)
    audit = [e for e in await audit_entries(database, endpoint["id"]) if "updated" in e["action"]]
    assert [e["after"] for e in audit] == [{"enabled": False}, {"enabled": True}]
    assert audit[1]["detail"] == {"deliveries_resumed": 1}


async def test_enabling_an_enabled_endpoint_wakes_nothing_and_audits_nothing(
    woken_client, database, wake_ups
):
    owner = await merchant_with_key(database)
    endpoint = await register(woken_client, owner)
    await add_delivery(database, await emit_event(database, owner.merchant_id), endpoint["id"])
    response = await patch(woken_client, owner, endpoint["id"], enabled=True)
    assert response.status_code == 200
    assert await wake_ups.taken() == []
    actions = [e["action"] for e in await audit_entries(database, endpoint["id"])]
    assert actions == ["webhook_endpoint.created"]


# --- management routes, across merchants and scopes ----------------------------------------------

MANAGEMENT = [
    ("PATCH", "", {"description": "x"}),
    ("POST", "/rotate-secret", None),
    ("POST", "/test", None),
]


@pytest.mark.parametrize(("method", "suffix", "body"), MANAGEMENT)
async def test_another_merchants_endpoint_is_404_to_every_management_route(
    client, database, receiver, method, suffix, body
):
    mine, theirs = await merchant_with_key(database), await merchant_with_key(database)
    endpoint = await register(client, theirs, url=receiver.plan(HOOK))
    response = await client.request(
        method, f"{API}/webhook-endpoints/{endpoint['id']}{suffix}", headers=mine.headers, json=body
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "webhook_endpoint_not_found"
    assert receiver.received == []
    unknown = await client.request(
        method, f"{API}/webhook-endpoints/we_unknown{suffix}", headers=mine.headers, json=body
    )
    assert unknown.status_code == 404


@pytest.mark.parametrize(("method", "suffix", "body"), MANAGEMENT)
async def test_management_routes_need_webhooks_write(
    client, database, receiver, method, suffix, body
):
    owner = await merchant_with_key(database)
    endpoint = await register(client, owner, url=receiver.plan(HOOK))
    reader = await key_for(database, owner.merchant_id, scopes=ALL_SCOPES - {WEBHOOKS_WRITE})
    response = await client.request(
        method,
        f"{API}/webhook-endpoints/{endpoint['id']}{suffix}",
        headers=reader.headers,
        json=body,
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "scope_missing"
    assert receiver.received == []


# --- rotation ------------------------------------------------------------------------------------


def keys_at(settings, row, now):
    """What deliveries sign with at `now`."""
    return signing_keys(
        settings,
        row.id,
        row.secret_encrypted,
        row.previous_secret_encrypted,
        row.previous_secret_expires_at,
        now,
    )


def verifies(secret, body, headers):
    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


async def test_rotation_returns_a_new_secret_and_both_verify_for_24_hours_then_only_the_new(
    client, database, settings
):
    owner = await merchant_with_key(database)
    endpoint = await register(client, owner)
    old = endpoint["secret"]
    before = datetime.now(UTC)
    response = await client.post(
        f"{API}/webhook-endpoints/{endpoint['id']}/rotate-secret", headers=owner.headers
    )
    assert response.status_code == 200, response.text
    new = response.json()["secret"]
    assert set(response.json()) == {"secret", "previous_secret_expires_at"}
    assert new.startswith("whsec_") and new != old
    expires = datetime.fromisoformat(response.json()["previous_secret_expires_at"])
    assert before + timedelta(hours=24) <= expires <= datetime.now(UTC) + timedelta(hours=24)
    shown = await client.get(f"{API}/webhook-endpoints/{endpoint['id']}", headers=owner.headers)
    assert datetime.fromisoformat(shown.json()["previous_secret_expires_at"]) == expires
    assert "secret" not in shown.json()

    async with database.session() as session:
        row = await session.get(WebhookEndpoint, endpoint["id"])
    assert signing_secret(settings, row) == new
    assert old not in row.previous_secret_encrypted

    def header_at(now):
        keys = keys_at(settings, row, now)
        body = b'{"id":"evt_1","type":"invoice.paid"}'
        return body, signing.headers(keys, "evt_1", int(datetime.now(UTC).timestamp()), body)

    body, headers = header_at(datetime.now(UTC))
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert verifies(new, body, headers) and verifies(old, body, headers)
    body, headers = header_at(expires + timedelta(seconds=1))
    assert len(headers["webhook-signature"].split(" ")) == 1
    assert verifies(new, body, headers) and not verifies(old, body, headers)


async def test_rotation_is_audited_as_a_security_event_without_secret_values(client, database):
    owner = await merchant_with_key(database)
    endpoint = await register(client, owner)
    rotated = await client.post(
        f"{API}/webhook-endpoints/{endpoint['id']}/rotate-secret", headers=owner.headers
    )
    entries = await audit_entries(database, endpoint["id"])
    assert [e["action"] for e in entries] == [
        "webhook_endpoint.created",
        "webhook_endpoint.secret_rotated",
    ]
    assert entries[1]["actor_type"] == "api_key"
    written = json.dumps([dict(e) for e in entries], default=str)
    for secret in (endpoint["secret"], rotated.json()["secret"]):
        assert secret.removeprefix("whsec_") not in written


async def test_a_second_rotation_keeps_only_the_secret_it_replaces(client, database, settings):
    owner = await merchant_with_key(database)
    endpoint = await register(client, owner)
    url = f"{API}/webhook-endpoints/{endpoint['id']}/rotate-secret"
    middle = (await client.post(url, headers=owner.headers)).json()["secret"]
    newest = (await client.post(url, headers=owner.headers)).json()["secret"]
    async with database.session() as session:
        row = await session.get(WebhookEndpoint, endpoint["id"])
    keys = keys_at(settings, row, datetime.now(UTC))
    assert keys == [signing.secret_key(newest), signing.secret_key(middle)]


# --- test ping -----------------------------------------------------------------------------------


async def ping(client, owner, endpoint_id):
    return await client.post(f"{API}/webhook-endpoints/{endpoint_id}/test", headers=owner.headers)


async def test_ping_posts_a_signed_test_event_and_reports_the_answer(client, database, receiver):
    owner = await merchant_with_key(database)
    endpoint = await register(client, owner, url=receiver.plan(HOOK))
    response = await ping(client, owner, endpoint["id"])
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["success"] is True and answer["status_code"] == 200
    assert answer["response_excerpt"] == '{"ok":true}'
    assert answer["error"] is None and answer["latency_ms"] >= 0

    [received] = receiver.received
    assert received.path == HOOK
    event = json.loads(received.body)
    assert set(event) == {"id", "type", "created_at", "data"}
    assert event["type"] == "webhook.test" and event["id"].startswith("evt_")
    assert event["data"] == {"endpoint_id": endpoint["id"]}
    assert event["created_at"].endswith("Z") and b", " not in received.body
    assert received.headers["webhook-id"] == event["id"]
    assert Webhook(endpoint["secret"]).verify(received.body, received.headers) == event
    async with database.engine.connect() as conn:
        stored = await conn.scalar(
            text("SELECT count(*) FROM events WHERE merchant_id = :m"), {"m": owner.merchant_id}
        )
    assert stored == 0


async def test_ping_reports_a_failing_answer_without_raising(client, database, receiver):
    owner = await merchant_with_key(database)
    endpoint = await register(client, owner, url=receiver.plan(HOOK, then=503))
    answer = (await ping(client, owner, endpoint["id"])).json()
    assert answer["success"] is False and answer["status_code"] == 503
    assert answer["response_excerpt"] == '{"ok":false}'


async def test_ping_to_a_closed_port_reports_the_connection_error(client, database):
    owner = await merchant_with_key(database)
    endpoint = await register(client, owner, url="http://127.0.0.1:9/hook")
    answer = (await ping(client, owner, endpoint["id"])).json()
    assert answer["success"] is False and answer["status_code"] is None
    assert answer["error"]


async def test_ping_after_a_rotation_verifies_with_the_old_and_the_new_secret(
    client, database, receiver
):
    owner = await merchant_with_key(database)
    endpoint = await register(client, owner, url=receiver.plan(HOOK))
    rotated = await client.post(
        f"{API}/webhook-endpoints/{endpoint['id']}/rotate-secret", headers=owner.headers
    )
    assert (await ping(client, owner, endpoint["id"])).json()["success"] is True
    [received] = receiver.received
    for secret in (endpoint["secret"], rotated.json()["secret"]):
        Webhook(secret).verify(received.body, received.headers)


async def test_ping_to_loopback_is_refused_when_private_urls_are_not_allowed(
    settings, database, receiver
):
    owner = await merchant_with_key(database)
    async with app_client(api.create_app, settings) as (_, client):
        endpoint = await register(client, owner, url=receiver.plan(HOOK))
    strict = settings.model_copy(update={"callback_allow_private_urls": False})
    async with app_client(api.create_app, strict) as (_, client):
        response = await ping(client, owner, endpoint["id"])
    assert response.status_code == 200
    answer = response.json()
    assert answer["success"] is False and answer["status_code"] is None
    assert "private" in answer["error"]
    assert receiver.received == []


async def test_a_disabled_endpoint_can_still_be_pinged(client, database, receiver):
    owner = await merchant_with_key(database)
    endpoint = await register(client, owner, url=receiver.plan(HOOK))
    await patch(client, owner, endpoint["id"], enabled=False)
    assert (await ping(client, owner, endpoint["id"])).json()["success"] is True
