"""The EVM implementation of `ChainAdapter`: raw JSON-RPC, batched.

A read of blocks `first`…`last` is ONE JSON-RPC batch: the blocks (with their transactions
when the native coin is watched) and one `eth_getLogs` of the network's tokens' ERC-20
`Transfer` logs over the range. Each block's `logsBloom` then cross-checks the logs (a node
behind a load balancer may answer from a replica that lags: see `_cross_check`). Confirmations
are counted from the head (`confirming_tip` is the batch's tip).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar

import httpx
import structlog

from nespay.chains.adapter import BlockRef, ChainInconsistent, Head, Watch, is_payment
from nespay.chains.evm import TRANSFER_TOPIC, bloom_mask, bloom_may_contain, decode_transfer_log
from nespay.chains.rpcclient import ChainIdentity, Endpoint, RpcClient
from nespay.payments.service import Transfer

log = structlog.get_logger("nespay.scanner")
_TRANSFER_MASK = bloom_mask(TRANSFER_TOPIC)


class EvmAdapter:
    family: ClassVar[str] = "evm"

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.rpc = RpcClient(http, [])

    def set_endpoints(self, endpoints: list[Endpoint]) -> None:
        self.rpc.set_endpoints(endpoints)

    async def identify(self, chain_id: int | None, genesis: str | None) -> str:
        # The node is asked outside any transaction: no pooled connection waits on it.
        self.rpc.expect(ChainIdentity(chain_id, genesis))
        found = (await self.rpc.identify())[1]  # checked against the network's as it is asked
        if genesis is None:
            self.rpc.expect(ChainIdentity(chain_id, found))
        return found

    async def head(self, cursor: int) -> Head:
        head_hex, ours = await self.rpc.batch(
            [("eth_blockNumber", []), ("eth_getBlockByNumber", [hex(cursor), False])]
        )
        return Head(int(head_hex, 16), cursor_hash=None if ours is None else ours["hash"])

    async def blocks(self, numbers: Sequence[int]) -> list[BlockRef | None]:
        found = await self.rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
        return [None if block is None else _ref(block) for block in found]

    def confirming_tip(self, head: Head, tip: int, confirmations: int) -> int:
        return tip

    async def send(self, signed: bytes | str) -> tuple[str | None, str | None]:
        raw = signed if isinstance(signed, str) else "0x" + signed.hex()
        return await self.rpc.call_answered("eth_sendRawTransaction", [raw])

    async def transfers(
        self, first: int, last: int, watch: Watch
    ) -> tuple[list[BlockRef], list[Transfer]]:
        full = watch.native is not None
        calls: list[tuple[str, list[Any]]] = [
            ("eth_getBlockByNumber", [hex(n), full]) for n in range(first, last + 1)
        ]
        if watch.tokens:
            calls.append(
                (
                    "eth_getLogs",
                    [
                        {
                            "fromBlock": hex(first),
                            "toBlock": hex(last),
                            "address": sorted(watch.tokens),
                            "topics": [TRANSFER_TOPIC],
                        }
                    ],
                )
            )
        results = await self.rpc.batch(calls)
        blocks = results[: last - first + 1]
        logs = results[last - first + 1] if watch.tokens else []
        if not isinstance(logs, list) or not all(isinstance(entry, dict) for entry in logs):
            raise ChainInconsistent("the logs answer is not a list of log objects")
        _check_linked(blocks, first)
        _check_from(blocks, logs)
        logs = await self._cross_check(watch, blocks, logs)
        return [_ref(block) for block in blocks], _transfers(watch, blocks, logs)

    async def _cross_check(
        self, watch: Watch, blocks: list[dict[str, Any]], logs: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """A node behind a load balancer may answer `eth_getLogs` from a replica that lags:
        the blocks are there, their logs silently missing. Each block's `logsBloom` says
        whether a watched token may have emitted a `Transfer` in it; where it may and none
        came, the block's logs are asked again by block hash (EIP-234: a node without that
        block answers with an error, not an empty list), from another endpoint if there is
        one. Logs found only then are used, and the endpoint that left them out is backed
        off. A bloom's false positive costs one call and changes nothing."""
        if not watch.tokens:
            return logs
        seen = {(entry["blockHash"], entry["address"].lower()) for entry in logs}
        masks = {contract: bloom_mask(contract) for contract in watch.tokens}
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
        filters = {"address": sorted(watch.tokens), "topics": [TRANSFER_TOPIC]}
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
            network=watch.code,
            endpoint_id=answered_by,
            blocks=len(doubtful),
            logs=len(missing),
        )
        if answered_by is not None and answered_by != self.rpc.last_endpoint:
            self.rpc.demote(answered_by)
        return logs + missing


def _ref(block: dict[str, Any]) -> BlockRef:
    return BlockRef(
        int(block["number"], 16), block["hash"], block["parentHash"], int(block["timestamp"], 16)
    )


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


def _transfers(
    watch: Watch, blocks: list[dict[str, Any]], logs: list[dict[str, Any]]
) -> list[Transfer]:
    times = {b["hash"]: int(b["timestamp"], 16) for b in blocks}
    found = []
    for entry in logs:
        decoded = decode_transfer_log(entry)
        if decoded is None:
            if not _well_formed(entry):  # a garbled answer: skipping it could lose a payment
                raise ChainInconsistent("a malformed log in the node's answer")
            log.warning(
                "log_skipped", network=watch.code, tx=str(entry.get("transactionHash"))[:80]
            )
            continue
        if decoded.removed or decoded.token not in watch.tokens:
            continue
        if decoded.tx_hash is None or decoded.log_index is None:  # its identity is missing
            raise ChainInconsistent("a log without transaction hash or log index")
        currency = watch.tokens[decoded.token]
        if not is_payment(currency, decoded.amount):
            continue
        found.append(
            Transfer(
                watch.code,
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
    if watch.native is not None:
        found.extend(_native_transfers(watch, blocks))
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


def _native_transfers(watch: Watch, blocks: list[dict[str, Any]]) -> list[Transfer]:
    """Top-level value transfers (a plain transfer to an address without code cannot revert;
    value moved by contracts' internal calls is not seen)."""
    native = watch.native
    assert native is not None
    found = []
    for block in blocks:
        number, timestamp = int(block["number"], 16), int(block["timestamp"], 16)
        for tx in block.get("transactions", []):
            if not isinstance(tx, dict) or not tx.get("to") or tx.get("value") in (None, "0x0"):
                continue
            try:
                amount = int(tx["value"], 16)
                if not is_payment(native, amount):
                    continue
                found.append(
                    Transfer(
                        watch.code,
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
                log.warning("tx_skipped", network=watch.code)
    return found
