"""Callbacks are never lost: the jobs process killed mid-delivery, RabbitMQ stopped and started
during a burst, a merchant down for three days — and never sent where they must not go.

Each test has a database of its own (the jobs processes' sweep and relay read everything
committed) and the private RabbitMQ node without what earlier tests left in its queues."""

from __future__ import annotations

import signal
from contextlib import contextmanager
from email import message_from_bytes
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from nespay.apps import api
from nespay.callbacks.messages import DELIVERIES
from nespay.callbacks.ssrf import CallbackUrlRefused, check_callback_url
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
from tests.fixtures.database import make_settings
from tests.fixtures.fake_ses import REGION
from tests.fixtures.processes import base_env, free_port, nespay_process
from tests.fixtures.rabbitmq import take_left

pytestmark = pytest.mark.own_database


def jobs_env(database_url: str, rabbit_url: str, **extra: str) -> dict[str, str]:
    settings = {
        "RABBITMQ_URL": rabbit_url,
        "CALLBACK_DELIVERY_ENABLED": "true",
        "CALLBACK_RETRY_SCHEDULE_S": "1",
        "CALLBACK_LEASE_S": "15",
        "CALLBACK_SWEEP_INTERVAL_S": "2",
        "SCANNER_ENABLED": "false",
        "RPC_HEALTH_JOB_ENABLED": "false",
        "RATES_JOB_ENABLED": "false",
        "INVOICE_EXPIRY_JOB_ENABLED": "false",
    }
    return base_env(database_url, **(settings | extra))


async def _all_succeeded(database, event_ids: list[str]) -> bool:
    found = await rows(
        database,
        "SELECT count(*) AS n FROM webhook_deliveries "
        "WHERE event_id = ANY(:ids) AND status = 'succeeded'",
        ids=event_ids,
    )
    return found[0]["n"] == len(event_ids)


async def test_sigkill_mid_delivery_delivers_after_restart_with_the_same_webhook_id(
    database, settings, database_url, rabbit, receiver, tmp_path
):
    merchant = await hook(database, settings, receiver.plan("/hook", "hang:8"))
    env = jobs_env(database_url, rabbit.url)
    with nespay_process("jobs", env, tmp_path) as first:
        burst = [await event(database, merchant.merchant_id) for _ in range(20)]
        await receiver.wait_for("/hook", 1)  # one POST hangs: the process is mid-delivery
        first.stop(signal.SIGKILL)
    with nespay_process("jobs", env, tmp_path) as second:
        await eventually(
            lambda: _all_succeeded(database, burst), timeout_s=60, what="burst delivered"
        )
        second.stop()
    got = receiver.at("/hook")
    assert {r.webhook_id for r in got} == set(burst)  # every one arrived ...
    hung = got[0].webhook_id  # the POST in flight when the process died went again
    assert [r.answered for r in got if r.webhook_id == hung] == ["hang:8", 200]
    for event_id in burst:
        row = await delivery(database, event_id)
        assert row["status"] == "succeeded"
        # ... and whatever was sent twice carried the same webhook-id and body
        sent = [r for r in got if r.webhook_id == event_id]
        assert len({r.body for r in sent}) == 1
        assert all(merchant.verify(r)["id"] == event_id for r in sent)


async def test_rabbitmq_stopped_and_started_during_a_burst_loses_nothing(
    database, settings, database_url, rabbit, receiver, tmp_path
):
    merchant = await hook(database, settings, receiver.plan("/hook"))
    # No sweep: the burst must get through RabbitMQ once it is back (the relay republishes,
    # the consumer is restored), not through the database safety net.
    env = jobs_env(database_url, rabbit.url, CALLBACK_SWEEP_INTERVAL_S="3600")
    sent: list[str] = []
    with nespay_process("jobs", env, tmp_path) as jobs:
        sent += [await event(database, merchant.merchant_id) for _ in range(50)]
        rabbit.stop_app()
        try:
            sent += [await event(database, merchant.merchant_id) for _ in range(50)]
        finally:
            rabbit.start_app()
        sent += [await event(database, merchant.merchant_id) for _ in range(50)]
        await eventually(
            lambda: _all_succeeded(database, sent), timeout_s=90, what="burst delivered"
        )
        published = await rows(
            database,
            "SELECT count(*) AS n FROM events WHERE id = ANY(:ids) AND published_at IS NULL",
            ids=sent,
        )
        jobs.stop()
    assert {r.webhook_id for r in receiver.at("/hook")} == set(sent)
    assert published[0]["n"] == 0  # and every event reached RabbitMQ in the end


