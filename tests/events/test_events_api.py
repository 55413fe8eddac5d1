"""The merchant's event log over HTTP: listing (filters, cursor pages, newest first), one
event with its delivery counts, its deliveries with their attempts, and redelivery."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from nespay.apps import api
from nespay.auth.scopes import ALL_SCOPES, EVENTS_READ, WEBHOOKS_WRITE
from nespay.kit.ids import new_id
from tests.fixtures.app import app_client, unthrottled
from tests.fixtures.callbacks import API, add_delivery, emit_event, register
from tests.fixtures.factories import key_for, merchant_with_key


@pytest.fixture
async def client(settings):
    async with app_client(api.create_app, unthrottled(settings)) as (_, client):
        yield client


async def get(client, owner, path, **params):
    return await client.get(f"{API}{path}", headers=owner.headers, params=params)


async def redeliver(client, owner, event_id, body=None):
    return await client.post(f"{API}/events/{event_id}/redeliver", headers=owner.headers, json=body)


async def delivery_rows(database, event_id):
    async with database.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT * FROM webhook_deliveries WHERE event_id = :e ORDER BY endpoint_id"),
            {"e": event_id},
        )
        return {row.endpoint_id: row for row in rows}


# --- reading -------------------------------------------------------------------------------------


async def test_events_are_listed_newest_first_in_cursor_pages(client, database):
    owner, other = await merchant_with_key(database), await merchant_with_key(database)
    # Newest first by id (time-ordered to the millisecond, random within one).
    ids = sorted([await emit_event(database, owner.merchant_id) for _ in range(5)], reverse=True)
    await emit_event(database, other.merchant_id)
    first = (await get(client, owner, "/events", limit=2)).json()
    assert [e["id"] for e in first["data"]] == ids[:2] and first["has_more"] is True
    rest = (await get(client, owner, "/events", limit=3, starting_after=ids[1])).json()
    assert [e["id"] for e in rest["data"]] == ids[2:] and rest["has_more"] is False
    event = first["data"][0]
    assert set(event) == {"id", "type", "created_at", "subject_id", "data"}


async def test_events_are_filtered_by_type_subject_and_creation_time(client, database):
    owner = await merchant_with_key(database)
    subject = new_id("inv")
    created = await emit_event(database, owner.merchant_id, "invoice.created", subject)
    paid = await emit_event(database, owner.merchant_id, "invoice.paid", subject)
    elsewhere = await emit_event(database, owner.merchant_id, "invoice.paid")
    async with database.engine.begin() as conn:
        await conn.execute(
            text("UPDATE events SET created_at = now() - interval '2 days' WHERE id = :e"),
            {"e": created},
        )

    def ids(response):
        assert response.status_code == 200, response.text
        found = [e["id"] for e in response.json()["data"]]
        assert found == sorted(found, reverse=True)
        return set(found)

    assert ids(await get(client, owner, "/events", type="invoice.paid")) == {elsewhere, paid}
    assert ids(await get(client, owner, "/events", subject_id=subject)) == {paid, created}
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert ids(await get(client, owner, "/events", created_gte=since)) == {elsewhere, paid}
    assert ids(await get(client, owner, "/events", created_lte=since)) == {created}
    both = await get(client, owner, "/events", type="invoice.paid", subject_id=subject)
    assert ids(both) == {paid}


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 101}, {"created_gte": "yesterday"}, {"type": "x" * 41}],
)
async def test_bad_list_parameters_are_422(client, database, params):
    owner = await merchant_with_key(database)
    response = await get(client, owner, "/events", **params)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


async def test_one_event_shows_its_data_and_delivery_counts(client, database):
    owner = await merchant_with_key(database)
    subject = new_id("inv")
    event_id = await emit_event(database, owner.merchant_id, "invoice.paid", subject)
    a = await register(client, owner)
    b = await register(client, owner)
    await add_delivery(database, event_id, a["id"], status="succeeded", attempts=[500, 200])
    await add_delivery(database, event_id, b["id"], status="failed", attempts=[None])
    response = await get(client, owner, f"/events/{event_id}")
    assert response.status_code == 200, response.text
    event = response.json()
    assert event["id"] == event_id and event["type"] == "invoice.paid"
    assert event["subject_id"] == subject
    assert event["data"] == {"id": subject, "status": "paid"}
    assert event["deliveries"] == {"total": 2, "pending": 0, "succeeded": 1, "failed": 1}


async def test_deliveries_show_each_endpoint_with_its_attempts_newest_first(client, database):
    owner = await merchant_with_key(database)
    event_id = await emit_event(database, owner.merchant_id)
    endpoint = await register(client, owner, url="http://127.0.0.1:9/orders")
    delivery = await add_delivery(
        database, event_id, endpoint["id"], status="succeeded", attempts=[None, 502, 200]
    )
    response = await get(client, owner, f"/events/{event_id}/deliveries")
    assert response.status_code == 200, response.text
    [one] = response.json()["data"]
    assert response.json()["has_more"] is False
    assert one["id"] == delivery and one["endpoint_id"] == endpoint["id"]
    assert one["url"] == "http://127.0.0.1:9/orders"
    assert one["status"] == "succeeded" and one["attempts"] == 3
    assert one["succeeded_at"] is not None and one["failed_at"] is None
    assert [a["status_code"] for a in one["attempt_log"]] == [200, 502, None]
    assert one["attempt_log"][0] == {
        "at": one["attempt_log"][0]["at"],
        "manual": False,
        "status_code": 200,
        "latency_ms": 12,
        "response_excerpt": "answer 2",
        "error": None,
    }
    assert one["attempt_log"][2]["error"] == "no answer within 10 s"


async def test_an_event_without_deliveries_has_an_empty_list(client, database):
    owner = await merchant_with_key(database)
    event_id = await emit_event(database, owner.merchant_id)
    response = await get(client, owner, f"/events/{event_id}/deliveries")
    assert response.json() == {"data": [], "has_more": False}


@pytest.mark.parametrize("suffix", ["", "/deliveries"])
async def test_another_merchants_or_an_unknown_event_is_404(client, database, suffix):
    mine, theirs = await merchant_with_key(database), await merchant_with_key(database)
    event_id = await emit_event(database, theirs.merchant_id)
    for unknown in (event_id, "evt_unknown"):
        response = await get(client, mine, f"/events/{unknown}{suffix}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "event_not_found"
    listed = (await get(client, mine, "/events", subject_id="x")).json()
    assert listed["data"] == []


@pytest.mark.parametrize("path", ["/events", "/events/{id}", "/events/{id}/deliveries"])
async def test_reading_events_needs_events_read(client, database, path):
    owner = await merchant_with_key(database)
    event_id = await emit_event(database, owner.merchant_id)
    probe = await key_for(database, owner.merchant_id, scopes=ALL_SCOPES - {EVENTS_READ})
    response = await get(client, probe, path.replace("{id}", event_id))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "scope_missing"


# --- redelivery ----------------------------------------------------------------------------------


async def test_redelivery_goes_to_every_enabled_endpoint_subscribed_to_the_type(
    woken_client, database, wake_ups
):
    owner = await merchant_with_key(database)
    event_id = await emit_event(database, owner.merchant_id, "invoice.paid")
    listed = await register(woken_client, owner, events=["invoice.paid", "invoice.expired"])
    everything = await register(woken_client, owner, events=["*"])
    await register(woken_client, owner, events=["invoice.created"])
    disabled = await register(woken_client, owner, events=["invoice.paid"])
    await woken_client.patch(
        f"{API}/webhook-endpoints/{disabled['id']}", headers=owner.headers, json={"enabled": False}
    )
    response = await redeliver(woken_client, owner, event_id)
    assert response.status_code == 202, response.text
    deliveries = response.json()["data"]
    assert {d["endpoint_id"] for d in deliveries} == {listed["id"], everything["id"]}
    assert all(d["status"] == "pending" and d["attempts"] == 0 for d in deliveries)
    assert all(d["id"].startswith("whd_") for d in deliveries)
    [woken] = await wake_ups.taken()  # one wake-up, naming both
    assert sorted(woken) == sorted(d["id"] for d in deliveries)
    rows = await delivery_rows(database, event_id)
    assert set(rows) == {listed["id"], everything["id"]}
    async with database.engine.connect() as conn:
        event = (
            await conn.execute(text("SELECT * FROM events WHERE id = :e"), {"e": event_id})
        ).one()
    for row in rows.values():
        assert row.manual is True and row.status == "pending" and row.lease_until is None
        assert row.merchant_id == owner.merchant_id
        assert (row.subject_id, row.event_seq) == (event.subject_id, event.seq)
        assert row.next_attempt_at <= datetime.now(UTC)


async def test_redelivery_resets_a_failed_delivery_to_pending_with_a_fresh_window(
    woken_client, database, wake_ups
):
    owner = await merchant_with_key(database)
    event_id = await emit_event(database, owner.merchant_id)
    endpoint = await register(woken_client, owner)
    failed = await add_delivery(
        database, event_id, endpoint["id"], status="failed", attempts=[500, 500]
    )
    before = await delivery_rows(database, event_id)
    response = await redeliver(woken_client, owner, event_id, {"endpoint_id": endpoint["id"]})
    assert response.status_code == 202, response.text
    [delivery] = response.json()["data"]
    assert delivery["id"] == failed and delivery["status"] == "pending"
    assert delivery["failed_at"] is None and len(delivery["attempt_log"]) == 2
    after = (await delivery_rows(database, event_id))[endpoint["id"]]
    assert after.manual is True and after.lease_until is None and after.failed_at is None
    assert after.window_started_at > before[endpoint["id"]].window_started_at
    assert after.next_attempt_at <= datetime.now(UTC)
    assert await wake_ups.taken() == [[failed]]


async def test_redelivery_to_a_leased_pending_delivery_releases_the_lease(client, database):
    owner = await merchant_with_key(database)
    event_id = await emit_event(database, owner.merchant_id)
    endpoint = await register(client, owner)
    later = datetime.now(UTC) + timedelta(hours=1)
    await add_delivery(database, event_id, endpoint["id"], next_attempt_at=later, attempts=[500])
    response = await redeliver(client, owner, event_id)
    assert response.status_code == 202
    row = (await delivery_rows(database, event_id))[endpoint["id"]]
    assert row.lease_until is None and row.next_attempt_at <= datetime.now(UTC)


async def test_redelivery_to_a_named_endpoint_ignores_the_others_and_its_subscription(
    client, database
):
    owner = await merchant_with_key(database)
    event_id = await emit_event(database, owner.merchant_id, "invoice.paid")
    await register(client, owner, events=["invoice.paid"])
    named = await register(client, owner, events=["invoice.created"])
    response = await redeliver(client, owner, event_id, {"endpoint_id": named["id"]})
    assert response.status_code == 202
    assert [d["endpoint_id"] for d in response.json()["data"]] == [named["id"]]
    assert set(await delivery_rows(database, event_id)) == {named["id"]}


async def test_redelivery_to_a_disabled_endpoint_is_409_and_says_how_to_re_enable(
    woken_client, database, wake_ups
):
    owner = await merchant_with_key(database)
    event_id = await emit_event(database, owner.merchant_id)
    endpoint = await register(woken_client, owner)
    await woken_client.patch(
        f"{API}/webhook-endpoints/{endpoint['id']}", headers=owner.headers, json={"enabled": False}
    )
    response = await redeliver(woken_client, owner, event_id, {"endpoint_id": endpoint["id"]})
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "webhook_endpoint_disabled"
    assert "PATCH" in error["message"] and '{"enabled": true}' in error["message"]
    assert await delivery_rows(database, event_id) == {} and await wake_ups.taken() == []


async def test_redelivery_with_no_subscribed_endpoint_is_409(client, database):
    owner = await merchant_with_key(database)
    event_id = await emit_event(database, owner.merchant_id, "invoice.paid")
    await register(client, owner, events=["invoice.created"])
    response = await redeliver(client, owner, event_id)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "no_webhook_endpoints"


async def test_redelivery_of_another_merchants_or_an_unknown_event_is_404(client, database):
    mine, theirs = await merchant_with_key(database), await merchant_with_key(database)
    await register(client, mine, events=["*"])
    event_id = await emit_event(database, theirs.merchant_id)
    for unknown in (event_id, "evt_unknown"):
        response = await redeliver(client, mine, unknown)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "event_not_found"
    assert await delivery_rows(database, event_id) == {}


async def test_redelivery_to_another_merchants_endpoint_is_404(client, database):
    mine, theirs = await merchant_with_key(database), await merchant_with_key(database)
    event_id = await emit_event(database, mine.merchant_id)
    foreign = await register(client, theirs, events=["*"])
    for endpoint_id in (foreign["id"], "we_unknown"):
        response = await redeliver(client, mine, event_id, {"endpoint_id": endpoint_id})
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "webhook_endpoint_not_found"
    assert await delivery_rows(database, event_id) == {}


async def test_redelivery_refuses_unknown_body_fields(client, database):
    owner = await merchant_with_key(database)
    event_id = await emit_event(database, owner.merchant_id)
    response = await redeliver(client, owner, event_id, {"endpoint": "we_x"})
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "endpoint"


async def test_redelivery_needs_webhooks_write_not_events_read(client, database):
    owner = await merchant_with_key(database)
    event_id = await emit_event(database, owner.merchant_id)
    await register(client, owner, events=["*"])
    reader = await key_for(database, owner.merchant_id, scopes={EVENTS_READ})
    response = await redeliver(client, reader, event_id)
    assert response.status_code == 403
    writer = await key_for(database, owner.merchant_id, scopes={WEBHOOKS_WRITE})
    assert (await redeliver(client, writer, event_id)).status_code == 202


async def test_redelivery_is_audited_with_the_deliveries_it_made(client, database):
    owner = await merchant_with_key(database)
    event_id = await emit_event(database, owner.merchant_id)
    endpoint = await register(client, owner, events=["*"])
    [delivery] = (await redeliver(client, owner, event_id)).json()["data"]
    async with database.engine.connect() as conn:
        entry = (
            await conn.execute(
                text(
                    "SELECT * FROM audit_logs WHERE action = 'event.redelivered' AND target_id = :e"
                ),
                {"e": event_id},
            )
        ).one()
    assert entry.actor_type == "api_key" and entry.merchant_id == owner.merchant_id
    assert entry.detail == {"endpoints": [endpoint["id"]], "deliveries": [delivery["id"]]}


def test_event_ids_sort_in_the_order_they_were_made_even_within_a_millisecond():
    """Events are listed by id: an invoice's, written by several statements of one
    transaction in the same millisecond, must list in the order they happened."""
    from nespay.kit.ids import new_ordered_ids

    made = [i for _ in range(200) for i in new_ordered_ids("evt", 3)]
    assert made == sorted(made) and len(set(made)) == len(made)
    assert all(len(i) == len("evt_") + 26 for i in made)
