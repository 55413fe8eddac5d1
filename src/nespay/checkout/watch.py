"""Live status for open payer pages: one poller per process, however many pages are open.

Each page's event stream subscribes to its invoice. While anything is subscribed, one task
reads the state of every watched invoice (`status`, `paid_ppm`) in one statement each
`interval_s`, and tells the subscribers of those that changed. The database is the truth
(the scanner writes it, in the jobs process): nothing is lost when this process restarts,
a page's stream reconnects and reads the state afresh.

Cost: one indexed statement a second per api replica, whatever the number of pages; a
subscriber costs a queue of one element."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import structlog

from nespay.db import Database

log = structlog.get_logger("nespay.checkout")

_STATES = "SELECT id, status, paid_ppm FROM invoices WHERE id = ANY($1::text[])"

State = tuple[str, int]  # (status, paid_ppm)


@dataclass
class StatusWatcher:
    db: Database
    interval_s: float = 1.0
    _subscribers: dict[str, set[asyncio.Queue[State]]] = field(default_factory=dict)
    _last: dict[str, State] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def subscribe(
        self, invoice_id: str, current: State
    ) -> AsyncIterator[asyncio.Queue[State]]:
        """A queue that receives the invoice's state whenever it differs from `current`
        (what the page was built from); only the newest state waits in it."""
        queue: asyncio.Queue[State] = asyncio.Queue(maxsize=1)
        self._subscribers.setdefault(invoice_id, set()).add(queue)
        self._last.setdefault(invoice_id, current)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="checkout-status-watcher")
        try:
            yield queue
        finally:
            waiting = self._subscribers.get(invoice_id)
            if waiting is not None:
                waiting.discard(queue)
                if not waiting:
                    del self._subscribers[invoice_id]
                    self._last.pop(invoice_id, None)

    async def _run(self) -> None:
        while self._subscribers:
            try:
                await self._poll()
            except Exception as exc:  # a database blip: the pages keep waiting, we retry
                log.warning("checkout_watch_failed", error=type(exc).__name__)
            await asyncio.sleep(self.interval_s)

    async def _poll(self) -> None:
        ids = list(self._subscribers)
        async with self.db.driver() as connection:
            rows = await connection.fetch(_STATES, ids)
        for row in rows:
            state: State = (row["status"], int(row["paid_ppm"]))
            if self._last.get(row["id"]) == state:
                continue
            self._last[row["id"]] = state
            for queue in self._subscribers.get(row["id"], ()):
                if queue.full():
                    queue.get_nowait()
                queue.put_nowait(state)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
