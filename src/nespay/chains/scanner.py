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

from nespay.chains import cursors
from nespay.chains.catalog import CatalogCurrency
from nespay.chains.cursors import Cursor, LeaseLost
from nespay.chains.evm import TRANSFER_TOPIC, decode_transfer_log
from nespay.chains.rpcclient import RpcClient, RpcError
from nespay.payments import service as payments
from nespay.payments.service import Transfer
from nespay.runtime import Runtime

log = structlog.get_logger("nespay.scanner")
ENDPOINTS_REFRESH_S = 5.0


class ChainInconsistent(Exception):
    """The node's answers do not fit together (a reorg under our feet); retry the step."""


@dataclass
class NetworkConfig:
    code: str
    confirmations: int
    block_time_ms: int
    tokens: dict[str, CatalogCurrency]  # contract (lowercase) → currency
    native: CatalogCurrency | None


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

    # --- lease ---------------------------------------------------------------------------

    async def acquire(self) -> bool:
        await self._refresh_endpoints()
        async with self.runtime.db.engine.connect() as conn:
            exists = await cursors.cursor_exists(conn, self.network)
        # The node is asked outside any transaction: no pooled connection waits on the network.
        start = (0, "") if exists else await self._starting_point()
        async with self.runtime.db.engine.begin() as conn:
            self.cursor = await cursors.acquire(
                conn, self.network, self.owner, self.settings.scanner_lease_s, start
            )
        if self.cursor is not None:
            log.info("scanner_leased", network=self.network, block=self.cursor.number)
        return self.cursor is not None

    async def _starting_point(self) -> tuple[int, str]:
        """A network scanned for the first time starts an hour of blocks behind the head."""
        config = await self._config()
        head = int(await self.rpc.call("eth_blockNumber", []), 16)
        number = max(0, head - 3_600_000 // max(1, config.block_time_ms))
        block = await self.rpc.call("eth_getBlockByNumber", [hex(number), False])
        return number, block["hash"]

    async def release(self) -> None:
        if self.cursor is not None:
            async with self.runtime.db.engine.begin() as conn:
                await cursors.release(conn, self.cursor)
            self.cursor = None

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
        hashes = {int(b["number"], 16): b["hash"] for b in blocks}
        if any(
            hashes.get(int(entry.get("blockNumber", "0x0"), 16)) != entry.get("blockHash")
            for entry in logs
        ):
            raise ChainInconsistent("logs from blocks other than the ones read")
        return blocks, logs

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
            )
            touched: set[str] = set()
            if ancestor is not None:
                touched |= await payments.orphan_after(db, self.network, ancestor)
                await cursors.forget_blocks_after(db, self.network, ancestor)
            recorded = await self._record(db, transfers, tip, config.confirmations)
            touched |= recorded.invoices
            # Settle the new payments before counting confirmations: a payment first read
            # already deep (catching up, a lagging scanner) then still takes its invoice
            # paid → confirmed with both events, as at the head, not straight to confirmed
            # without `invoice.paid` (it was written confirmed, but counts as pending here).
            early = sorted({row["invoice_id"] for row in recorded.confirmed})
            changed = await payments.settle(db, touched, not_yet_confirmed=early)
            confirmed = await payments.count_confirmations(
                db, self.network, tip, config.confirmations, recorded=recorded.confirmed
            )
            changed |= await payments.settle(db, confirmed, amounts_changed=False)
            await cursors.store_blocks(db, self.network, [_block_row(b) for b in blocks])
        self.cursor.number, self.cursor.hash = tip, blocks[-1]["hash"]
        if transfers or changed:
            log.info(
                "scanned", network=self.network, tip=tip, transfers=len(transfers), invoices=changed
            )
        return len(blocks)

    async def _record(
        self, db: Any, transfers: list[Transfer], tip: int, needed: int
    ) -> payments.Recorded:
        """The batch's transfers to our deposit addresses, recorded in one statement."""
        options = await payments.match_options(db, self.network, transfers)
        matched = [
            (transfer, option)
            for transfer in transfers
            if (option := options.get((transfer.currency_id, transfer.to_address))) is not None
        ]
        return await payments.record_all(db, self.network, matched, tip=tip, needed=needed)

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
        entries = (await self.runtime.catalog.get()).of_network(self.network)
        if not entries:
            raise RpcError(f"network {self.network} has no enabled currency")
        return NetworkConfig(
            code=self.network,
            confirmations=entries[0].confirmations,
            block_time_ms=entries[0].block_time_ms,
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
        """Hold the lease and scan until stopped; errors are logged and retried."""
        poll = self.settings.scanner_poll_interval_ms / 1000
        while not stop.is_set():
            try:
                if self.cursor is None and not await self.acquire():
                    await _sleep(stop, self.settings.scanner_lease_s / 2)
                    continue
                scanned = await self.step()
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
                log.warning("scan_failed", network=self.network, error=str(error)[:300])
                self.batch = max(1, self.batch // 2)
                await _sleep(stop, min(5.0, poll * 4))
        await self.release()


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def _check_linked(blocks: list[dict[str, Any] | None], first: int) -> None:
    for offset, block in enumerate(blocks):
        if block is None or int(block["number"], 16) != first + offset:
            raise ChainInconsistent(f"node has no block {first + offset} yet")
        if offset and block["parentHash"] != blocks[offset - 1]["hash"]:  # type: ignore[index]
            raise ChainInconsistent("blocks of one batch do not chain")


def _transfers(
    config: NetworkConfig, blocks: list[dict[str, Any]], logs: list[dict[str, Any]]
) -> list[Transfer]:
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
        found.append(
            Transfer(
                config.code,
                config.tokens[decoded.token].id,
                decoded.tx_hash or "",
                decoded.log_index or 0,
                decoded.block_number or 0,
                decoded.block_hash or "",
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
    assert config.native is not None
    found = []
    for block in blocks:
        number = int(block["number"], 16)
        for tx in block.get("transactions", []):
            if not isinstance(tx, dict) or not tx.get("to") or tx.get("value") in (None, "0x0"):
                continue
            try:
                amount = int(tx["value"], 16)
                found.append(
                    Transfer(
                        config.code,
                        config.native.id,
                        tx["hash"],
                        -1,
                        number,
                        block["hash"],
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
