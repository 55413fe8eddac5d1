"""Runs a scanner for every EVM network that needs one in the jobs process — enabled, or
switched off while invoices may still be paid or payments still confirm on it — starting and
stopping them as that changes (no restart needed). Every jobs replica runs a supervisor; the
leases decide which replica scans which network."""

from __future__ import annotations

import asyncio

import httpx
import structlog

from nespay.chains import cursors
from nespay.chains.scanner import NetworkScanner
from nespay.jobs.runner import replica_id
from nespay.runtime import Runtime

log = structlog.get_logger("nespay.scanner")
RECONCILE_S = 2.0


class ScannerSupervisor:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.owner = replica_id()
        self.http = httpx.AsyncClient(timeout=10.0, follow_redirects=False)
        self.running: dict[str, tuple[asyncio.Event, asyncio.Task[None]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="scanners")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for network in list(self.running):
            await self._stop(network)
        await self.http.aclose()

    async def _loop(self) -> None:
        while True:
            try:
                await self.reconcile()
            except Exception as error:  # noqa: BLE001 - keep supervising through DB blips
                log.warning("supervisor_failed", error=str(error)[:200])
            await asyncio.sleep(RECONCILE_S)

    async def reconcile(self) -> None:
        async with self.runtime.db.engine.connect() as conn:
            wanted = set(await cursors.networks_to_scan(conn))
        for network in wanted - set(self.running):
            stop = asyncio.Event()
            scanner = NetworkScanner(self.runtime, network, self.owner, self.http)
            task = asyncio.create_task(scanner.run(stop), name=f"scan:{network}")
            self.running[network] = (stop, task)
            log.info("scanner_started", network=network)
        for network in set(self.running) - wanted:
            await self._stop(network)
        for network, (_, task) in list(self.running.items()):
            if task.done():  # crashed: let the next reconcile start it again
                self.running.pop(network)
                if task.exception() is not None:
                    log.error("scanner_crashed", network=network, exc_info=task.exception())

    async def _stop(self, network: str) -> None:
        stop, task = self.running.pop(network)
        stop.set()
        try:
            await asyncio.wait_for(task, 10)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()
        log.info("scanner_stopped", network=network)
