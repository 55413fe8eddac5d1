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
from collections import deque
from collections.abc import Sequence
from typing import Any

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


class Acknowledger:
    """Acknowledges finished messages with few frames: one `multiple` ack up to the highest
    delivery tag below which every message is finished. A batch that finishes before an
    earlier one stays unacknowledged until that one is done too, so a crash still hands every
    unfinished message back to RabbitMQ. Tags count up per channel; after a reconnect the old
    channel's messages come back anyway, so its bookkeeping is dropped."""

    def __init__(self) -> None:
        self._channel: Any = None
        self._order: deque[int] = deque()
        self._done: set[int] = set()

    def received(self, message: AbstractIncomingMessage) -> None:
        if message.channel is not self._channel:
            self._channel = message.channel
            self._order.clear()
            self._done.clear()
        self._order.append(message.delivery_tag)  # type: ignore[arg-type]

    async def finished(self, batch: Sequence[AbstractIncomingMessage]) -> None:
        channel = self._channel
        self._done.update(m.delivery_tag for m in batch if m.channel is channel)  # type: ignore[misc]
        last = None
        while self._order and self._order[0] in self._done:
            last = self._order.popleft()
            self._done.discard(last)
        if last is not None:
            with contextlib.suppress(Exception):  # a closed channel redelivers them: harmless
                await channel.basic_ack(delivery_tag=last, multiple=True)


class CallbackConsumer:
    def __init__(self, runtime: Runtime, worker: DeliveryWorker) -> None:
        self.runtime = runtime
        self.worker = worker
        self._acks = Acknowledger()
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
        await queue.consume(self._receive)  # robust: re-consumes after a reconnect
        log.info("callback_consumer_started")
        while True:
            batch = [await self._inbox.get()]
            while len(batch) < MAX_BATCH and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            await self._batches.acquire()
            task = asyncio.create_task(self._handle(batch))
            self._tasks.add(task)
            task.add_done_callback(self._done)

    async def _receive(self, message: AbstractIncomingMessage) -> None:
        self._acks.received(message)
        self._inbox.put_nowait(message)

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
        await self._acks.finished(batch)

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
