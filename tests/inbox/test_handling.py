"""Handling stored provider webhooks: a failing handler is retried with backoff and goes
`dead`, an admin lists it and replays it from the backoffice and it is handled; the webhook
process killed (SIGKILL) between storing and handling loses nothing."""

from __future__ import annotations

import asyncio
import signal

import aio_pika
import httpx
import pytest

from nespay.apps import api, webhook
from nespay.broker import PROVIDER_WEBHOOKS_QUEUE
from nespay.inbox.worker import ids_of, publish
from tests.callbacks.delivery_rig import eventually
from tests.fixtures.app import app_client, unthrottled
from tests.fixtures.cognito import LOCAL_ADMIN_CLIENT, LOCAL_ADMIN_POOL, REGION
from tests.fixtures.processes import base_env, nespay_process
from tests.inbox.rig import (
    HOOKS,
    RAIN_KIND,
    inbox_settings,
    rain_request,
    recording,
    rows,
    settings_env,
    webhook_client,
)

pytestmark = pytest.mark.own_database
BO = "/api/backoffice/v1/provider-webhooks"


@pytest.fixture
def admin(local_issuer):
    def headers(group="admin"):
        claims = local_issuer.claims(
            "admin", sub="a1b2c3d4-0000-4000-8000-000000000009", **{"cognito:groups": [group]}
        )
        return {"authorization": f"Bearer {local_issuer.mint(claims)}"}

    return headers


def backoffice_settings(database_url, local_issuer, **extra):
    return unthrottled(
        inbox_settings(
            database_url,
            aws_region=REGION,
            cognito_admin_pool_id=LOCAL_ADMIN_POOL,
            cognito_admin_client_id=LOCAL_ADMIN_CLIENT,
            cognito_endpoint_url=local_issuer.endpoint_url,
            **extra,
        )
    )


async def _one(database, webhook_id, status):
    return await rows(database, "id = :i AND status = :s", i=webhook_id, s=status)


async def test_a_failing_handler_is_retried_then_dead_then_replayed_by_an_admin_and_handled(
    database, database_url, rabbit, local_issuer, admin
):
    settings = backoffice_settings(database_url, local_issuer, rabbitmq_url=rabbit.url)
    async with (
        recording("rain", RAIN_KIND) as handler,
        webhook_client(settings) as hooks,
        app_client(api.create_app, settings) as (_, backoffice),
    ):
        handler.failing = True
        raw, headers = rain_request("evt-flaky")
        webhook_id = (await hooks.post(f"{HOOKS}/rain", content=raw, headers=headers)).json()["id"]
        (dead,) = await eventually(lambda: _one(database, webhook_id, "dead"), what="dead")
        assert dead["attempts"] == 3 and handler.calls == [webhook_id] * 3
        assert dead["last_error"] == "RuntimeError: the handler's dependency is down"
        assert dead["handled_at"] is None and dead["next_attempt_at"] is None

        listed = await backoffice.get(BO, headers=admin("support"), params={"status": "dead"})
        assert listed.status_code == 200, listed.text
        assert [w["id"] for w in listed.json()["data"]] == [webhook_id]
        assert listed.json()["data"][0]["body"] == raw.decode()
        refused = await backoffice.post(f"{BO}/{webhook_id}/replay", headers=admin("support"))
        assert refused.status_code == 403, refused.text

        handler.failing = False
        replayed = await backoffice.post(f"{BO}/{webhook_id}/replay", headers=admin())
        assert replayed.status_code == 202, replayed.text
        assert replayed.json()["status"] == "pending" and replayed.json()["attempts"] == 0
        (handled,) = await eventually(
            lambda: _one(database, webhook_id, "handled"), what="handled after replay"
        )
        assert handled["attempts"] == 1 and handled["replayed_at"] is not None
        assert handler.calls == [webhook_id] * 4

        again = await backoffice.post(f"{BO}/{webhook_id}/replay", headers=admin())
        assert again.status_code == 202  # a handled one is re-queued too
        await eventually(
            lambda: _handled_again(database, webhook_id, handled["handled_at"]),
            what="handled again",
        )
        assert handler.calls == [webhook_id] * 5
        missing = await backoffice.post(f"{BO}/pwh_nope/replay", headers=admin())
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "provider_webhook_not_found"
    audit = await _audit(database, webhook_id)
    assert [a["action"] for a in audit] == ["provider_webhook.replayed"] * 2
    assert audit[0]["before"]["status"] == "dead" and audit[0]["after"]["status"] == "pending"


