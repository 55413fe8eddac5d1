"""RabbitMQ: one robust connection per process and the topology the domains use.

Declarations are idempotent (every process declares at start). The topology:

- `nespay.events` (topic, durable): the outbox relay publishes each committed event here with
  the event type as routing key.
- `nespay.callbacks` (durable queue, bound to `nespay.events` with `#`): one message per event
  (the relay already made its delivery rows), plus delivery wake-ups; the callback consumer
  hands the due deliveries to the worker.
- `nespay.callbacks.retry` (direct, durable) and one `nespay.callbacks.retry.<delay>` queue per
  backoff step, each with a TTL that dead-letters back into `nespay.callbacks`: retries wait in
  the broker, so they survive restarts of every process (and the delivery rows hold them too).
- `nespay.provider-webhooks` (durable queue): stored provider webhooks waiting to be handled.

A delivery that exhausts its retries is marked `failed` in the database, where the merchant
and admins see it and redeliver it; there is no dead-letter queue to keep in step with that.

With `RABBITMQ_QUORUM_QUEUES=true` the queues are quorum queues (replicated). RabbitMQ refuses
to change a queue's type in place: switching an existing deployment means draining and deleting
the old queues first (see docs/operations.md).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection

from nespay.config import Settings

log = structlog.get_logger("nespay.broker")

EVENTS_EXCHANGE = "nespay.events"
CALLBACKS_QUEUE = "nespay.callbacks"
RETRY_EXCHANGE = "nespay.callbacks.retry"
PROVIDER_WEBHOOKS_QUEUE = "nespay.provider-webhooks"
# The TTL retry queues: a retry of d seconds waits in the smallest queue ≥ d, with d as the
# message's own expiration (CALLBACK_RETRY_SCHEDULE_S; docs/callbacks.md).
RETRY_DELAYS_S = (5, 30, 120, 600, 1800, 3600, 10800, 21600)


def retry_queue_name(delay_s: int) -> str:
    return f"{RETRY_EXCHANGE}.{delay_s}s"


class Broker:
    """A robust connection (reconnects and re-declares by itself) and a publishing channel."""

    def __init__(self, settings: Settings) -> None:
        assert settings.rabbitmq_url is not None
        self.settings = settings
        self.connection: AbstractRobustConnection | None = None
        self.channel: AbstractRobustChannel | None = None
        self._retry_task: asyncio.Task[None] | None = None

    async def start(self, *, timeout_s: float = 10.0) -> None:
        """Connect and declare; if RabbitMQ is down, keep trying in the background.

        The process still starts (health reports RabbitMQ down) so that an outage of the
        broker delays work and never takes the API with it.
        """
        try:
            await self._connect(timeout_s)
        except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as error:
            log.warning("broker_unavailable", error=type(error).__name__)
            self._retry_task = asyncio.create_task(self._connect_until_up(timeout_s))

    async def _connect(self, timeout_s: float) -> None:
        url = self.settings.rabbitmq_url.get_secret_value()  # type: ignore[union-attr]
        connection = await asyncio.wait_for(
            aio_pika.connect_robust(
                url, client_properties={"connection_name": self.settings.service_name}
            ),
            timeout_s,
        )
        channel = await connection.channel(publisher_confirms=True)
        await declare_topology(channel, quorum=self.settings.rabbitmq_quorum_queues)
        self.connection, self.channel = connection, channel  # type: ignore[assignment]
        log.info("broker_connected")

    async def _connect_until_up(self, timeout_s: float) -> None:
        delay = 1.0
        while self.connection is None:
            await asyncio.sleep(delay)
            try:
                await self._connect(timeout_s)
            except (TimeoutError, OSError, aio_pika.exceptions.AMQPError):
                delay = min(delay * 2, 30.0)

    async def health(self) -> tuple[str, str | None]:
        if self.connection is None:
            return "down", "RabbitMQ is unreachable; retrying in the background"
        if self.connection.is_closed:
            return "down", "RabbitMQ connection is closed; reconnecting"
        if self.channel is None or self.channel.is_closed:
            return "down", "RabbitMQ channel is closed; reconnecting"
        return "up", None

    async def close(self) -> None:
        if self._retry_task is not None:
            self._retry_task.cancel()
        if self.connection is not None:
            await self.connection.close()


def _queue_args(quorum: bool, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    args: dict[str, Any] = {"x-queue-type": "quorum"} if quorum else {}
    args.update(extra or {})
    return args


async def declare_topology(channel: aio_pika.abc.AbstractChannel, *, quorum: bool) -> None:
    events = await channel.declare_exchange(
        EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
    )
    retry = await channel.declare_exchange(
        RETRY_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True
    )
    callbacks = await channel.declare_queue(
        CALLBACKS_QUEUE, durable=True, arguments=_queue_args(quorum)
    )
    await callbacks.bind(events, routing_key="#")
    for delay in RETRY_DELAYS_S:
        queue = await channel.declare_queue(
            retry_queue_name(delay),
            durable=True,
            arguments=_queue_args(
                quorum,
                {
                    "x-message-ttl": delay * 1000,
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": CALLBACKS_QUEUE,
                },
            ),
        )
        await queue.bind(retry, routing_key=str(delay))
    await channel.declare_queue(
        PROVIDER_WEBHOOKS_QUEUE, durable=True, arguments=_queue_args(quorum)
    )
