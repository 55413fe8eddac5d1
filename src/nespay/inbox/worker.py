"""Handling stored provider webhooks, in the webhook process.

How a row reaches a handling: after the ingest's INSERT, a message naming it goes to the
`nespay.provider-webhooks` queue (without `RABBITMQ_URL`, development: handed over
in-process); every webhook replica consumes it. A sweep in every replica looks for rows still
pending and due — a message lost with RabbitMQ, a process killed between its INSERT and its
publish, a retry whose time has come — so the table, never the queue, is the truth.

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
from nespay.metrics import PROVIDER_WEBHOOKS_HANDLED
from nespay.runtime import Runtime

log = structlog.get_logger("nespay.inbox")

SWEEP_BATCH = 500
SWEEP_CONCURRENCY = 16
PREFETCH = 64
# With a broker, a row due this long without being handled lost its message (or is a retry).
SWEEP_GRACE_S = 5.0
POLL_INTERVAL_S = 1.0  # without a broker the sweep is how retries and replays are found


async def publish(channel: AbstractChannel, webhook_ids: Sequence[str]) -> None:
    for webhook_id in webhook_ids:
        await channel.default_exchange.publish(
            aio_pika.Message(
                webhook_id.encode(),
                message_id=webhook_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=PROVIDER_WEBHOOKS_QUEUE,
        )


async def wake(runtime: Runtime, webhook_ids: Sequence[str]) -> None:
    """Best effort, after the commit that made `webhook_ids` due: without a broker (or with
    it down) the webhook process's sweep finds them."""
    broker = runtime.broker
    if not webhook_ids or broker is None or broker.channel is None:
        return
    try:
        await publish(broker.channel, webhook_ids)
    except Exception as error:  # noqa: BLE001 - recoverable by the sweep, never fatal here
        log.warning("provider_webhook_wakeup_not_published", error=type(error).__name__)


class InboxWorker:
    def __init__(self, runtime: Runtime, registry: HandlerRegistry = handlers) -> None:
        self.runtime = runtime
        self.registry = registry
        self._tasks: set[asyncio.Task[object]] = set()

    def _spawn(self, coro: object) -> None:
        task = asyncio.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def enqueue(self, webhook_id: str) -> None:
        """After a new row has committed: a message for the consumers, or (without a broker)
        a handling here. Not awaited: the provider gets its answer without waiting for
        RabbitMQ; a message that never leaves is the sweep's to find."""
        if self.runtime.broker is None:
            self._spawn(self._handle_logged(webhook_id))
        else:
            self._spawn(wake(self.runtime, [webhook_id]))

    async def _handle_logged(self, webhook_id: str) -> None:
        try:
            await self.handle(webhook_id)
        except Exception:
            log.exception("provider_webhook_handling_interrupted", webhook_id=webhook_id)

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
        limit = asyncio.Semaphore(SWEEP_CONCURRENCY)

        async def one(webhook_id: str) -> None:
            async with limit:
                await self._handle_logged(webhook_id)

        await asyncio.gather(*(one(i) for i in ids))
        return len(ids)

    async def drain(self, timeout_s: float = 10.0) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)


class InboxPipeline:
    """The consumer (with a broker) and the sweep, for the webhook process's lifetime."""

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
        self._tasks = [asyncio.create_task(self._sweep_forever(), name="inbox.sweep")]
        if self.runtime.broker is not None:
            self._tasks.append(asyncio.create_task(self._consume(), name="inbox.consumer"))
        log.info("provider_inbox_started", broker=self.runtime.broker is not None)

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
        # Acknowledged once the handling is recorded; a failure to record is the sweep's.
        async with message.process(requeue=False, ignore_processed=True):
            await self.worker._handle_logged(message.body.decode(errors="replace"))  # noqa: SLF001

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval_s)
            try:
                await self.worker.sweep_once(self.grace_s)
            except Exception as error:  # noqa: BLE001 - database down: try again next time
                log.warning("provider_webhook_sweep_failed", error=type(error).__name__)
