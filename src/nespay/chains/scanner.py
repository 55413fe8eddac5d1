"""The scanner: one per enabled network, at most one replica at a time, whatever the chain
family: the family's `ChainAdapter` (`nespay.chains.adapter`) reads the chain, the scanner
does the rest.

A step reads the blocks after the cursor (bounded batch; after downtime it catches up batch by
batch and never jumps to the head) and the transfers of the network's tokens (and native
coin) in them (EVM: one JSON-RPC batch; Tron: the HTTP API's block and transaction-info
calls), checks the blocks chain onto the cursor's hash, matches transfers to deposit
addresses, and commits in ONE transaction: payments,
confirmations, invoice states and their events, block hashes, the cursor — guarded by the
lease's fencing token, so a scanner that lost its lease writes nothing. A crash before the
commit leaves the cursor where it was: the blocks are read again, and payments already
counted are recognised by (network, tx hash, log index). An answer that is garbled (a log
that is not shaped like one) fails the step, which is retried: it is never read past.

A parent-hash mismatch means a reorg: the scanner walks back through its stored hashes to the
common ancestor, and in one transaction orphans the payments above it, rescans the new
canonical blocks (re-mined payments count again) and re-derives the invoices.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import structlog

from nespay import metrics
from nespay.chains import cursors
from nespay.chains.adapter import (
    BlockRef,
    ChainAdapter,
    ChainInconsistent,
    Head,
    Watch,
    adapter_for,
)
from nespay.chains.cursors import Cursor, LeaseLost
from nespay.chains.rpcclient import RpcError
from nespay.kit.urls import mask_urls_in
from nespay.payments import service as payments
from nespay.payments.service import Transfer
from nespay.runtime import Runtime
from nespay.security.encryption import Keyring, keyring_from_settings

log = structlog.get_logger("nespay.scanner")
ENDPOINTS_REFRESH_S = 5.0
FAILURE_LOG_EVERY_S = 60.0  # a scanner failing the same way says so again this often
MAX_RETRY_S = 30.0
ANCESTOR_WALK = 32  # blocks asked per round trip while looking for a reorg's common ancestor

__all__ = ["ChainInconsistent", "NetworkScanner", "Watch"]


class NetworkScanner:
    def __init__(self, runtime: Runtime, network: str, owner: str, http: httpx.AsyncClient) -> None:
        self.runtime = runtime
        self.network = network
        self.owner = owner
        self.http = http
        self.adapter: ChainAdapter | None = None  # made for the network's family when known
        self.settings = runtime.settings
        self.cursor: Cursor | None = None
        self.batch = runtime.settings.scanner_batch_blocks
        self._endpoints_at = 0.0
        self._failure: str | None = None  # the error steps are failing with, if they are
        self._failure_said_at = 0.0

    @property
    def rpc(self) -> object:
        """The adapter's failover client (its endpoints, their health)."""
        return self._adapter().rpc

    def _adapter(self) -> ChainAdapter:
        if self.adapter is None:
            raise RpcError(f"network {self.network} is not known to the scanner yet")
        return self.adapter

    # --- lease ---------------------------------------------------------------------------

    async def acquire(self) -> bool:
        """Take the network's lease. The node must serve the chain this network was first
        scanned on (same block 0) and the network's chain id; a network scanned for the first
        time records its chain."""
        config = await self._config()
        await self._refresh_endpoints()
        async with self.runtime.db.engine.connect() as conn:
            exists, genesis = await cursors.stored_genesis(conn, self.network)
        adapter = self._adapter()
        genesis = await adapter.identify(config.chain_id, genesis)
        start = (0, "", None) if exists else await self._starting_point(config)
        async with self.runtime.db.engine.begin() as conn:
            self.cursor = await cursors.acquire(
                conn, self.network, self.owner, self.settings.scanner_lease_s, start, genesis
            )
        if self.cursor is not None:
            log.info("scanner_leased", network=self.network, block=self.cursor.number)
        return self.cursor is not None

    async def _starting_point(self, config: Watch) -> tuple[int, str, int]:
        """A network scanned for the first time starts an hour of blocks behind the head."""
        adapter = self._adapter()
        head = (await adapter.head(0)).number
        number = max(0, head - 3_600_000 // max(1, config.block_time_ms))
        [block] = await adapter.blocks([number])
        if block is None:
            raise ChainInconsistent(f"the node has no block {number}")
        return number, block.hash, block.timestamp

    async def release(self) -> None:
        if self.cursor is not None:
            async with self.runtime.db.engine.begin() as conn:
                await cursors.release(conn, self.cursor)
            self.cursor = None
        metrics.scanner_stopped(self.network)

    # --- one step ------------------------------------------------------------------------

    async def step(self) -> int:
        """Scan the next batch; returns the number of blocks committed (0 when at the head)."""
        assert self.cursor is not None
        config = await self._config()
        await self._refresh_endpoints()
        adapter = self._adapter()
        head = await adapter.head(self.cursor.number)
        metrics.scanner_lag(self.network, max(0, head.number - self.cursor.number))
        if head.number < self.cursor.number or (
            head.cursor_known and head.cursor_hash != self.cursor.hash
        ):
            return await self._reorg(config, head)  # our tip was replaced (maybe at one height)
        if head.number <= self.cursor.number:
            await self._keep_lease(head.number)
            return 0
        last = min(head.number, self.cursor.number + self.batch)
        blocks, transfers = await adapter.transfers(self.cursor.number + 1, last, config)
        if blocks[0].parent_hash != self.cursor.hash:
            return await self._reorg(config, head)
        return await self._commit(config, blocks, transfers, head, ancestor=None)

    async def _commit(
        self,
        config: Watch,
        blocks: list[BlockRef],
        transfers: list[Transfer],
        head: Head,
        *,
        ancestor: int | None,
    ) -> int:
        assert self.cursor is not None
        tip = blocks[-1]
        confirming = self._adapter().confirming_tip(head, tip.number, config.confirmations)
        # One transaction on a driver (asyncpg) connection: a batch costs a dozen statements
        # whatever its size, each without SQLAlchemy's per-statement overhead.
        async with self.runtime.db.driver() as db, db.transaction():
            await cursors.fence(
                db,
                self.cursor,
                self.settings.scanner_lease_s,
                number=tip.number,
                hash=tip.hash,
                head=head.number,
                timestamp=tip.timestamp,
            )
            if ancestor is not None:
                await cursors.forget_blocks_after(db, self.network, ancestor)
            changed = await payments.apply_batch(
                db,
                self.network,
                transfers,
                tip=confirming,
                needed=config.confirmations,
                ancestor=ancestor,
                fee_bps=self.settings.platform_fee_bps,
                chain_family=self._adapter().family,
            )
            await cursors.store_blocks(db, self.network, blocks)
        self.cursor.number, self.cursor.hash = tip.number, tip.hash
        self.cursor.timestamp = tip.timestamp
        metrics.scanner_lag(self.network, max(0, head.number - tip.number))
        if transfers or changed:
            log.info(
                "scanned",
                network=self.network,
                tip=tip.number,
                transfers=len(transfers),
                invoices=changed,
            )
        return len(blocks)

    async def _reorg(self, config: Watch, head: Head) -> int:
        assert self.cursor is not None
        ancestor = await self._common_ancestor()
        log.warning("reorg", network=self.network, cursor=self.cursor.number, ancestor=ancestor)
        last = min(head.number, max(self.cursor.number, ancestor + self.batch))
        if last <= ancestor:  # the node's chain ends at the ancestor: nothing to read yet
            raise ChainInconsistent(f"the node's head {head.number} is below our cursor; waiting")
        blocks, transfers = await self._adapter().transfers(ancestor + 1, last, config)
        async with self.runtime.db.engine.connect() as conn:
            stored = await cursors.stored_hashes(conn, self.network, [ancestor])
        if blocks[0].parent_hash != stored.get(ancestor):
            raise ChainInconsistent("the chain moved again while resolving a reorg")
        return await self._commit(config, blocks, transfers, head, ancestor=ancestor)

    async def _common_ancestor(self) -> int:
        """Highest stored block whose hash the node still has at that height."""
        assert self.cursor is not None
        top = self.cursor.number
        while top > 0:
            numbers = list(range(top, max(-1, top - ANCESTOR_WALK), -1))
            async with self.runtime.db.engine.connect() as conn:
                stored = await cursors.stored_hashes(conn, self.network, numbers)
            if not stored:
                raise ChainInconsistent(f"reorg deeper than the {cursors.KEEP_BLOCKS} kept blocks")
            canonical = await self._adapter().blocks(numbers)
            for number, block in zip(numbers, canonical, strict=True):
                if block is not None and stored.get(number) == block.hash:
                    return number
            top = numbers[-1] - 1
        return 0

    async def _keep_lease(self, head: int) -> None:
        assert self.cursor is not None
        async with self.runtime.db.driver() as db:
            await cursors.fence(db, self.cursor, self.settings.scanner_lease_s, head=head)

    # --- configuration -------------------------------------------------------------------

    async def _config(self) -> Watch:
        """The network and what to read on it now: the offered currencies, and those
        switched off that are still watched at the cursor's block time. The first call
        picks the network's chain family's adapter."""
        catalog = await self.runtime.catalog.get()
        network = catalog.network(self.network)
        if network is None:
            raise RpcError(f"network {self.network} is not a scanned network any more")
        if self.adapter is None or self.adapter.family != network.chain_family:
            self.adapter = adapter_for(network.chain_family, self.http)
            self._endpoints_at = 0.0
        chain_time = None if self.cursor is None else self.cursor.timestamp
        entries = catalog.scanned(self.network, chain_time)
        return Watch(
            code=self.network,
            chain_id=network.chain_id,
            confirmations=network.confirmations,
            block_time_ms=network.block_time_ms,
            tokens={e.contract: e for e in entries if e.contract},
            native=next((e for e in entries if e.contract is None), None),
        )

    async def _refresh_endpoints(self) -> None:
        if time.monotonic() - self._endpoints_at < ENDPOINTS_REFRESH_S:
            return
        async with self.runtime.db.engine.connect() as conn:
            endpoints = await cursors.endpoints(conn, self.network)
        self._adapter().set_endpoints(cursors.unsealed(endpoints, self._keyring()))
        self._endpoints_at = time.monotonic()

    def _keyring(self) -> Keyring:
        return keyring_from_settings(self.settings)  # endpoints' API keys are sealed

    # --- the loop ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Hold the lease and scan until stopped; errors are retried with a growing pause,
        logged when they start or change (and once a minute while they last), and kept in
        `scanner_status` for `GET /jobs` and the jobs health check until a step succeeds."""
        poll = self.settings.scanner_poll_interval_ms / 1000
        failures = 0
        while not stop.is_set():
            try:
                if self.cursor is None and not await self.acquire():
                    await _sleep(stop, self.settings.scanner_lease_s / 2)
                    continue
                scanned = await self.step()
                if failures:
                    await self._recovered()
                    failures = 0
                # A failed batch may be too big for the provider ("block range too large"):
                # halve it after a failure, grow it back while steps succeed.
                self.batch = min(self.settings.scanner_batch_blocks, self.batch * 2)
                if scanned == 0:
                    await _sleep(stop, poll)
            except LeaseLost:
                log.warning("scanner_lease_lost", network=self.network)
                self.cursor = None
            except (
                RpcError,
                ChainInconsistent,
                httpx.HTTPError,
                KeyError,
                TypeError,
                ValueError,
            ) as error:
                failures += 1
                metrics.SCANNER_FAILURES.labels(self.network).inc()
                await self._failed(str(error)[:500] or type(error).__name__)
                self.batch = max(1, self.batch // 2)
                await _sleep(stop, min(MAX_RETRY_S, poll * 4 * 2 ** min(failures - 1, 8)))
        await self.release()

    async def _failed(self, message: str) -> None:
        message = mask_urls_in(message)  # a node's error may quote the URL, key and all
        now = time.monotonic()
        if message == self._failure and now - self._failure_said_at < FAILURE_LOG_EVERY_S:
            return
        log.warning("scan_failed", network=self.network, error=message)
        self._failure, self._failure_said_at = message, now
        with contextlib.suppress(Exception):  # the database may be what is failing
            async with self.runtime.db.driver() as db:
                await cursors.record_failure(db, self.network, message)

    async def _recovered(self) -> None:
        log.info("scan_recovered", network=self.network, error=self._failure)
        self._failure = None
        with contextlib.suppress(Exception):
            async with self.runtime.db.driver() as db:
                await cursors.clear_failure(db, self.network)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
