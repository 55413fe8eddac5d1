"""Handling stored provider webhooks, in the webhook process.

How a row reaches a handling: after the ingest's INSERT, its id is handed to the process's
publisher, which sends everything handed to it since its last publish as one message to the
`nespay.provider-webhooks` queue (row ids, one a line) and waits for RabbitMQ's confirm before
the next — never holding a provider's answer (without `RABBITMQ_URL`, development: handed over
in-process). Every handling replica (`WEBHOOK_HANDLING_ENABLED`, default true) consumes the
queue. A sweep in every handling replica looks for rows still pending and due — a message lost
with RabbitMQ, a process killed between its INSERT and its publish, a retry whose time has
come — so the table, never the queue, is the truth.

One handling is one transaction: lock the row (`FOR UPDATE SKIP LOCKED`, so replicas never
handle it twice at once; a killed process's lock dies with its connection), run the handler
in a savepoint, stamp `handled_at` — or, when the handler raised, record the error and when
to try again, or `dead` after `WEBHOOK_MAX_ATTEMPTS`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from nespay.broker import PROVIDER_WEBHOOKS_QUEUE
from nespay.callbacks.messages import backoff_s
from nespay.db import sql
from nespay.inbox import repository
from nespay.inbox.handlers import HandlerRegistry, StoredWebhook, handlers
from nespay.kit.faults import fault_point
from nespay.metrics import PROVIDER_WEBHOOKS_HANDLED
from nespay.runtime import Runtime

log = structlog.get_logger("nespay.inbox")

SWEEP_BATCH = 500
# Handlings at once in a process (consumer and sweep together): each holds a pooled connection.
HANDLING_CONCURRENCY = 16
PREFETCH = 64
# Row ids per message: a publish (and its confirm) carries everything queued since the last.
PUBLISH_BATCH = 500
# A publish RabbitMQ does not confirm in time (a blocked broker) is given up: the sweep's.
PUBLISH_TIMEOUT_S = 10.0
# Ids waiting for the publisher at most; past it (RabbitMQ stuck) new ones are the sweep's.
PUBLISH_BACKLOG = 100_000
# With a broker, a row due this long without being handled lost its message (or is a retry).
SWEEP_GRACE_S = 5.0
POLL_INTERVAL_S = 1.0  # without a broker the sweep is how retries and replays are found


async def publish(channel: AbstractChannel, webhook_ids: Sequence[str]) -> None:
    """One persistent message per `PUBLISH_BATCH` ids (one a line), each confirmed."""
    for start in range(0, len(webhook_ids), PUBLISH_BATCH):
        batch = webhook_ids[start : start + PUBLISH_BATCH]
        await channel.default_exchange.publish(
            aio_pika.Message(
                "\n".join(batch).encode(),
                message_id=batch[0],
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=PROVIDER_WEBHOOKS_QUEUE,
        )


def ids_of(body: bytes) -> list[str]:
    """The row ids a message names (one, or several a line; anything else finds no row)."""
    return body.decode(errors="replace").split()


async def wake(runtime: Runtime, webhook_ids: Sequence[str]) -> None:
    """Best effort, after the commit that made `webhook_ids` due: without a broker (or with
    it down) the sweep of a handling replica finds them."""
    broker = runtime.broker
    if not webhook_ids or broker is None or broker.channel is None:
        return
    try:
        async with asyncio.timeout(PUBLISH_TIMEOUT_S):
            await publish(broker.channel, webhook_ids)
    except Exception as error:  # noqa: BLE001 - recoverable by the sweep, never fatal here
        log.warning("provider_webhook_wakeup_not_published", error=type(error).__name__)


class Publisher:
    """Wake-ups of newly stored rows, batched: one task publishes everything added since its
    last publish as one message and awaits the confirm, while the next batch gathers.

    A confirm per row cost more than the rest of the ingest. Nothing is lost by waiting here:
    the row has committed before it is added, and a row whose message never leaves (the
    process killed first: the `inbox.before_publish` fault point; RabbitMQ down) is found by
    a handling replica's sweep once its grace has passed."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._ids: list[str] = []
        self._added = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def add(self, webhook_id: str) -> None:
        if len(self._ids) >= PUBLISH_BACKLOG:
            return  # stored and committed: a handling replica's sweep finds it
        self._ids.append(webhook_id)
        self._added.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="inbox.publisher")

    async def _run(self) -> None:
        while not (self._closing and not self._ids):
            await self._added.wait()
            await self._publish_queued()

    async def _publish_queued(self) -> None:
        self._added.clear()
        batch, self._ids = self._ids, []
        if batch:
            fault_point(self.runtime.settings, "inbox.before_publish")
            await wake(self.runtime, batch)

    async def close(self) -> None:
        """Publish what is still queued (best effort: the sweep covers the rest), then stop."""
        self._closing = True
        self._added.set()
        if self._task is not None:
            await self._task


