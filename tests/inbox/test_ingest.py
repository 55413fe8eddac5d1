"""The provider routes of the webhook process, over HTTP: a valid webhook of each provider is
stored once and handled once; a duplicate is acknowledged and not handled again; a bad
signature, a wrong token or a foreign address is refused and stores nothing; oversized,
malformed and NUL-carrying bodies get a clear answer, never a 500."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.callbacks.delivery_rig import eventually
from tests.inbox.rig import (
    EVENT_TYPES,
    FOREIGN,
    HOOKS,
    REQUESTS,
    inbox_settings,
    intrajasa_request,
    privy_headers,
    privy_request,
    rain_request,
    rain_signature,
    recording,
    rows,
    webhook_client,
)

pytestmark = pytest.mark.own_database
PROVIDERS = ["rain", "privy", "intrajasa"]


@pytest.fixture
async def client(database_url):
    async with webhook_client(inbox_settings(database_url)) as client:
        yield client


def assert_refused(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and error["request_id"]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_valid_webhook_is_stored_once_and_handled_once_and_a_duplicate_only_acked(
    provider, client, database
):
    async with recording(provider, EVENT_TYPES[provider]) as handler:
        raw, headers = REQUESTS[provider]("one")
        first = await client.post(f"{HOOKS}/{provider}", content=raw, headers=headers)
        assert first.status_code == 200, first.text
        assert first.json()["duplicate"] is False
        webhook_id = first.json()["id"]
        await eventually(lambda: _status(database, webhook_id, "handled"), what="handled")
        again = await client.post(f"{HOOKS}/{provider}", content=raw, headers=headers)
        assert again.status_code == 200, again.text
        assert again.json() == {"received": True, "id": webhook_id, "duplicate": True}
    assert handler.calls == [webhook_id]
    (row,) = await rows(database)
    assert row["provider"] == provider and row["event_type"] == EVENT_TYPES[provider]
    assert bytes(row["body"]) == raw and row["attempts"] == 1 and row["handled_at"]
    assert "signature" not in row["headers"] and "svix-signature" not in row["headers"]
    assert "x-callback-token" not in row["headers"]


async def _status(database, webhook_id, status):
    found = await rows(database, "id = :i AND status = :s", i=webhook_id, s=status)
    return found


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_an_event_nobody_handles_is_stored_acknowledged_and_marked_ignored(
    provider, client, database
):
    raw, headers = REQUESTS[provider]("ignored")
    response = await client.post(f"{HOOKS}/{provider}", content=raw, headers=headers)
    assert response.status_code == 200, response.text
    webhook_id = response.json()["id"]
    await eventually(lambda: _status(database, webhook_id, "ignored"), what="ignored")
    (row,) = await rows(database)
    assert row["handled_at"] is not None and row["next_attempt_at"] is None


async def test_rain_with_a_wrong_or_missing_signature_is_refused_and_nothing_is_stored(
    client, database
):
    raw, headers = rain_request()
    forged = await client.post(
        f"{HOOKS}/rain", content=raw, headers={**headers, "signature": rain_signature(raw, "x")}
    )
    missing = await client.post(f"{HOOKS}/rain", content=raw)
    tampered = await client.post(f"{HOOKS}/rain", content=raw + b" ", headers=headers)
    for response in (forged, missing, tampered):
        assert_refused(response, 401, "webhook_signature_invalid")
    assert await rows(database) == []


async def test_privy_with_a_bad_or_stale_svix_signature_is_refused_and_nothing_is_stored(
    client, database
):
    raw, headers = privy_request()
    other_secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="
    forged = privy_headers(raw, "msg_privy_1", secret=other_secret)
    stale = privy_headers(raw, "msg_privy_1", when=datetime.now(UTC) - timedelta(minutes=6))
    renamed = {**headers, "svix-id": "msg_other"}  # the id is signed too
    for bad in (forged, stale, renamed, {"content-type": "application/json"}):
        response = await client.post(f"{HOOKS}/privy", content=raw, headers=bad)
        assert_refused(response, 401, "webhook_signature_invalid")
    assert await rows(database) == []
    within = privy_headers(raw, "msg_privy_1", when=datetime.now(UTC) - timedelta(minutes=4))
    assert (await client.post(f"{HOOKS}/privy", content=raw, headers=within)).status_code == 200


async def test_intrajasa_with_a_wrong_or_missing_token_is_refused_and_nothing_is_stored(
    client, database
):
    raw, headers = intrajasa_request(token="not-the-token")
    wrong = await client.post(f"{HOOKS}/intrajasa", content=raw, headers=headers)
    missing = await client.post(f"{HOOKS}/intrajasa", content=raw)
    for response in (wrong, missing):
        assert_refused(response, 401, "webhook_token_invalid")
    assert await rows(database) == []
    raw, headers = intrajasa_request()
    bearer = {"authorization": f"Bearer {headers.pop('x-callback-token')}"}
    accepted = await client.post(f"{HOOKS}/intrajasa", content=raw, headers=bearer)
    assert accepted.status_code == 200, accepted.text


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_foreign_address_is_refused_before_anything_else_and_nothing_is_stored(
    provider, client, database
):
    raw, headers = REQUESTS[provider]("foreign")
    response = await client.post(f"{HOOKS}/{provider}", content=raw, headers={**headers, **FOREIGN})
    assert_refused(response, 403, "webhook_source_not_allowed")
    assert await rows(database) == []


async def test_rain_allows_its_own_addresses_and_forwarded_for_is_believed_only_from_proxies(
    database_url, database
):
    raw, headers = rain_request()
    forwarded = {**headers, "x-forwarded-for": "34.67.3.60"}
    untrusted = inbox_settings(
        database_url, trusted_proxies=[], webhook_rain_allowed_ips=[], webhook_allowed_ips=[]
    )
    async with webhook_client(untrusted) as client:
        # The peer (127.0.0.1) is no proxy now: its X-Forwarded-For is not believed.
        response = await client.post(f"{HOOKS}/rain", content=raw, headers=forwarded)
        assert_refused(response, 403, "webhook_source_not_allowed")
    async with webhook_client(inbox_settings(database_url)) as client:
        response = await client.post(f"{HOOKS}/rain", content=raw, headers=forwarded)
        assert response.status_code == 200, response.text
    assert [r["source_ip"] for r in await rows(database)] == ["34.67.3.60"]


async def test_with_validation_off_unsigned_webhooks_from_anywhere_are_stored(
    database_url, database
):
    off = inbox_settings(
        database_url,
        webhook_enable_ip_validation=False,
        webhook_enable_signature_validation=False,
        rain_api_key=None,
        privy_webhook_secret=None,
    )
    async with webhook_client(off) as client:
        for provider in PROVIDERS:
            raw, _ = REQUESTS[provider]("off")
            response = await client.post(f"{HOOKS}/{provider}", content=raw, headers=FOREIGN)
            assert response.status_code == 200, response.text
    assert len(await rows(database)) == 3


async def test_a_provider_without_its_secret_is_refused_as_not_configured(database_url, database):
    async with webhook_client(inbox_settings(database_url, rain_api_key=None)) as client:
        raw, headers = rain_request()
        response = await client.post(f"{HOOKS}/rain", content=raw, headers=headers)
    assert_refused(response, 503, "webhook_not_configured")
    assert await rows(database) == []


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_an_oversized_body_is_413_and_a_malformed_one_400(provider, client, database):
    big = json.dumps({"id": "big", "pad": "x" * (256 * 1024)}).encode()
    sign = {
        "rain": lambda raw: {"signature": rain_signature(raw)},
        "privy": lambda raw: privy_headers(raw, "msg_x"),
        "intrajasa": lambda raw: intrajasa_request()[1],
    }[provider]
    too_big = await client.post(f"{HOOKS}/{provider}", content=big, headers=sign(big))
    assert_refused(too_big, 413, "webhook_body_too_large")

    async def chunks():
        for _ in range(300):
            yield b"x" * 1024

    streamed = await client.post(f"{HOOKS}/{provider}", content=chunks(), headers=sign(b""))
    assert streamed.status_code == 413, streamed.text
    for malformed in (b"{not json", b"[1, 2]", b"\xff\xfe", b'{"a": "\x00"}', b""):
        response = await client.post(
            f"{HOOKS}/{provider}", content=malformed, headers=sign(malformed)
        )
        assert_refused(response, 400, "webhook_malformed_json")
    assert await rows(database) == []


async def test_nul_escapes_are_stored_as_received_and_an_unstorable_id_falls_back_to_a_digest(
    client, database
):
    raw = b'{"id": "evt\\u0000nul", "resource": "card\\u0000", "action": "updated", "body": {}}'
    headers = {"signature": rain_signature(raw)}
    response = await client.post(f"{HOOKS}/rain", content=raw, headers=headers)
    assert response.status_code == 200, response.text
    again = await client.post(f"{HOOKS}/rain", content=raw, headers=headers)
    assert again.json()["duplicate"] is True
    (row,) = await rows(database)
    assert bytes(row["body"]) == raw
    assert row["external_id"].startswith("sha256:")
    assert row["event_type"] == "card\\u0000.updated"


async def test_a_rain_authorisation_not_in_rains_shape_is_stored_handled_and_declined(
    client, database
):
    raw, headers = rain_request("evt-auth-1", "transaction.requested")
    response = await client.post(f"{HOOKS}/rain", content=raw, headers=headers)
    assert response.status_code == 402, response.text
    assert response.json()["rejectionCode"] == "UNKNOWN"
    (row,) = await rows(database)
    assert row["event_type"] == "transaction.requested" and row["status"] == "handled"


async def test_the_routes_and_every_answer_are_described_in_openapi(database_url):
    async with webhook_client(inbox_settings(database_url, swagger_enable=True)) as client:
        spec = (await client.get("/api-json")).json()
    for provider in PROVIDERS:
        answers = spec["paths"][f"{HOOKS}/{provider}"]["post"]["responses"]
        assert {"200", "400", "401", "403", "413", "503"} <= set(answers)
        assert all(answer["description"] for answer in answers.values())
