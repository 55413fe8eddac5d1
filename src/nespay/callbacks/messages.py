"""The messages of the callback pipeline on RabbitMQ.

- `event`: the relay publishes each committed event row to `nespay.events` (routing key: the
  event type, message id: the event id, body: the public event JSON). The callback consumer
  turns it into delivery rows, one per subscribed endpoint.
- `deliveries`: a wake-up naming delivery rows that are due (after a fan-out, a retry delay
  in a TTL queue, a redelivery, a re-enabled endpoint). The rows are the truth; a message
  that arrives late, twice or never only changes when the work happens, never whether it
  happens (the relay's sweep republishes due rows whose wake-up was lost).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import aio_pika
import orjson
import structlog

from nespay.broker import CALLBACKS_QUEUE, RETRY_DELAYS_S, RETRY_EXCHANGE

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel

    from nespay.runtime import Runtime

log = structlog.get_logger("nespay.callbacks")

KIND = "nespay-kind"
EVENT = "event"
DELIVERIES = "deliveries"


def envelope(event_id: str, type: str, created_at: datetime, data: str) -> bytes:
    """The JSON an event travels as, to RabbitMQ and to merchants: `{"id","type","created_at",
    "data"}`. `data` is the event row's JSONB text, which PostgreSQL renders deterministically,
    so every attempt of a callback carries the same bytes."""
    return b'{"id":%s,"type":%s,"created_at":%s,"data":%s}' % (
        orjson.dumps(event_id),
        orjson.dumps(type),
        orjson.dumps(created_at, option=orjson.OPT_UTC_Z),
        data.encode(),
    )


def retry_step(delay_s: float) -> int:
    """The TTL queue that holds a retry of `delay_s` seconds: the smallest step ≥ it, whose
    TTL caps the wait; the message's own expiration carries the jittered delay."""
    for step in RETRY_DELAYS_S:
        if delay_s <= step:
            return step
    return RETRY_DELAYS_S[-1]


def backoff_s(schedule: Sequence[int], attempts: int) -> float:
    """Seconds before attempt `attempts + 1`: `CALLBACK_RETRY_SCHEDULE_S` (by default 5 s,
    30 s, 2 min, 10 min, 30 min, 1 h, 3 h, then every 6 h), each shortened by up to 20 % at
    random so that a merchant coming back is not hit by every retry in the same second."""
    step = schedule[min(max(attempts, 1), len(schedule)) - 1]
    return step * random.uniform(0.8, 1.0)  # noqa: S311 - jitter, not a secret


async def publish_deliveries(
    channel: AbstractChannel, delivery_ids: Sequence[str], *, delay_s: float | None = None
) -> None:
    """Publish one wake-up for `delivery_ids`, now or after `delay_s` (through a TTL queue)."""
    if not delivery_ids:
        return
    message = aio_pika.Message(
        json.dumps({"deliveries": list(delivery_ids)}).encode(),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers={KIND: DELIVERIES},
        expiration=delay_s if delay_s else None,
    )
    if delay_s:
        retry = await channel.get_exchange(RETRY_EXCHANGE, ensure=False)
        await retry.publish(message, routing_key=str(retry_step(delay_s)))
    else:
        await channel.default_exchange.publish(message, routing_key=CALLBACKS_QUEUE)


async def wake(
    runtime: Runtime, delivery_ids: Sequence[str], *, delay_s: float | None = None
) -> None:
    """Best effort, after the commit that made `delivery_ids` due (or, with `delay_s`, that
    scheduled their retry): without a broker (or with it down) the jobs process finds them by
    polling / sweeping the delivery table."""
    broker = runtime.broker
    if not delivery_ids or broker is None or broker.channel is None:
        return
    try:
        await publish_deliveries(broker.channel, delivery_ids, delay_s=delay_s)
    except Exception as error:  # noqa: BLE001 - recoverable by the sweep, never fatal here
        log.warning("callback_wakeup_not_published", error=type(error).__name__)