class InboxWorker:
    def __init__(self, runtime: Runtime, registry: HandlerRegistry = handlers) -> None:
        self.runtime = runtime
        self.registry = registry
        self.publisher = Publisher(runtime)
        self.handling = runtime.settings.webhook_handling_enabled
        self._limit = asyncio.Semaphore(HANDLING_CONCURRENCY)
        self._tasks: set[asyncio.Task[object]] = set()

    def _spawn(self, coro: object) -> None:
        task = asyncio.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def enqueue(self, webhook_id: str) -> None:
        """After a new row has committed: to the publisher (one message for many rows), or,
        without a broker, a handling here (if this process handles). Not awaited: the
        provider gets its answer without waiting for RabbitMQ; a message that never leaves
        is the sweep's to find."""
        if self.runtime.broker is not None:
            self.publisher.add(webhook_id)
        elif self.handling:
            self._spawn(self._handle_logged(webhook_id))

    async def _handle_logged(self, webhook_id: str) -> None:
        async with self._limit:
            try:
                await self.handle(webhook_id)
            except Exception:
                log.exception("provider_webhook_handling_interrupted", webhook_id=webhook_id)

    async def handle_all(self, webhook_ids: Sequence[str]) -> None:
        """Handle each (at most `HANDLING_CONCURRENCY` at once in the process), logging
        failures to record: those rows stay pending for the sweep. Of several, the rows no
        handler wants are stamped `ignored` in one statement first (a transaction each cost
        more than their intake)."""
        ids = list(dict.fromkeys(webhook_ids))
        if len(ids) > 1:
            try:
                ids = await self._ignore_unhandled(ids)
            except Exception as error:  # noqa: BLE001 - each is tried on its own instead
                log.warning("provider_webhook_batch_not_ignored", error=type(error).__name__)
        await asyncio.gather(*(self._handle_logged(i) for i in ids))

    async def _ignore_unhandled(self, webhook_ids: list[str]) -> list[str]:
        """Stamps the unwanted rows; returns the ids left to handle one by one."""
        async with self._limit, self.runtime.db.driver() as conn:
            ignored = await repository.ignore_unhandled(conn, webhook_ids, self.registry.handled())
        for row in ignored:
            log.info(
                "provider_webhook_ignored",
                webhook_id=row["id"],
                provider=row["provider"],
                event_type=row["event_type"],
            )
            PROVIDER_WEBHOOKS_HANDLED.labels(row["provider"], "ignored").inc()
        done = {row["id"] for row in ignored}
        return [i for i in webhook_ids if i not in done]

    async def handle(self, webhook_id: str) -> str | None:
        """Handle one row if it is pending, due and free; returns what became of it
        (`handled`, `ignored`, `pending` for a retry, `dead`) or None when it was not
        this handling's to take."""
        settings = self.runtime.settings
        async with self.runtime.db.session() as session:
            conn = sql(session)
            row = await repository.lock_due(conn, webhook_id)
            if row is None:
                return None
            stored = StoredWebhook(
                id=row["id"],
                provider=row["provider"],
                external_id=row["external_id"],
                event_type=row["event_type"],
                body=bytes(row["body"]),
                headers=repository.headers_of(row["headers"]),
                received_at=row["received_at"],
                attempts=row["attempts"],
            )
            bound = {"webhook_id": stored.id, "provider": stored.provider}
            handler = self.registry.get(stored.provider, stored.event_type)
            if handler is None:
                await repository.finish(conn, stored.id, "ignored")
                log.info("provider_webhook_ignored", event_type=stored.event_type, **bound)
                PROVIDER_WEBHOOKS_HANDLED.labels(stored.provider, "ignored").inc()
                return "ignored"
            session.info["runtime"] = self.runtime  # for handlers that call out (handlers.py)
            try:
                async with session.begin_nested():
                    outcome = await handler(session, stored)
            except Exception as error:  # noqa: BLE001 - any handler failure is retried
                delay = backoff_s(settings.webhook_retry_delays, stored.attempts + 1)
                outcome = await repository.fail(
                    conn,
                    stored.id,
                    f"{type(error).__name__}: {error}",
                    delay,
                    settings.webhook_max_attempts,
                )
                status = outcome["status"]
                log.warning(
                    "provider_webhook_dead" if status == "dead" else "provider_webhook_failed",
                    event_type=stored.event_type,
                    attempts=outcome["attempts"],
                    error=type(error).__name__,
                    retry_in_s=None if status == "dead" else round(delay, 1),
                    **bound,
                )
                PROVIDER_WEBHOOKS_HANDLED.labels(stored.provider, status).inc()
                return status
            # A handler that found nothing to do (an unknown reference, say) says "ignored".
            status = "ignored" if outcome == "ignored" else "handled"
            await repository.finish(conn, stored.id, status)
            PROVIDER_WEBHOOKS_HANDLED.labels(stored.provider, status).inc()
            return status

    async def sweep_once(self, grace_s: float = 0.0) -> int:
        """Handle what is pending and due (for longer than `grace_s`); returns how many."""
        async with self.runtime.db.driver() as conn:
            ids = await repository.due(conn, grace_s, SWEEP_BATCH)
        if ids and grace_s:
            log.info("provider_webhook_sweep_found", webhooks=len(ids))
        await self.handle_all(ids)
        return len(ids)

    async def drain(self, timeout_s: float = 10.0) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.publisher.close(), timeout_s)