async def _handled_again(database, webhook_id, before):
    return await rows(
        database, "id = :i AND status = 'handled' AND handled_at > :b", i=webhook_id, b=before
    )


async def _audit(database, webhook_id):
    from sqlalchemy import text

    async with database.engine.connect() as conn:
        result = await conn.execute(
            text("SELECT * FROM audit_logs WHERE target_id = :t ORDER BY id"), {"t": webhook_id}
        )
        return list(result.mappings())


async def test_the_backoffice_list_filters_and_pages(database, database_url, local_issuer, admin):
    settings = backoffice_settings(database_url, local_issuer)
    async with (
        webhook_client(settings) as hooks,
        app_client(api.create_app, settings) as (_, backoffice),
    ):
        ids = []
        for n in range(3):
            raw, headers = rain_request(f"evt-page-{n}", "user.updated" if n else "card.updated")
            ids.append(
                (await hooks.post(f"{HOOKS}/rain", content=raw, headers=headers)).json()["id"]
            )
        first = await backoffice.get(BO, headers=admin(), params={"limit": 2})
        assert [w["id"] for w in first.json()["data"]] == ids[::-1][:2]
        assert first.json()["has_more"] is True
        rest = await backoffice.get(
            BO, headers=admin(), params={"limit": 2, "starting_after": ids[1]}
        )
        assert [w["id"] for w in rest.json()["data"]] == [ids[0]]
        assert rest.json()["has_more"] is False
        by_type = await backoffice.get(BO, headers=admin(), params={"event_type": "card.updated"})
        assert [w["id"] for w in by_type.json()["data"]] == [ids[0]]
        by_provider = await backoffice.get(BO, headers=admin(), params={"provider": "privy"})
        assert by_provider.json()["data"] == []
        bad = await backoffice.get(BO, headers=admin(), params={"status": "nope"})
        assert bad.status_code == 422
        anonymous = await backoffice.get(BO)
        assert anonymous.status_code == 401


@pytest.mark.parametrize(
    "fault",
    [
        "inbox.after_store",  # stored, the provider not answered, nothing queued
        "inbox.before_publish",  # stored, handed to the batching publisher, not yet published
    ],
)
async def test_sigkill_after_storing_and_before_handling_loses_nothing(
    database, database_url, rabbit, tmp_path, fault
):
    env = base_env(database_url, RABBITMQ_URL=rabbit.url, **settings_env())
    raw, headers = rain_request("evt-crash")
    with nespay_process("webhook", {**env, "NESPAY_FAULT": fault}, tmp_path) as doomed:
        try:  # the provider gets no answer, or (before_publish) its 200 just before the kill
            answer = httpx.post(f"{doomed.base_url}{HOOKS}/rain", content=raw, headers=headers)
            assert answer.status_code == 200 and fault == "inbox.before_publish"
        except httpx.TransportError:
            pass
        assert doomed.process.wait(timeout=10) == -signal.SIGKILL
    (stored,) = await rows(database)  # ... but the webhook was stored, and never queued
    assert stored["status"] == "pending" and stored["handled_at"] is None
    assert await _take_raw(rabbit.url) == []
    with nespay_process("webhook", env, tmp_path) as restarted:
        (handled,) = await eventually(
            lambda: rows(database, "handled_at IS NOT NULL"), what="handled after restart"
        )
        # The provider's retry of the same event is acknowledged, not stored or handled again.
        retry = httpx.post(f"{restarted.base_url}{HOOKS}/rain", content=raw, headers=headers)
        assert retry.status_code == 200 and retry.json()["duplicate"] is True
        assert retry.json()["id"] == stored["id"]
        log = restarted.log()
    assert handled["id"] == stored["id"] and handled["status"] == "ignored"
    assert handled["attempts"] == 1
    assert len(await rows(database)) == 1
    assert "rain-test-api-key" not in log