async def test_two_jobs_processes_share_the_work_and_send_each_callback_once(
    database, settings, database_url, rabbit, receiver, tmp_path
):
    merchant = await hook(database, settings, receiver.plan("/hook"))
    env = jobs_env(database_url, rabbit.url)
    with nespay_process("jobs", env, tmp_path) as one, nespay_process("jobs", env, tmp_path) as two:
        sent = [
            await event(database, merchant.merchant_id, subject=f"inv_{i % 10}") for i in range(100)
        ]
        await eventually(lambda: _all_succeeded(database, sent), timeout_s=60, what="delivered")
        logs = one.log() + two.log()
        one.stop()
        two.stop()
    # Every message was acknowledged: none went back to a queue when the consumers left. What
    # may remain is a delayed wake-up one replica scheduled for a delivery the other held a
    # lease on; it names only this test's deliveries, all succeeded: it claims nothing.
    left = await take_left(rabbit.url)
    assert not [m for m in left if m["redelivered"]], left
    assert all(m["kind"] == DELIVERIES for m in left), left
    woken = [delivery_id for m in left for delivery_id in m["body"]["deliveries"]]
    succeeded = await rows(
        database,
        "SELECT id FROM webhook_deliveries WHERE event_id = ANY(:events) AND status = 'succeeded'",
        events=sent,
    )
    assert set(woken) <= {row["id"] for row in succeeded}, left
    got = [r.webhook_id for r in receiver.at("/hook")]
    assert sorted(got) == sorted(sent)  # each exactly once: no crash, so no duplicate
    assert logs.count('"relay_leading"') == 1  # one relay; the other replica stands by
    by_invoice: dict[str, list[str]] = {}
    for request in receiver.at("/hook"):
        by_invoice.setdefault(body(request)["data"]["id"], []).append(request.webhook_id)
    assert len(by_invoice) == 10
    for event_ids in by_invoice.values():  # and each invoice's events in commit order
        assert event_ids == sorted(event_ids, key=sent.index)


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's naming
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@contextmanager
def smtp_server(port: int | None = None):
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port or free_port())
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{controller.port}", inbox
    finally:
        controller.stop()


async def test_a_receiver_down_for_three_days_is_disabled_emailed_then_redelivered_by_hand(
    database, database_url, receiver
):
    with smtp_server() as (smtp_url, inbox):
        settings = make_settings(
            database_url,
            callback_delivery_enabled=True,
            callback_retry_schedule_s="1",
            smtp_url=smtp_url,
        )
        merchant = await hook(database, settings, receiver.plan("/hook", then=500))
        async with pipeline(settings), app_client(api.create_app, settings) as (_, client):
            event_id = await event(database, merchant.merchant_id)
            await receiver.wait_for("/hook", 1)
            # Three days pass (the clock moves for this delivery and this endpoint).
            await _backdate_three_days(database, event_id, merchant.endpoint_id)
            failed = await eventually(
                lambda: _row_if(database, event_id, "failed"), what="delivery marked failed"
            )
            # The endpoint is disabled by the statement after the one that failed the delivery.
            disabled = await eventually(
                lambda: _endpoint_if(database, merchant.endpoint_id, "disabled_at"),
                what="endpoint disabled",
            )
            await eventually(lambda: _some(inbox.messages), what="email sent")
            tries = len(receiver.at("/hook"))
            await event(database, merchant.merchant_id)  # a new event: not sent while disabled
            audit = await rows(
                database,
                "SELECT * FROM audit_logs WHERE action = 'webhook_endpoint.disabled' "
                "AND target_id = :id",
                id=merchant.endpoint_id,
            )
            assert len(receiver.at("/hook")) == tries

            # The merchant's server is back; the merchant re-enables and redelivers.
            receiver.plan("/hook", then=200)
            headers = {"x-api-key": merchant.api_key}
            enabled = await client.patch(
                f"/api/v1/webhook-endpoints/{merchant.endpoint_id}",
                json={"enabled": True},
                headers=headers,
            )
            redelivered = await client.post(f"/api/v1/events/{event_id}/redeliver", headers=headers)
            await eventually(lambda: _row_if(database, event_id, "succeeded"), what="redelivered")
            log = (
                await client.get(f"/api/v1/events/{event_id}/deliveries", headers=headers)
            ).json()
    assert failed["failed_at"] is not None
    assert disabled["enabled"] is False
    assert "failed since" in disabled["disabled_reason"]
    assert len(audit) == 1 and audit[0]["actor_type"] == "system"
    (mail,) = inbox.messages
    assert mail["To"].endswith("@example.com")
    assert merchant.endpoint_id in mail.get_payload() and receiver.url in mail.get_payload()
    assert enabled.status_code == 200 and redelivered.status_code == 202
    last = receiver.at("/hook")[-1]
    assert last.webhook_id == event_id and last.answered == 200
    merchant.verify(last)
    (only,) = log["data"]
    assert only["status"] == "succeeded"
    newest = only["attempt_log"][0]
    assert newest["manual"] is True and newest["status_code"] == 200
    assert all(a["status_code"] == 500 for a in only["attempt_log"][1:])


