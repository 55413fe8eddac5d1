"""The EVM scanner: one per enabled network, at most one replica at a time.

A step reads the blocks after the cursor (bounded batch; after downtime it catches up batch by
batch and never jumps to the head) and their ERC-20 `Transfer` logs of the network's tokens in
one JSON-RPC batch, checks the blocks chain onto the cursor's hash, matches transfers (and
native-coin transactions) to deposit addresses, and commits in ONE transaction: payments,
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
import re
import time
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

from nespay import metrics
from nespay.chains import cursors
from nespay.chains.catalog import CatalogCurrency
from nespay.chains.cursors import Cursor, LeaseLost
from nespay.chains.evm import TRANSFER_TOPIC, bloom_mask, bloom_may_contain, decode_transfer_log
from nespay.chains.rpcclient import ChainIdentity, RpcClient, RpcError
from nespay.kit.urls import mask_urls_in
from nespay.payments import service as payments
from nespay.payments.service import Transfer
from nespay.runtime import Runtime

log = structlog.get_logger("nespay.scanner")
ENDPOINTS_REFRESH_S = 5.0
FAILURE_LOG_EVERY_S = 60.0  # a scanner failing the same way says so again this often
MAX_RETRY_S = 30.0
_TRANSFER_MASK = bloom_mask(TRANSFER_TOPIC)


class ChainInconsistent(Exception):
    """The node's answers do not fit together (a reorg under our feet); retry the step."""


@dataclass
class NetworkConfig:
    code: str
    chain_id: int | None
    confirmations: int
    block_time_ms: int
    tokens: dict[str, CatalogCurrency]  # contract (lowercase) → currency
    native: CatalogCurrency | None

    def masks(self) -> dict[str, int]:
        """Each token's `logsBloom` bits."""
        return {contract: bloom_mask(contract) for contract in self.tokens}