class InboxPipeline:
    """The publisher, and in a handling replica the consumer (with a broker) and the sweep,
    for the webhook process's lifetime."""

    def __init__(self, runtime: Runtime, registry: HandlerRegistry = handlers) -> None:
        self.runtime = runtime
        self.worker = InboxWorker(runtime, registry)
        interval = float(runtime.settings.webhook_sweep_interval_s)
        if runtime.broker is not None:
            self.sweep_interval_s, self.grace_s = interval, SWEEP_GRACE_S
        else:
            self.sweep_interval_s, self.grace_s = min(POLL_INTERVAL_S, interval), 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._channel: AbstractChannel | None = None

    async def start(self) -> None:
        handling = self.worker.handling
        if handling:
            self._tasks = [asyncio.create_task(self._sweep_forever(), name="inbox.sweep")]
        if handling and self.runtime.broker is not None:
            self._tasks.append(asyncio.create_task(self._consume(), name="inbox.consumer"))
        log.info(
            "provider_inbox_started", broker=self.runtime.broker is not None, handling=handling
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.worker.drain()
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await self._channel.close()

    async def _consume(self) -> None:
        broker = self.runtime.broker
        assert broker is not None
        while broker.connection is None:  # noqa: ASYNC110 - the broker connects in the background
            await asyncio.sleep(0.5)
        channel = await broker.connection.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        # Declared (passively): only declared queues get their consumer restored by the
        # robust channel after RabbitMQ comes back.
        queue = await channel.declare_queue(PROVIDER_WEBHOOKS_QUEUE, passive=True)
        self._channel = channel  # type: ignore[assignment]
        await queue.consume(self._receive)
        log.info("provider_inbox_consumer_started")
        await asyncio.Event().wait()

    async def _receive(self, message: AbstractIncomingMessage) -> None:
        # Acknowledged once each handling is recorded; a failure to record is the sweep's.
        async with message.process(requeue=False, ignore_processed=True):
            await self.worker.handle_all(ids_of(message.body))

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval_s)
            try:
                await self.worker.sweep_once(self.grace_s)
            except Exception as error:  # noqa: BLE001 - database down: try again next time
                log.warning("provider_webhook_sweep_failed", error=type(error).__name__)