async def test_an_intake_only_replica_stores_and_queues_and_a_handling_replica_handles(
    database, database_url, rabbit
):
    intake = inbox_settings(database_url, rabbitmq_url=rabbit.url, webhook_handling_enabled=False)
    async with webhook_client(intake) as hooks:
        answers = await asyncio.gather(
            *(hooks.post(f"{HOOKS}/rain", content=r, headers=h) for r, h in _rain_batch(5))
        )
    stored = {answer.json()["id"] for answer in answers}
    assert len(stored) == 5 and all(a.status_code == 200 for a in answers)
    # Stopped: whatever it had queued is published, and nothing was handled (it never consumes).
    assert {r["id"] for r in await rows(database, "status = 'pending'")} == stored
    messages = await _take_raw(rabbit.url)
    assert sorted(i for m in messages for i in ids_of(m)) == sorted(stored)
    # Those messages are gone now (taken above): the handling replica's sweep finds the rows.
    handling = inbox_settings(database_url, rabbitmq_url=rabbit.url)
    async with webhook_client(handling):
        done = await eventually(
            lambda: _all_handled(database, 5), what="handled by the handling replica"
        )
    assert {r["id"] for r in done} == stored and {r["status"] for r in done} == {"ignored"}
    assert {r["attempts"] for r in done} == {1}


async def test_one_message_naming_several_rows_gets_each_handled_once(
    database, database_url, rabbit
):
    intake = inbox_settings(database_url, rabbitmq_url=rabbit.url, webhook_handling_enabled=False)
    async with webhook_client(intake) as hooks:
        for raw, headers in _rain_batch(3):
            assert (await hooks.post(f"{HOOKS}/rain", content=raw, headers=headers)).is_success
    ids = [r["id"] for r in await rows(database)]
    await _take_raw(rabbit.url)  # whatever the intake published: replaced by one message
    connection = await aio_pika.connect(rabbit.url)
    async with connection:
        await publish(await connection.channel(), [*ids, ids[0], "pwh_unknown"])
    async with (
        recording("rain", RAIN_KIND) as handler,
        webhook_client(inbox_settings(database_url, rabbitmq_url=rabbit.url)),
    ):
        await eventually(lambda: _all_handled(database, 3), what="all three handled")
    assert sorted(handler.calls) == sorted(ids)  # the repeated id was not handled twice


def _rain_batch(count):
    return [rain_request(f"evt-batch-{n}") for n in range(count)]


async def _all_handled(database, count):
    done = await rows(database, "handled_at IS NOT NULL")
    return done if len(done) == count else None


async def _take_raw(url):
    connection = await aio_pika.connect(url)
    bodies = []
    async with connection:
        queue = await (await connection.channel()).get_queue(PROVIDER_WEBHOOKS_QUEUE)
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            bodies.append(message.body)
    return bodies


async def test_a_batch_stamps_unwanted_rows_at_once_and_hands_the_rest_to_their_handler_once(
    database, database_url
):
    # Handling off: nothing but the calls below handles (no consumer, no sweep).
    settings = inbox_settings(database_url, webhook_handling_enabled=False)
    async with (
        recording("rain", "card.updated") as handler,
        app_client(webhook.create_app, settings) as (app, hooks),
    ):

        async def post(event_id, kind):
            raw, headers = rain_request(event_id, kind)
            return (await hooks.post(f"{HOOKS}/rain", content=raw, headers=headers)).json()["id"]

        wanted = [await post(f"evt-wanted-{n}", "card.updated") for n in range(3)]
        unwanted = [await post(f"evt-unwanted-{n}", "card.created") for n in range(2)]
        batch = [*wanted, *unwanted, wanted[0], unwanted[0], "pwh_unknown"]
        await app.state.inbox.worker.handle_all(batch)
        await app.state.inbox.worker.handle_all(batch)  # all done: nothing is handled again
    assert sorted(handler.calls) == sorted(wanted)
    stored = {row["id"]: row for row in await rows(database)}
    assert {i: stored[i]["status"] for i in wanted} == dict.fromkeys(wanted, "handled")
    assert {i: stored[i]["status"] for i in unwanted} == dict.fromkeys(unwanted, "ignored")
    assert {row["attempts"] for row in stored.values()} == {1}
    assert all(row["handled_at"] is not None for row in stored.values())


async def test_with_rabbitmq_down_webhooks_are_answered_stored_and_handled_by_the_sweep(
    database, database_url, rabbit
):
    settings = inbox_settings(database_url, rabbitmq_url=rabbit.url)
    async with webhook_client(settings) as hooks:
        rabbit.stop_app()
        try:
            answers = [
                await hooks.post(f"{HOOKS}/rain", content=raw, headers=headers)
                for raw, headers in _rain_batch(3)
            ]
            assert [a.status_code for a in answers] == [200] * 3  # the provider is not held up
            done = await eventually(
                lambda: _all_handled(database, 3), what="handled while RabbitMQ is down"
            )
        finally:
            rabbit.start_app()
    assert {row["id"] for row in done} == {a.json()["id"] for a in answers}
    assert {row["attempts"] for row in done} == {1}
