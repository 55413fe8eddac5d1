"""The RabbitMQ side of delivery: consume `nespay.callbacks` (events from the relay, and
delivery wake-ups coming back from the TTL retry queues or from redeliveries), hand the
delivery ids to the worker in batches, acknowledge once their attempts are recorded.

A message is acknowledged only after its work is recorded, so a crash hands it to another
consumer (or to this one after restart); the delivery rows make a repeat harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence

import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel

from nespay.broker import CALLBACKS_QUEUE
from nespay.callbacks.messages import DELIVERIES, EVENT, KIND, publish_deliveries
from nespay.callbacks.worker import DeliveryWorker
from nespay.runtime import Runtime

log = structlog.get_logger("nespay.callbacks")

MAX_BATCH = 200
MAX_BATCHES_IN_FLIGHT = 8
# A delivery another worker holds is looked at again after this long (its lease may have
# belonged to a worker that crashed).
LEASED_RETRY_S = 5.0


class CallbackConsumer:
    def __init__(self, runtime: Runtime, worker: DeliveryWorker) -> None:
        self.runtime = runtime
        self.worker = worker
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._batches = asyncio.Semaphore(MAX_BATCHES_IN_FLIGHT)
        self._tasks: set[asyncio.Task[None]] = set()
        self._channel: AbstractRobustChannel | None = None

    async def run_forever(self) -> None:
        broker = self.runtime.broker
        assert broker is not None
        while broker.connection is None:  # noqa: ASYNC110 - the broker connects in the background
            await asyncio.sleep(0.5)
        channel = await broker.connection.channel()
        await channel.set_qos(prefetch_count=MAX_BATCH * MAX_BATCHES_IN_FLIGHT)
        # Declared (passively), not just looked up: only declared queues get their consumer
        # restored by the robust channel after RabbitMQ comes back.
        queue = await channel.declare_queue(CALLBACKS_QUEUE, passive=True)
        self._channel = channel  # type: ignore[assignment]
        await queue.consume(self._inbox.put)  # robust: re-consumes after a reconnect
        log.info("callback_consumer_started")
        while True:
            batch = [await self._inbox.get()]
            while len(batch) < MAX_BATCH and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            await self._batches.acquire()
            task = asyncio.create_task(self._handle(batch))
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._batches.release()

    async def _handle(self, batch: Sequence[AbstractIncomingMessage]) -> None:
        try:
            event_ids, delivery_ids = _parse(batch)
            leased = await self.worker.run(list(dict.fromkeys(delivery_ids)), event_ids)
            if leased and self._channel is not None:
                await publish_deliveries(self._channel, leased, delay_s=LEASED_RETRY_S)
        except Exception:
            # The rows are the truth: the sweep finds whatever this batch left due.
            log.exception("callback_batch_failed", messages=len(batch))
        for message in batch:
            with contextlib.suppress(Exception):  # a closed channel redelivers it: harmless
                await message.ack()

    async def schedule_retry(self, delivery_id: str, delay_s: float) -> None:
        """The worker's retry hook: a wake-up through the TTL queue of that delay."""
        broker = self.runtime.broker
        if broker is None or broker.channel is None:
            return  # the sweep finds it when due
        try:
            await publish_deliveries(broker.channel, [delivery_id], delay_s=delay_s)
        except Exception as error:  # noqa: BLE001 - the sweep covers a lost wake-up
            log.warning("callback_retry_not_published", error=type(error).__name__)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=15.0)
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await self._channel.close()


def _parse(batch: Sequence[AbstractIncomingMessage]) -> tuple[list[str], list[str]]:
    events: list[str] = []
    deliveries: list[str] = []
    for message in batch:
        kind = (message.headers or {}).get(KIND)
        try:
            if kind == EVENT and message.message_id:
                events.append(message.message_id)
            elif kind == DELIVERIES:
                deliveries += [str(i) for i in json.loads(message.body)["deliveries"]]
            else:
                log.warning("callback_message_unknown", kind=str(kind))
        except (ValueError, KeyError, TypeError):
            log.warning("callback_message_malformed", kind=str(kind))
    return events, deliveries
