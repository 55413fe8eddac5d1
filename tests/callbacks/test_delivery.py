"""Callback delivery end to end, in-process: event row → relay → RabbitMQ (a private node) →
worker → POST to a real receiver → attempt recorded; and the same without a broker. Each test
has a database of its own: the relay and the sweep read everything committed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nespay.apps import api, jobs
from nespay.callbacks import store
from nespay.callbacks.events import EVENT_TYPES
from nespay.db import Database
from nespay.invoices.states import STATUS_EVENTS
from tests.callbacks.delivery_rig import (
    attempts,
    body,
    delivery,
    event,
    eventually,
    hook,
    pipeline,
    rows,
)
from tests.fixtures.app import app_client
from tests.fixtures.database import create_database, drop_database, make_settings
from tests.fixtures.processes import base_env, nespay_process

pytestmark = pytest.mark.own_database

FAST_RETRIES = "1"  # every retry after ~1 s (the default schedule starts at 5 s)


@pytest.fixture(params=["rabbitmq", "no broker"])
def delivery_settings(request, database_url):
    extra = {}
    if request.param == "rabbitmq":
        extra["rabbitmq_url"] = request.getfixturevalue("rabbit").url
    return make_settings(
        database_url,
        callback_delivery_enabled=True,
        callback_retry_schedule_s=FAST_RETRIES,
        callback_lease_s=15,
        **extra,
    )


async def test_a_receiver_failing_three_times_gets_the_event_four_times_with_one_webhook_id(
    database, delivery_settings, receiver
):
    merchant = await hook(database, delivery_settings, receiver.plan("/hook", 500, 500, 500))
    async with pipeline(delivery_settings):
        event_id = await event(database, merchant.merchant_id, "invoice.paid")
        got = await receiver.wait_for("/hook", 4)
        await eventually(lambda: _status(database, event_id, "succeeded"), what="delivery recorded")
    assert [r.answered for r in got] == [500, 500, 500, 200]
    assert {r.webhook_id for r in got} == {event_id}
    assert {r.body for r in got} == {got[0].body}  # the same bytes every time
    for request in got:
        assert merchant.verify(request)["id"] == event_id
    sent = body(got[0])
    assert set(sent) == {"id", "type", "created_at", "data"}
    assert sent["type"] == "invoice.paid" and sent["data"]["amount"] == "10.5"
    recorded = await attempts(database, event_id)
    assert [a["status_code"] for a in recorded] == [500, 500, 500, 200]
    assert all(a["latency_ms"] >= 0 and a["response_excerpt"] for a in recorded)
    row = await delivery(database, event_id)
    assert row["attempts"] == 4 and row["succeeded_at"] is not None


async def test_an_invoice_s_later_event_waits_until_the_earlier_one_is_delivered(
    database, delivery_settings, receiver
):
    merchant = await hook(database, delivery_settings, receiver.plan("/hook", 503, 503))
    subject = "inv_ordering_" + merchant.merchant_id[-8:]
    async with pipeline(delivery_settings):
        first = await event(database, merchant.merchant_id, "invoice.partially_paid", subject)
        second = await event(database, merchant.merchant_id, "invoice.paid", subject)
        got = await receiver.wait_for("/hook", 4)
        await eventually(lambda: _status(database, second, "succeeded"), what="second done")
    assert [(r.webhook_id, r.answered) for r in got] == [
        (first, 503),
        (first, 503),
        (first, 200),
        (second, 200),
    ]


async def test_other_invoices_are_not_held_up_by_one_being_retried(
    database, delivery_settings, receiver
):
    merchant = await hook(database, delivery_settings, receiver.plan("/hook"))
    async with pipeline(delivery_settings):
        receiver.refuse("inv_stuck_a")  # the merchant's server chokes on this invoice
        stuck = await event(database, merchant.merchant_id, "invoice.paid", "inv_stuck_a")
        await receiver.wait_for("/hook", 1)
        other = await event(database, merchant.merchant_id, "invoice.paid", "inv_other_b")
        await eventually(lambda: _status(database, other, "succeeded"), what="other delivered")
        assert await _status(database, stuck, "pending")  # still being retried meanwhile
        receiver.accept("inv_stuck_a")
        await eventually(lambda: _status(database, stuck, "succeeded"), what="stuck delivered")
    answers = [(r.webhook_id, r.answered) for r in receiver.at("/hook")]
    assert answers.index((other, 200)) < answers.index((stuck, 200))
    assert (stuck, 500) in answers


async def test_a_claim_that_waited_out_its_lease_for_a_slot_is_not_sent_twice(
    database, database_url, receiver
):
    # One slot: the second claimed delivery waits 8 s behind a hanging first one. Its lease
    # (15 s) could then end mid-POST (10 s timeout), and another claim would send it again
    # while that POST still runs; so it is not sent until its lease has ended. Without a
    # broker, where the 1 s poller is the other claim that comes soonest.
    settings = make_settings(
        database_url,
        callback_delivery_enabled=True,
        callback_retry_schedule_s=FAST_RETRIES,
        callback_lease_s=15,
        callback_concurrency=1,
    )
    merchant = await hook(database, settings, receiver.plan("/hook", "hang:8", "hang:9"))
    async with pipeline(settings):
        first = await event(database, merchant.merchant_id)
        await receiver.wait_for("/hook", 1)
        second = await event(database, merchant.merchant_id)
        await eventually(
            lambda: _status(database, second, "succeeded"), timeout_s=60, what="delivered"
        )
    sent = [r.webhook_id for r in receiver.at("/hook")]
    assert sorted(sent) == sorted([first, second])  # each exactly once
    assert await _status(database, first, "succeeded")


async def test_a_hanging_a_huge_and_a_redirecting_receiver_are_cut_off_recorded_and_retried(
    database, delivery_settings, receiver
):
    hanging = await hook(database, delivery_settings, receiver.plan("/hang", "hang:30"))
    huge = await hook(database, delivery_settings, receiver.plan("/huge", "huge"))
    moved = await hook(database, delivery_settings, receiver.plan("/moved", "redirect"))
    healthy = await hook(database, delivery_settings, receiver.plan("/ok"))
    async with pipeline(delivery_settings):
        events = {
            name: await event(database, merchant.merchant_id)
            for name, merchant in [
                ("hang", hanging),
                ("huge", huge),
                ("moved", moved),
                ("ok", healthy),
            ]
        }
        # The healthy endpoint is served while the hanging one is still waiting.
        await receiver.wait_for("/ok", 1, timeout_s=5)
        assert not await attempts(database, events["hang"])
        for name in ("huge", "moved", "hang"):
            await eventually(
                lambda name=name: _status(database, events[name], "succeeded"),
                timeout_s=40,
                what=f"{name} retried and delivered",
            )
    hang_attempts = await attempts(database, events["hang"])
    assert hang_attempts[0]["status_code"] is None
    assert "no answer within 10 s" in hang_attempts[0]["error"]
    assert 9_000 <= hang_attempts[0]["latency_ms"] < 15_000
    huge_attempts = await attempts(database, events["huge"])
    assert huge_attempts[0]["status_code"] == 200  # a 2xx with a huge body is still a 2xx
    assert len(huge_attempts[0]["response_excerpt"]) == 2048
    moved_attempts = await attempts(database, events["moved"])
    assert moved_attempts[0]["status_code"] == 302
    assert "redirect not followed" in moved_attempts[0]["error"]
    assert len(moved_attempts) == 2 and moved_attempts[1]["status_code"] == 200
    assert not receiver.at("/elsewhere")


async def _status(database, event_id: str, status: str) -> bool:
    found = await rows(
        database, "SELECT status FROM webhook_deliveries WHERE event_id = :e", e=event_id
    )
    return bool(found) and found[0]["status"] == status


async def test_the_jobs_listing_shows_the_callback_backlog(database, database_url, receiver):
    merchant = await hook(database, make_settings(database_url), receiver.plan("/hook"))
    await event(database, merchant.merchant_id)  # not relayed: no pipeline runs here
    async with app_client(jobs.create_app, make_settings(database_url)) as (_, client):
        callbacks = (await client.get("/api/v1/jobs")).json()["callbacks"]
    assert callbacks["events_unpublished"] == 1
    assert callbacks["oldest_unpublished_at"] is not None
    assert {"deliveries_pending", "deliveries_due", "failed_last_day", "endpoints_disabled"} <= set(
        callbacks
    )


def test_every_event_type_the_domains_emit_can_be_subscribed_to():
    assert set(STATUS_EVENTS.values()) <= EVENT_TYPES


async def test_a_redelivery_during_an_attempt_is_not_undone_by_that_attempt_s_outcome(
    database, database_url, receiver
):
    settings = make_settings(database_url)
    merchant = await hook(database, settings, receiver.plan("/hook"))
    event_id = await event(database, merchant.merchant_id)
    async with database.driver() as conn:
        await store.dispatch(conn, [event_id])
        (claimed,), _ = await store.claim(conn, [(await delivery(database, event_id))["id"]], 60)
    # While that attempt is out, the merchant asks for a redelivery ...
    async with app_client(api.create_app, settings) as (_, client):
        asked = await client.post(
            f"/api/v1/events/{event_id}/redeliver", headers={"x-api-key": merchant.api_key}
        )
    assert asked.status_code == 202
    # ... and then the attempt comes back failed under the old retry window.
    async with database.driver() as conn:
        await store.record(conn, [store.Outcome(claimed, "failed", 500, 12, "no", None, None)], 72)
    row = await delivery(database, event_id)
    assert row["status"] == "pending" and row["manual"] is True  # the redelivery stands
    assert [a["status_code"] for a in await attempts(database, event_id)] == [500]


async def test_a_delivery_that_cannot_be_signed_is_recorded_and_does_not_sink_its_batch(
    database, database_url, receiver
):
    settings = make_settings(database_url, callback_delivery_enabled=True)
    broken = await hook(database, settings, receiver.plan("/broken"))
    healthy = await hook(database, settings, receiver.plan("/ok"))
    async with database.engine.begin() as conn:  # a secret copied from another row: no AAD match
        await conn.exec_driver_sql(
            "UPDATE webhook_endpoints SET secret_encrypted = "
            "(SELECT secret_encrypted FROM webhook_endpoints WHERE id = $1) WHERE id = $2",
            (healthy.endpoint_id, broken.endpoint_id),
        )
    async with pipeline(settings):
        unsigned = await event(database, broken.merchant_id)
        signed = await event(database, healthy.merchant_id)
        recorded = await eventually(lambda: attempts(database, unsigned), what="recorded")
        await eventually(lambda: _status(database, signed, "succeeded"), what="other sent")
    row = await delivery(database, unsigned)
    assert not receiver.at("/broken")
    assert recorded[0]["status_code"] is None
    assert recorded[0]["error"] == "not sent: DecryptionError"
    assert row["status"] == "pending"  # retried on schedule


async def test_callbacks_are_delivered_from_a_database_url_s_own_schema(receiver, tmp_path):
    """The guide's `?schema=` form: the relay's own connection must use it like the pools
    (a database of its own, so nothing in `public` can stand in for the schema's tables;
    migrated and served by real processes, as an operator would)."""
    name = f"nespay_test_{os.getpid()}_schema"
    url = (await create_database(name)).replace("schema=public", "schema=nespay_alt")
    env = base_env(url, CALLBACK_DELIVERY_ENABLED="true", SCANNER_ENABLED="false")
    alt = Database(make_settings(url))
    try:
        subprocess.run(
            [sys.executable, "-m", "nespay.cli", "db", "migrate"], env=env, check=True, timeout=120
        )
        merchant = await hook(alt, alt.settings, receiver.plan("/alt"))
        with nespay_process("jobs", env, tmp_path):
            event_id = await event(alt, merchant.merchant_id)
            (got,) = await receiver.wait_for("/alt", 1, timeout_s=15)
    finally:
        await alt.dispose()
        await drop_database(name)
    assert got.webhook_id == event_id