async def _backdate_three_days(database, event_id: str, endpoint_id: str) -> None:
    """Move the clock three days for this delivery and its endpoint, between two attempts.

    Real time moves for an attempt in flight too; moving only the rows under a claimed attempt
    would leave that attempt judging its window by the clock it was claimed with. So the move
    waits for the row to be unleased: the UPDATE and a claim lock the same row, and whichever
    commits second sees the other's change.
    """

    async def move() -> bool:
        async with database.engine.begin() as conn:
            moved = await conn.exec_driver_sql(
                "UPDATE webhook_deliveries SET window_started_at = window_started_at "
                "- interval '3 days' WHERE event_id = $1 AND status = 'pending' "
                "AND (lease_until IS NULL OR lease_until < now()) RETURNING id",
                (event_id,),
            )
            if moved.first() is None:
                return False  # an attempt is in flight (nothing was changed): try again
            await conn.exec_driver_sql(
                "UPDATE webhook_endpoints SET failing_since = now() - interval '3 days' "
                "WHERE id = $1",
                (endpoint_id,),
            )
            return True

    await eventually(move, what="the delivery between two attempts")


async def test_the_disabled_email_is_sent_once_smtp_comes_back(database, database_url, receiver):
    port = free_port()  # nothing listens there yet: the SMTP server is down
    settings = make_settings(
        database_url,
        callback_delivery_enabled=True,
        callback_retry_schedule_s="1",
        smtp_url=f"smtp://127.0.0.1:{port}",
    )
    merchant = await hook(database, settings, receiver.plan("/hook", then=500))
    async with pipeline(settings) as running:
        event_id = await event(database, merchant.merchant_id)
        await receiver.wait_for("/hook", 1)
        await _backdate_three_days(database, event_id, merchant.endpoint_id)
        disabled = await eventually(
            lambda: _endpoint_if(database, merchant.endpoint_id, "disabled_at"), what="disabled"
        )
        await running.worker.drain()  # the first email try (refused) is over
        assert disabled["disabled_notice_sent_at"] is None
        with smtp_server(port) as (_, inbox):
            assert await running.notices_once(retry_after_s=0) == 1
            assert await running.notices_once(retry_after_s=0) == 0  # sent: not again
    (mail,) = inbox.messages
    assert merchant.endpoint_id in mail.get_payload()
    sent = await _endpoint_if(database, merchant.endpoint_id, "disabled_notice_sent_at")
    assert sent is not None


async def test_with_ses_alone_the_disabled_email_is_sent_once_ses_comes_back(
    database, database_url, receiver, fake_ses, aws_credentials
):
    fake_ses.fail_next(500, "InternalFailure", times=3)  # the first send and its retries
    settings = make_settings(
        database_url,
        callback_delivery_enabled=True,
        callback_retry_schedule_s="1",
        aws_ses_from_email="no-reply@nespay.example",
        aws_region=REGION,
        aws_ses_endpoint_url=fake_ses.url,
    )
    merchant = await hook(database, settings, receiver.plan("/hook", then=500))
    async with pipeline(settings) as running:
        event_id = await event(database, merchant.merchant_id)
        await receiver.wait_for("/hook", 1)
        await _backdate_three_days(database, event_id, merchant.endpoint_id)
        await eventually(
            lambda: _endpoint_if(database, merchant.endpoint_id, "disabled_at"), what="disabled"
        )
        await running.worker.drain()  # the first email try (SES failing) is over
        assert fake_ses.sent == []
        assert await running.notices_once(retry_after_s=0) == 1
        assert await running.notices_once(retry_after_s=0) == 0  # sent: not again
    (mail,) = fake_ses.messages()
    assert merchant.endpoint_id in mail.get_payload(decode=True).decode()
    assert await _endpoint_if(database, merchant.endpoint_id, "disabled_notice_sent_at")


async def _endpoint_if(database, endpoint_id: str, column: str) -> Any:
    row = (await rows(database, "SELECT * FROM webhook_endpoints WHERE id = :id", id=endpoint_id))[
        0
    ]
    return row if row[column] is not None else None


async def _row_if(database, event_id: str, status: str) -> Any:
    row = await delivery(database, event_id)
    return row if row["status"] == status else None


async def _some(items: list[Any]) -> bool:
    return bool(items)


@pytest.mark.parametrize("url", ["https://127.0.0.1/hook", "https://169.254.169.254/latest/"])
async def test_loopback_and_metadata_callback_urls_are_refused_in_production(settings, url):
    production = settings.model_copy(
        update={"app_env": "production", "callback_allow_private_urls": False}
    )
    with pytest.raises(CallbackUrlRefused):
        await check_callback_url(url, production)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_delivery_refuses_an_address_that_became_private_after_registration(
    database, database_url, receiver, host
):
    """DNS rebinding: the URL was accepted (here: while private URLs were allowed), and at
    delivery it leads to loopback — through a name the resolver checks, or as a literal.
    Nothing is sent."""
    allowed = make_settings(database_url)
    url = receiver.plan("/hook").replace("127.0.0.1", host)
    merchant = await hook(database, allowed, url)
    strict = make_settings(
        database_url,
        callback_delivery_enabled=True,
        callback_allow_private_urls=False,
        callback_retry_schedule_s="60",
    )
    async with pipeline(strict):
        event_id = await event(database, merchant.merchant_id)
        recorded = await eventually(lambda: attempts(database, event_id), what="attempt")
    assert not receiver.at("/hook")
    assert recorded[0]["status_code"] is None
    assert "private, loopback, link-local or reserved" in recorded[0]["error"]
    assert (await delivery(database, event_id))["status"] == "pending"  # retried later