class NetworkScanner:
    def __init__(self, runtime: Runtime, network: str, owner: str, http: httpx.AsyncClient) -> None:
        self.runtime = runtime
        self.network = network
        self.owner = owner
        self.rpc = RpcClient(http, [])
        self.settings = runtime.settings
        self.cursor: Cursor | None = None
        self.batch = runtime.settings.scanner_batch_blocks
        self._endpoints_at = 0.0
        self._failure: str | None = None  # the error steps are failing with, if they are
        self._failure_said_at = 0.0

    # --- lease ---------------------------------------------------------------------------

    async def acquire(self) -> bool:
        """Take the network's lease. The node must serve the chain this network was first
        scanned on (same block 0) and the network's chain id; a network scanned for the first
        time records its chain."""
        await self._refresh_endpoints()
        config = await self._config()
        async with self.runtime.db.engine.connect() as conn:
            exists, genesis = await cursors.stored_genesis(conn, self.network)
        # The node is asked outside any transaction: no pooled connection waits on the network.
        self.rpc.expect(ChainIdentity(config.chain_id, genesis))
        found = (await self.rpc.identify())[1]  # checked against the network's as it is asked
        if genesis is None:
            genesis = found
            self.rpc.expect(ChainIdentity(config.chain_id, genesis))
        start = (0, "", None) if exists else await self._starting_point(config)
        async with self.runtime.db.engine.begin() as conn:
            self.cursor = await cursors.acquire(
                conn, self.network, self.owner, self.settings.scanner_lease_s, start, genesis
            )
        if self.cursor is not None:
            log.info("scanner_leased", network=self.network, block=self.cursor.number)
        return self.cursor is not None

    async def _starting_point(self, config: NetworkConfig) -> tuple[int, str, int]:
        """A network scanned for the first time starts an hour of blocks behind the head."""
        head = int(await self.rpc.call("eth_blockNumber", []), 16)
        number = max(0, head - 3_600_000 // max(1, config.block_time_ms))
        block = await self.rpc.call("eth_getBlockByNumber", [hex(number), False])
        return number, block["hash"], int(block["timestamp"], 16)

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
        await self._refresh_endpoints()
        config = await self._config()
        head_hex, ours = await self.rpc.batch(
            [("eth_blockNumber", []), ("eth_getBlockByNumber", [hex(self.cursor.number), False])]
        )
        head = int(head_hex, 16)
        metrics.scanner_lag(self.network, max(0, head - self.cursor.number))
        if ours is None or ours["hash"] != self.cursor.hash:
            return await self._reorg(config, head)  # our tip was replaced (maybe at one height)
        if head <= self.cursor.number:
            await self._keep_lease(head)
            return 0
        last = min(head, self.cursor.number + self.batch)
        blocks, logs = await self._fetch(self.cursor.number + 1, last, config)
        if blocks[0]["parentHash"] != self.cursor.hash:
            return await self._reorg(config, head)
        return await self._commit(config, blocks, logs, head, ancestor=None)

    async def _fetch(
        self, first: int, last: int, config: NetworkConfig
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        full = config.native is not None
        calls: list[tuple[str, list[Any]]] = [
            ("eth_getBlockByNumber", [hex(n), full]) for n in range(first, last + 1)
        ]
        if config.tokens:
            calls.append(
                (
                    "eth_getLogs",
                    [
                        {
                            "fromBlock": hex(first),
                            "toBlock": hex(last),
                            "address": sorted(config.tokens),
                            "topics": [TRANSFER_TOPIC],
                        }
                    ],
                )
            )
        results = await self.rpc.batch(calls)
        blocks = results[: last - first + 1]
        logs = results[last - first + 1] if config.tokens else []
        if not isinstance(logs, list) or not all(isinstance(entry, dict) for entry in logs):
            raise ChainInconsistent("the logs answer is not a list of log objects")
        _check_linked(blocks, first)
        _check_from(blocks, logs)
        return blocks, await self._cross_check(config, blocks, logs)

    async def _cross_check(
        self, config: NetworkConfig, blocks: list[dict[str, Any]], logs: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """A node behind a load balancer may answer `eth_getLogs` from a replica that lags:
        the blocks are there, their logs silently missing. Each block's `logsBloom` says
        whether a watched token may have emitted a `Transfer` in it; where it may and none
        came, the block's logs are asked again by block hash (EIP-234: a node without that
        block answers with an error, not an empty list), from another endpoint if there is
        one. Logs found only then are used, and the endpoint that left them out is backed
        off. A bloom's false positive costs one call and changes nothing."""
        if not config.tokens:
            return logs
        seen = {(entry["blockHash"], entry["address"].lower()) for entry in logs}
        masks = config.masks()
        doubtful = []
        for block in blocks:
            bloom = int(block["logsBloom"], 16)
            if bloom_may_contain(bloom, _TRANSFER_MASK) and any(
                bloom_may_contain(bloom, mask) and (block["hash"], token) not in seen
                for token, mask in masks.items()
            ):
                doubtful.append(block["hash"])
        if not doubtful:
            return logs
        answered_by = self.rpc.last_endpoint
        filters = {"address": sorted(config.tokens), "topics": [TRANSFER_TOPIC]}
        answers = await self.rpc.batch(
            [("eth_getLogs", [{"blockHash": h, **filters}]) for h in doubtful], avoid=answered_by
        )
        if not all(isinstance(a, list) and all(isinstance(e, dict) for e in a) for a in answers):
            raise ChainInconsistent("the logs answer is not a list of log objects")
        known = {(entry.get("transactionHash"), entry.get("logIndex")) for entry in logs}
        missing = [
            entry
            for answer in answers
            for entry in answer
            if (entry.get("transactionHash"), entry.get("logIndex")) not in known
        ]
        if not missing:
            return logs
        _check_from(blocks, missing)
        log.warning(
            "rpc_logs_missing",
            network=self.network,
            endpoint_id=answered_by,
            blocks=len(doubtful),
            logs=len(missing),
        )
        if answered_by is not None and answered_by != self.rpc.last_endpoint:
            self.rpc.demote(answered_by)
        return logs + missing

    async def _commit(
        self,
        config: NetworkConfig,
        blocks: list[dict[str, Any]],
        logs: list[dict[str, Any]],
        head: int,
        *,
        ancestor: int | None,
    ) -> int:
        assert self.cursor is not None
        transfers = _transfers(config, blocks, logs)
        tip = int(blocks[-1]["number"], 16)
        tip_time = int(blocks[-1]["timestamp"], 16)
        # One transaction on a driver (asyncpg) connection: a batch costs a dozen statements
        # whatever its size, each without SQLAlchemy's per-statement overhead.
        async with self.runtime.db.driver() as db, db.transaction():
            await cursors.fence(
                db,
                self.cursor,
                self.settings.scanner_lease_s,
                number=tip,
                hash=blocks[-1]["hash"],
                head=head,
                timestamp=tip_time,
            )
            if ancestor is not None:
                await cursors.forget_blocks_after(db, self.network, ancestor)
            changed = await payments.apply_batch(
                db,
                self.network,
                transfers,
                tip=tip,
                needed=config.confirmations,
                ancestor=ancestor,
                fee_bps=self.settings.platform_fee_bps,
            )
            await cursors.store_blocks(db, self.network, [_block_row(b) for b in blocks])
        self.cursor.number, self.cursor.hash = tip, blocks[-1]["hash"]
        self.cursor.timestamp = tip_time
        metrics.scanner_lag(self.network, max(0, head - tip))
        if transfers or changed:
            log.info(
                "scanned", network=self.network, tip=tip, transfers=len(transfers), invoices=changed
            )
        return len(blocks)

    async def _reorg(self, config: NetworkConfig, head: int) -> int:
        assert self.cursor is not None
        ancestor = await self._common_ancestor()
        log.warning("reorg", network=self.network, cursor=self.cursor.number, ancestor=ancestor)
        last = min(head, max(self.cursor.number, ancestor + self.batch))
        if last <= ancestor:  # the node's chain ends at the ancestor: nothing to read yet
            raise ChainInconsistent(f"the node's head {head} is below our cursor; waiting")
        blocks, logs = await self._fetch(ancestor + 1, last, config)
        async with self.runtime.db.engine.connect() as conn:
            stored = await cursors.stored_hashes(conn, self.network, [ancestor])
        if blocks[0]["parentHash"] != stored.get(ancestor):
            raise ChainInconsistent("the chain moved again while resolving a reorg")
        return await self._commit(config, blocks, logs, head, ancestor=ancestor)

    async def _common_ancestor(self) -> int:
        """Highest stored block whose hash the node still has at that height."""
        assert self.cursor is not None
        top = self.cursor.number
        while top > 0:
            numbers = list(range(top, max(-1, top - 32), -1))
            async with self.runtime.db.engine.connect() as conn:
                stored = await cursors.stored_hashes(conn, self.network, numbers)
            if not stored:
                raise ChainInconsistent(f"reorg deeper than the {cursors.KEEP_BLOCKS} kept blocks")
            canonical = await self.rpc.batch(
                [("eth_getBlockByNumber", [hex(n), False]) for n in numbers]
            )
            for number, block in zip(numbers, canonical, strict=True):
                if block is not None and stored.get(number) == block["hash"]:
                    return number
            top = numbers[-1] - 1
        return 0

    async def _keep_lease(self, head: int) -> None:
        assert self.cursor is not None
        async with self.runtime.db.driver() as db:
            await cursors.fence(db, self.cursor, self.settings.scanner_lease_s, head=head)

    # --- configuration -------------------------------------------------------------------

    async def _config(self) -> NetworkConfig:
        """The network and what to read on it now: the offered currencies, and those
        switched off that are still watched at the cursor's block time."""
        catalog = await self.runtime.catalog.get()
        network = catalog.network(self.network)
        if network is None:
            raise RpcError(f"network {self.network} is not an EVM network any more")
        chain_time = None if self.cursor is None else self.cursor.timestamp
        entries = catalog.scanned(self.network, chain_time)
        return NetworkConfig(
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
            self.rpc.set_endpoints(await cursors.endpoints(conn, self.network))
        self._endpoints_at = time.monotonic()

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


def _check_linked(blocks: list[dict[str, Any] | None], first: int) -> None:
    for offset, block in enumerate(blocks):
        if block is None or int(block["number"], 16) != first + offset:
            raise ChainInconsistent(f"node has no block {first + offset} yet")
        if offset and block["parentHash"] != blocks[offset - 1]["hash"]:  # type: ignore[index]
            raise ChainInconsistent("blocks of one batch do not chain")


def _check_from(blocks: list[dict[str, Any]], logs: list[dict[str, Any]]) -> None:
    hashes = {int(b["number"], 16): b["hash"] for b in blocks}
    if any(
        hashes.get(int(entry.get("blockNumber", "0x0"), 16)) != entry.get("blockHash")
        for entry in logs
    ):
        raise ChainInconsistent("logs from blocks other than the ones read")


def _is_payment(currency: CatalogCurrency, amount: int) -> bool:
    """A transfer of 0, or below the currency's dust threshold, is never a payment: address
    poisoning sends such transfers to every address that receives anything."""
    return amount > 0 and amount >= currency.dust_threshold


def _transfers(
    config: NetworkConfig, blocks: list[dict[str, Any]], logs: list[dict[str, Any]]
) -> list[Transfer]:
    times = {b["hash"]: int(b["timestamp"], 16) for b in blocks}
    found = []
    for entry in logs:
        decoded = decode_transfer_log(entry)
        if decoded is None:
            if not _well_formed(entry):  # a garbled answer: skipping it could lose a payment
                raise ChainInconsistent("a malformed log in the node's answer")
            log.warning(
                "log_skipped", network=config.code, tx=str(entry.get("transactionHash"))[:80]
            )
            continue
        if decoded.removed or decoded.token not in config.tokens:
            continue
        if decoded.tx_hash is None or decoded.log_index is None:  # its identity is missing
            raise ChainInconsistent("a log without transaction hash or log index")
        currency = config.tokens[decoded.token]
        if not _is_payment(currency, decoded.amount):
            continue
        found.append(
            Transfer(
                config.code,
                currency.id,
                decoded.tx_hash or "",
                decoded.log_index or 0,
                decoded.block_number or 0,
                decoded.block_hash or "",
                times[decoded.block_hash or ""],
                decoded.sender,
                decoded.recipient,
                decoded.amount,
            )
        )
    if config.native is not None:
        found.extend(_native_transfers(config, blocks))
    return found


_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
_LOG_FIELDS = (
    ("address", re.compile(r"0x[0-9a-fA-F]{40}")),
    ("data", re.compile(r"0x(?:[0-9a-fA-F]{2})*")),
    ("blockNumber", re.compile(r"0x[0-9a-fA-F]+")),
    ("logIndex", re.compile(r"0x[0-9a-fA-F]+")),
    ("blockHash", _HASH),
    ("transactionHash", _HASH),
)


def _well_formed(entry: dict[str, Any]) -> bool:
    """Shaped as a node shapes every log, whatever its event. A log that is not a standard
    `Transfer` (ERC-721's four topics, a non-indexed variant) is well formed and skipped; one
    that is not well formed is a garbled answer, and the step is retried rather than read
    past (the cursor would move beyond the payment it may hold)."""
    topics = entry.get("topics")
    return (
        isinstance(topics, list)
        and all(isinstance(topic, str) and _HASH.fullmatch(topic) for topic in topics)
        and all(
            isinstance(value := entry.get(name), str) and pattern.fullmatch(value) is not None
            for name, pattern in _LOG_FIELDS
        )
    )


def _native_transfers(config: NetworkConfig, blocks: list[dict[str, Any]]) -> list[Transfer]:
    """Top-level value transfers (a plain transfer to an address without code cannot revert;
    value moved by contracts' internal calls is not seen)."""
    native = config.native
    assert native is not None
    found = []
    for block in blocks:
        number, timestamp = int(block["number"], 16), int(block["timestamp"], 16)
        for tx in block.get("transactions", []):
            if not isinstance(tx, dict) or not tx.get("to") or tx.get("value") in (None, "0x0"):
                continue
            try:
                amount = int(tx["value"], 16)
                if not _is_payment(native, amount):
                    continue
                found.append(
                    Transfer(
                        config.code,
                        native.id,
                        tx["hash"],
                        -1,
                        number,
                        block["hash"],
                        timestamp,
                        tx["from"].lower(),
                        tx["to"].lower(),
                        amount,
                    )
                )
            except (KeyError, ValueError, AttributeError):
                log.warning("tx_skipped", network=config.code)
    return found


def _block_row(block: dict[str, Any]) -> dict[str, Any]:
    return {
        "number": int(block["number"], 16),
        "hash": block["hash"],
        "parent_hash": block["parentHash"],
        "timestamp": int(block["timestamp"], 16),
    }
