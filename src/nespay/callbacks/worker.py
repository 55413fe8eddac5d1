"""The delivery worker: claims due deliveries, POSTs them signed, records every attempt and
decides what happens next (done, retried later, failed), in batches.

Used by the RabbitMQ consumer and, without a broker, by the poller; both only hand it delivery
ids, the rows decide the rest. At least once: a crash after the POST and before the record
means the lease runs out and the delivery is sent again, with the same `webhook-id` (the
event id), which is what Standard Webhooks receivers deduplicate on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from datetime import timedelta
from typing import Any

import structlog

from nespay.callbacks import store
from nespay.callbacks.messages import backoff_s, wake
from nespay.callbacks.notify import endpoint_disabled
from nespay.callbacks.sender import AttemptResult
from nespay.callbacks.store import Claimed, Outcome
from nespay.metrics import (
    CALLBACK_ATTEMPT_DURATION,
    CALLBACK_ATTEMPTS,
    CALLBACK_ENDPOINTS_DISABLED,
)
from nespay.runtime import Runtime

log = structlog.get_logger("nespay.callbacks")

# Attempts that finish within this many seconds are recorded together, the rest of the batch
# when its last one ends (recording every finished wave instead measured 17 % fewer deliveries
# per second). Waiting is safe: no POST starts unless it ends before the batch's leases do
# (LEASE_MARGIN_S), so every outcome is recorded under its own claim.
FIRST_WAVE_S = 0.5
# A POST starts only while its lease outlasts the POST's timeout by this much (the record after
# it needs time too).
LEASE_MARGIN_S = 2.0


class DeliveryWorker:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self._slots = asyncio.Semaphore(self.settings.callback_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self.window = timedelta(hours=self.settings.callback_retry_window_h)

    async def run(self, delivery_ids: Sequence[str], event_ids: Sequence[str] = ()) -> list[str]:
        """Deliver what of `delivery_ids` (and of the deliveries of `event_ids`) is due and
        first in line. Returns the ids another worker holds a live lease on (the caller looks
        again later)."""
        if not delivery_ids and not event_ids:
            return []
        # The leases end no earlier than this (measured before the claim, on this clock).
        lease_ends = time.monotonic() + self.settings.callback_lease_s
        async with self.runtime.db.driver() as conn:
            claimed, leased = await store.claim(
                conn, delivery_ids, self.settings.callback_lease_s, event_ids
            )
        if claimed:
            await self._deliver(claimed, lease_ends)
        return leased

    async def _deliver(self, claimed: list[Claimed], lease_ends: float) -> None:
        pending = {asyncio.create_task(self._attempt(d, lease_ends)) for d in claimed}
        wave: float | None = FIRST_WAVE_S
        while pending:
            done, pending = await asyncio.wait(pending, timeout=wave)
            wave = None
            outcomes = [outcome for task in done if (outcome := task.result()) is not None]
            if outcomes:
                await self._record(outcomes)

    async def _attempt(self, delivery: Claimed, lease_ends: float) -> Outcome | None:
        """Send `delivery` when a slot is free and decide its next step; None when it waited
        for a slot so long that its lease could run out mid-POST (another worker would then
        claim it and send it too): it is left to its lease, and goes again when that ends."""
        async with self._slots:
            sender = self.runtime.callback_sender
            if time.monotonic() + sender.timeout_s + LEASE_MARGIN_S > lease_ends:
                log.warning("callback_claim_outwaited", delivery_id=delivery.id)
                return None
            try:
                result = await self._send(delivery)
            except Exception as error:
                # Never lose the outcome of one delivery to an error of its own (a secret that
                # no longer decrypts, say): it is recorded as a failed attempt and retried on
                # the schedule, and the rest of the batch is recorded as usual.
                log.exception("callback_attempt_error", delivery_id=delivery.id)
                result = AttemptResult(None, 0, None, f"not sent: {type(error).__name__}")
        CALLBACK_ATTEMPT_DURATION.observe(result.latency_ms / 1000)
        if result.ok:
            status, delay = "succeeded", None
        else:
            delay = backoff_s(self.settings.callback_retry_delays, delivery.attempts)
            out_of_time = delivery.now + timedelta(seconds=delay) > (
                delivery.window_started_at + self.window
            )
            status = "failed" if out_of_time else "pending"
            delay = None if out_of_time else delay
            log.info(
                "callback_attempt_failed",
                delivery_id=delivery.id,
                event_id=delivery.event_id,
                endpoint_id=delivery.endpoint_id,
                attempt=delivery.attempts,
                status_code=result.status_code,
                error=result.error,
                next="failed" if status == "failed" else f"retry in {delay:.0f} s",
            )
        return Outcome(
            delivery,
            status,
            result.status_code,
            result.latency_ms,
            result.excerpt,
            result.error,
            delay,
        )

    async def _send(self, delivery: Claimed) -> AttemptResult:
        return await self.runtime.callback_sender.post_event(
            url=delivery.url,
            endpoint_id=delivery.endpoint_id,
            secret_encrypted=delivery.secret_encrypted,
            previous_secret_encrypted=delivery.previous_secret_encrypted,
            previous_secret_expires_at=delivery.previous_secret_expires_at,
            now=delivery.now,
            event_id=delivery.event_id,
            type=delivery.type,
            created_at=delivery.created_at,
            data=delivery.data,
        )

    async def _record(self, outcomes: list[Outcome]) -> None:
        try:
            async with self.runtime.db.driver() as conn:
                following, disabled = await store.record(
                    conn, outcomes, self.settings.callback_disable_after_h
                )
        except Exception:
            # Sent but not recorded: the leases run out and the deliveries go again (same
            # webhook-id). Nothing is lost; the receiver may see a duplicate.
            log.exception("callback_record_failed", deliveries=len(outcomes))
            return
        for outcome in outcomes:
            CALLBACK_ATTEMPTS.labels(
                "retry" if outcome.status == "pending" else outcome.status
            ).inc()
        CALLBACK_ENDPOINTS_DISABLED.inc(len(disabled))
        # A wake-up per retry through the TTL queue of its delay, confirmed together.
        await asyncio.gather(
            *(
                wake(self.runtime, [outcome.delivery.id], delay_s=outcome.delay_s)
                for outcome in outcomes
                if outcome.status == "pending" and outcome.delay_s is not None
            )
        )
        if following:
            self.start(following)
        for row in disabled:
            log.warning(
                "webhook_endpoint_disabled",
                endpoint_id=row["id"],
                merchant_id=row["merchant_id"],
                failing_since=row["failing_since"].isoformat(),
            )
            self._spawn(self.notify_disabled(dict(row)))

    async def notify_disabled(self, endpoint: dict[str, Any]) -> None:
        """Email the merchant about its disabled endpoint; remembered once it went out (until
        then the pipeline's sweep tries again)."""
        if await endpoint_disabled(self.settings, endpoint):
            try:
                async with self.runtime.db.driver() as conn:
                    await conn.execute(store.NOTICE_SENT, endpoint["id"])
            except Exception:  # noqa: BLE001 - at worst the merchant gets it twice
                log.exception("callback_notice_not_marked", endpoint_id=endpoint["id"])

    async def run_quietly(self, delivery_ids: Sequence[str]) -> None:
        """`run`, for callers that have no one to report a failure to."""
        try:
            await self.run(delivery_ids)
        except Exception:  # the sweep picks them up
            log.exception("callback_run_failed", deliveries=len(delivery_ids))

    def start(self, delivery_ids: Sequence[str]) -> None:
        """`run` in the background (tracked, so `drain` waits for it on shutdown)."""
        self._spawn(self.run_quietly(delivery_ids))

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout_s: float = 15.0) -> None:
        """Wait for follow-ups and emails in flight (on shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)
