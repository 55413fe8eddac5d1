"""Callback delivery in the jobs process: the outbox relay, the worker, and how work reaches
the worker — the RabbitMQ consumer, or without `RABBITMQ_URL` (development) the relay's
hand-off and a poller over the delivery table. Either way a sweep finds due deliveries whose
wake-up never came (a message lost with a broker that went away, a crash between a commit
and a publish), so RabbitMQ speeds callbacks up and is never the only copy of the work."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import structlog

from nespay.callbacks import store
from nespay.callbacks.consumer import CallbackConsumer
from nespay.callbacks.relay import OutboxRelay
from nespay.callbacks.worker import DeliveryWorker
from nespay.mail import transport
from nespay.runtime import Runtime

log = structlog.get_logger("nespay.callbacks")

SWEEP_BATCH = 1000
# With a broker, a delivery due this long without being claimed lost its wake-up.
SWEEP_GRACE_S = 30.0
POLL_INTERVAL_S = 1.0  # without a broker the poller is how retries happen
NOTICE_RETRY_S = 300.0  # an email about a disabled endpoint that failed is tried again after


class CallbackPipeline:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.worker = DeliveryWorker(runtime)
        self.consumer: CallbackConsumer | None = None
        if runtime.broker is not None:
            self.consumer = CallbackConsumer(runtime, self.worker)
            self.relay = OutboxRelay(runtime)
            self.sweep_interval_s = float(runtime.settings.callback_sweep_interval_s)
            self.grace_s = SWEEP_GRACE_S
        else:
            # The relay goes on with its next batch while the worker sends these.
            self.relay = OutboxRelay(runtime, handoff=self._handoff)
            self.sweep_interval_s = min(POLL_INTERVAL_S, runtime.settings.callback_sweep_interval_s)
            self.grace_s = 0.0
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self.relay.run_forever(), name="callbacks.relay"),
            asyncio.create_task(self._sweep_forever(), name="callbacks.sweep"),
        ]
        if self.consumer is not None:
            self._tasks.append(
                asyncio.create_task(self.consumer.run_forever(), name="callbacks.consumer")
            )
        # No warning for CALLBACK_ALLOW_PRIVATE_URLS: outside development and test the
        # settings refuse it at start-up (config.Settings._production_guards).
        log.info("callback_pipeline_started", broker=self.consumer is not None)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.consumer is not None:
            await self.consumer.close()
        await self.worker.drain()

    async def _handoff(self, delivery_ids: Sequence[str]) -> None:
        self.worker.start(delivery_ids)

    async def sweep_once(self) -> int:
        """Start delivering what has been due for longer than the grace; returns how many were
        found. Not awaited: one endpoint that takes its full 10 s must not hold up the next
        poll (without a broker, the poll is how every merchant's retries happen); what is in
        flight is leased, so the next poll does not pick it up again."""
        async with self.runtime.db.driver() as conn:
            ids = await store.due(conn, self.grace_s, SWEEP_BATCH)
        if ids:
            if self.grace_s:
                log.info("callback_sweep_found", deliveries=len(ids))
            self.worker.start(ids)
        return len(ids)

    async def notices_once(self, retry_after_s: float = NOTICE_RETRY_S) -> int:
        """Try again the emails about disabled endpoints that did not go out."""
        if transport(self.runtime.settings) is None:
            return 0  # nothing could send them; logged when each endpoint was disabled
        async with self.runtime.db.driver() as conn:
            endpoints = await conn.fetch(store.CLAIM_NOTICES, retry_after_s)
        for endpoint in endpoints:
            await self.worker.notify_disabled(dict(endpoint))
        return len(endpoints)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval_s)
            try:
                await self.sweep_once()
                await self.notices_once()
            except Exception as error:  # noqa: BLE001 - database down: try again next time
                log.warning("callback_sweep_failed", error=type(error).__name__)
