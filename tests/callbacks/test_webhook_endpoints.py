"""Webhook endpoints: URL guarded, signing secret shown once and stored encrypted."""

import base64

import pytest
from sqlalchemy import text

from nespay.apps import api
from nespay.callbacks.service import signing_secret
from nespay.callbacks.ssrf import CallbackUrlRefused, check_callback_url
from nespay.models import WebhookEndpoint
from tests.fixtures.app import app_client
from tests.fixtures.database import pg_dump
from tests.fixtures.factories import merchant_with_key


@pytest.fixture
async def client(settings):
    async with app_client(api.create_app, settings) as (_, client):
        yield client


async def register(client, owner, url="http://127.0.0.1:9/hook", events=("invoice.paid",)):
    return await client.post(
        "/api/v1/webhook-endpoints",
        headers=owner.headers,
        json={"url": url, "events": list(events)},
    )


async def test_secret_is_shown_once_in_standard_webhooks_form_and_stored_encrypted(
    client, database, settings
):
    owner = await merchant_with_key(database)
    created = await register(client, owner)
    assert created.status_code == 201
    secret = created.json()["secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    listed = await client.get("/api/v1/webhook-endpoints", headers=owner.headers)
    one = await client.get(
        f"/api/v1/webhook-endpoints/{created.json()['id']}", headers=owner.headers
    )
    assert "secret" not in listed.json()["data"][0] and "secret" not in one.json()
    async with database.session() as session:
        row = await session.get(WebhookEndpoint, created.json()["id"])
        assert row.secret_encrypted.startswith("enc:v1:") and secret not in row.secret_encrypted
        assert signing_secret(settings, row) == secret


async def test_a_database_dump_holds_no_secret_or_key_in_plain_text(client, database, database_url):
    owner = await merchant_with_key(database)
    secrets = [(await register(client, owner)).json()["secret"] for _ in range(3)]
    dump = await pg_dump(database_url, "--data-only")
    assert "webhook_endpoints" in dump
    for secret in [*secrets, owner.key]:
        assert secret not in dump
        assert secret.removeprefix("whsec_") not in dump


@pytest.mark.parametrize(
    ("url", "events", "field"),
    [
        ("ftp://example.com/hook", ["invoice.paid"], None),
        ("not a url", ["invoice.paid"], None),
        ("https://user:pass@example.com/hook", ["invoice.paid"], None),
        ("https://example.com/hook", ["invoice.teleported"], "events"),
        ("https://example.com/hook", [], "events"),
    ],
)
async def test_bad_registrations_are_refused_and_store_nothing(
    client, database, url, events, field
):
    owner = await merchant_with_key(database)
    response = await register(client, owner, url, events)
    assert response.status_code == 422
    error = response.json()["error"]
    if field:
        assert error["fields"][0]["field"] == field
    else:
        assert error["code"] == "callback_url_refused"
    async with database.engine.connect() as conn:
        count = await conn.scalar(
            text("SELECT count(*) FROM webhook_endpoints WHERE merchant_id = :m"),
            {"m": owner.merchant_id},
        )
    assert count == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://10.1.2.3/hook",
        "http://[::1]/hook",
        "http://localhost/hook",
    ],
)
async def test_private_addresses_are_refused_unless_allowed(settings, url):
    strict = settings.model_copy(update={"callback_allow_private_urls": False})
    with pytest.raises(CallbackUrlRefused):
        await check_callback_url(url, strict)
    assert await check_callback_url(url, settings) == url  # tests allow loopback


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://METADATA.google.internal./computeMetadata/v1/",
    ],
)
async def test_metadata_services_are_refused_even_when_private_urls_are_allowed(settings, url):
    assert settings.callback_allow_private_urls
    with pytest.raises(CallbackUrlRefused, match="metadata"):
        await check_callback_url(url, settings)


async def test_production_requires_https(settings):
    production = settings.model_copy(update={"app_env": "production"})
    with pytest.raises(CallbackUrlRefused, match="https"):
        await check_callback_url("http://127.0.0.1/hook", production)


async def test_another_merchants_endpoint_is_404_and_survives_a_delete(client, database):
    mine, theirs = await merchant_with_key(database), await merchant_with_key(database)
    endpoint = (await register(client, theirs)).json()["id"]
    for method in ("get", "delete"):
        response = await client.request(
            method, f"/api/v1/webhook-endpoints/{endpoint}", headers=mine.headers
        )
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "webhook_endpoint_not_found"
    still = await client.get(f"/api/v1/webhook-endpoints/{endpoint}", headers=theirs.headers)
    assert still.status_code == 200
