"""The outbox relay: committed event rows → delivery rows → RabbitMQ.

One relay at a time across jobs replicas (a session-level advisory lock on the relay's own
connection, which it also does all its work on: a relay that loses its connection loses the
lock and can no longer write). For each batch of unpublished events, in commit order:

1. dispatch: make the delivery rows of the events (idempotent). Doing this here, one relay,
   in commit order, before anything is published, is what keeps an invoice's callbacks in
   order however many consumers run (a delivery waits for earlier pending ones of its
   subject).
2. publish each event to `nespay.events` with publisher confirms (without a broker: hand
   the pending deliveries to the worker directly);
3. mark them published.

A crash between steps repeats the later ones (dispatch is idempotent, a republished event
finds its deliveries done or leased). The relay polls (`CALLBACK_RELAY_POLL_MS`, 50 ms; back to
back while batches come full): one index-only probe of the unpublished events' partial index.
Not LISTEN/NOTIFY: a NOTIFY takes a cluster-wide lock at commit, which would serialise the
commits of every transaction that writes an event (invoice creation, the scanner, expiry).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

import aio_pika
import asyncpg
import structlog
from pamqp.commands import Basic

from nespay.broker import EVENTS_EXCHANGE
from nespay.callbacks import store
from nespay.callbacks.messages import EVENT, KIND, envelope
from nespay.db import connect
from nespay.metrics import CALLBACK_EVENTS_RELAYED
from nespay.runtime import Runtime

log = structlog.get_logger("nespay.callbacks")

BATCH = 500

Handoff = Callable[[Sequence[str]], Awaitable[None]]


class OutboxRelay:
    def __init__(self, runtime: Runtime, *, handoff: Handoff | None = None) -> None:
        """Without a broker, `handoff(delivery_ids)` receives the pending deliveries."""
        self.runtime = runtime
        self.handoff = handoff
        self._conn: asyncpg.Connection | None = None
        self.leader = False

    async def run_forever(self) -> None:
        while True:
            try:
                await self._lead()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - the relay must outlive any outage
                log.warning("relay_interrupted", error=f"{type(error).__name__}: {error}"[:300])
            finally:
                self.leader = False
                await self._close()
            await asyncio.sleep(2.0)

    async def _lead(self) -> None:
        # Its own connection (DATABASE_URL's schema as search_path, like every other): the
        # advisory lock that makes this replica the leader lives and dies with it.
        self._conn = conn = await connect(self.runtime.settings, "nespay-relay")
        # Another replica relays meanwhile; this one takes over if that one goes away.
        while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", store.RELAY_LOCK_KEY):  # noqa: ASYNC110
            await asyncio.sleep(2.0)
        self.leader = True
        log.info("relay_leading")
        poll_s = self.runtime.settings.callback_relay_poll_ms / 1000
        while True:
            while await self.relay_once() == BATCH:
                pass
            await asyncio.sleep(poll_s)

    async def relay_once(self) -> int:
        """One batch; returns how many events it handled."""
        conn = self._conn
        assert conn is not None
        rows = await conn.fetch(store.UNPUBLISHED, BATCH)
        if not rows:
            return 0
        ids = [row["id"] for row in rows]
        await store.dispatch(conn, ids)
        if self.runtime.broker is not None:
            await self._publish(rows)
        elif self.handoff is not None:
            pending = [r["id"] for r in await conn.fetch(store.PENDING_OF_EVENTS, ids)]
            await self.handoff(pending)
        await conn.execute(store.MARK_PUBLISHED, ids)
        CALLBACK_EVENTS_RELAYED.inc(len(rows))
        return len(rows)

    async def _publish(self, rows: Sequence[asyncpg.Record]) -> None:
        broker = self.runtime.broker
        channel = broker.channel if broker is not None else None
        if channel is None or channel.is_closed:
            raise ConnectionError("RabbitMQ is unavailable; events stay unpublished")
        # Straight on aiormq's channel with wait=False: the frames are queued in order under
        # the channel's lock without waiting for each to be written (aio-pika's publish waits,
        # which sends a batch one message per event-loop turn); the publisher confirms are
        # still awaited, all together, before the events are marked published.
        underlay = await channel.get_underlay_channel()
        results = await asyncio.gather(
            *(
                underlay.basic_publish(
                    envelope(row["id"], row["type"], row["created_at"], row["data"]),
                    exchange=EVENTS_EXCHANGE,
                    routing_key=row["type"],
                    properties=aio_pika.Message(
                        b"",
                        message_id=row["id"],
                        content_type="application/json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        headers={KIND: EVENT, "merchant_id": row["merchant_id"]},
                    ).properties,
                    wait=False,
                )
                for row in rows
            )
        )
        if not all(isinstance(result, Basic.Ack) for result in results):
            raise ConnectionError("RabbitMQ did not confirm every event; they stay unpublished")

    async def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._conn.close(), 5.0)
            self._conn = None
