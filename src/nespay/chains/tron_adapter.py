"""The Tron implementation of `ChainAdapter`, over a TronGrid-compatible HTTP API (java-tron's
FullNode and Solidity HTTP paths, as TronGrid serves them on one host).

- Head: `POST /wallet/getnowblock` and, for finality, `/walletsolidity/getnowblock` (the
  solidified head: confirmed by 2/3 of the super representatives, it never rolls back).
- Blocks: `POST /wallet/getblockbynum {num}`; a block's id is its hash (`blockID`, 64 hex, no
  `0x`; its first 8 bytes are the number), `block_header.raw_data` holds `parentHash` and the
  `timestamp` in milliseconds; java-tron leaves out zero fields (block 0 has no `number`).
- TRX payments: a block's `TransferContract` transactions (`parameter.value.amount` in sun,
  `to_address` hex `41…`) whose `ret[0].contractRet` is `SUCCESS`, log index -1.
- TRC-20 payments: `POST /wallet/gettransactioninfobyblocknum {num}` (only for blocks with
  transactions), each info's `log[]` (`address` the 20-byte contract without `41`, `topics`
  and `data` hex without `0x`) of the network's tokens, `Transfer(from, to, value)`; the log
  index is the log's position in its transaction. A reverted call has no logs.
- The infos must be those of the block's transactions: a node (or a replica behind TronGrid's
  balancer) that has not got the block answers `[]`, which would read as "no payments"; a
  mismatch fails the step (retried, the endpoint backed off), it is never read past.
- Confirmations: a payment is confirmed once its block is solidified AND the network's
  `confirmations` deep (`confirming_tip`).

Every endpoint's own API key goes in `TRON-PRO-API-KEY`; without one, none is sent (never a
shared default key, as tronpy's HTTPProvider would send).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
import orjson
import structlog

from nespay.chains.adapter import BlockRef, ChainInconsistent, Head, Watch, is_payment
from nespay.chains.catalog import CatalogCurrency
from nespay.chains.rpcclient import (
    ChainIdentity,
    Endpoint,
    EndpointFailed,
    FailoverClient,
    RpcError,
    retry_after_s,
)
from nespay.kit.addresses import tron_from_hex, tron_to_hex
from nespay.kit.urls import mask_urls_in
from nespay.payments.service import Transfer
from nespay.wallets.trontx import address_word

log = structlog.get_logger("nespay.scanner")
API_KEY_HEADER = "TRON-PRO-API-KEY"
TRANSFER_TOPIC = "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
CONCURRENCY = 8  # requests in flight per scanner (the HTTP API has no batching)
_BLOCK_ID = re.compile(r"[0-9a-f]{64}")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")
# topic1 + topic2 + data of a standard TRC-20 Transfer: two padded 20-byte ids, one word.
_TRANSFER_FIELDS = re.compile(r"0{24}([0-9a-fA-F]{40})0{24}([0-9a-fA-F]{40})([0-9a-fA-F]{64})")


@dataclass
class TronClient(FailoverClient):
    """The HTTP API with failover (see FailoverClient): one request per call."""

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        return (await self.post_from(path, body))[0]

    async def post_from(self, path: str, body: dict[str, Any]) -> tuple[Any, str]:
        """(the answer, the id of the endpoint that gave it)."""
        content = orjson.dumps(body)

        async def attempt(endpoint: Endpoint) -> tuple[Any, str]:
            return await self._post(endpoint, path, content), endpoint.id

        return await self._failover(attempt)

    async def _identity_of(self, endpoint: Endpoint) -> tuple[int, str]:
        genesis = await self._post(endpoint, "/wallet/getblockbynum", orjson.dumps({"num": 0}))
        block_id = genesis.get("blockID") if isinstance(genesis, dict) else None
        if not isinstance(block_id, str) or not _BLOCK_ID.fullmatch(block_id):
            raise EndpointFailed(f"{endpoint.id}: malformed Tron answer (no block 0)")
        return int(block_id[-8:], 16), block_id  # a Tron chain id: block 0's last 4 bytes

    async def _post(self, endpoint: Endpoint, path: str, content: bytes) -> Any:
        headers = {"content-type": "application/json"}
        if endpoint.api_key:
            headers[API_KEY_HEADER] = endpoint.api_key
        try:
            response = await self.http.post(
                endpoint.url.rstrip("/") + path, content=content, headers=headers
            )
        except httpx.HTTPError as error:
            raise EndpointFailed(f"{endpoint.id}: {type(error).__name__}") from None
        if response.status_code == 429:
            raise EndpointFailed(f"{endpoint.id}: rate limited", retry_after_s(response))
        if response.status_code in (401, 403):
            raise EndpointFailed(
                f"{endpoint.id}: HTTP {response.status_code} (is its API key right?)"
            )
        if response.status_code >= 400:
            raise EndpointFailed(f"{endpoint.id}: HTTP {response.status_code}")
        try:
            answer = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise EndpointFailed(f"{endpoint.id}: malformed Tron answer") from None
        if isinstance(answer, dict) and "Error" in answer:
            message = mask_urls_in(str(answer["Error"]))[:200]
            raise EndpointFailed(f"{endpoint.id}: Tron API error: {message}")
        return answer


class TronAdapter:
    family: ClassVar[str] = "tron"

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.rpc = TronClient(http, [])
        self._gate = asyncio.Semaphore(CONCURRENCY)
        self._hex_tokens: tuple[int, dict[str, CatalogCurrency]] = (0, {})

    def set_endpoints(self, endpoints: list[Endpoint]) -> None:
        self.rpc.set_endpoints(endpoints)

    async def identify(self, chain_id: int | None, genesis: str | None) -> str:
        self.rpc.expect(ChainIdentity(chain_id, genesis))
        block = await self.rpc.post("/wallet/getblockbynum", {"num": 0})
        found = _ref(block, 0).hash
        if genesis is None:
            self.rpc.expect(ChainIdentity(chain_id, found))
        return found

    async def head(self, cursor: int) -> Head:
        now, solid = await asyncio.gather(
            self._ask("/wallet/getnowblock", {}), self._ask("/walletsolidity/getnowblock", {})
        )
        head, final = _ref(now, None), _ref(solid, None)
        if head.number > cursor:  # the next block's parent hash tells whether ours still is
            return Head(head.number, min(final.number, head.number), cursor_known=False)
        at_cursor = head.hash if head.number == cursor else None
        return Head(head.number, min(final.number, head.number), at_cursor)

    async def blocks(self, numbers: Sequence[int]) -> list[BlockRef | None]:
        found = await asyncio.gather(*(self._block(n) for n in numbers))
        return [
            None if block is None else _ref(block, n)
            for n, block in zip(numbers, found, strict=True)
        ]

    def confirming_tip(self, head: Head, tip: int, confirmations: int) -> int:
        # tip' - block + 1 >= N  ⇔  block <= min(solidified, tip - N + 1)
        final = tip if head.final is None else head.final
        return min(tip, final + max(1, confirmations) - 1)

    async def send(self, signed: bytes | str) -> tuple[str | None, str | None]:
        """`POST /wallet/broadcasthex` with the signed `Transaction` bytes as they are (the
        JSON route would have the node re-encode raw_data): (its id, None), or (None,
        "CODE: message") — `DUP_TRANSACTION_ERROR`, `TRANSACTION_EXPIRATION_ERROR`,
        `TAPOS_ERROR`, `SIGERROR`, `BANDWITH_ERROR`, `CONTRACT_VALIDATE_ERROR`, …
        `result: true` only means this node accepted it (CONTRACTS §4.1)."""
        payload = signed.hex() if isinstance(signed, bytes) else signed
        answer = await self.rpc.post("/wallet/broadcasthex", {"transaction": payload})
        if not isinstance(answer, dict):
            raise RpcError("malformed Tron answer to broadcasthex")
        if answer.get("result") is True:
            return str(answer.get("txid") or ""), None
        code = str(answer.get("code") or "OTHER_ERROR")
        return None, f"{code}: {_text(answer.get('message'))}"

    # --- what the sender reads ---------------------------------------------------------

    async def now(self, *, solid: bool = False) -> tuple[BlockRef, int]:
        """The head (or the solidified head) and its timestamp in milliseconds."""
        path = "/walletsolidity/getnowblock" if solid else "/wallet/getnowblock"
        block = await self._ask(path, {})
        ref = _ref(block, None)
        return ref, int(block["block_header"]["raw_data"]["timestamp"])

    async def chain_parameters(self) -> dict[str, int]:
        answer = await self._ask("/wallet/getchainparameters", {})
        try:
            return {p["key"]: int(p.get("value", 0)) for p in answer["chainParameter"]}
        except (KeyError, TypeError, ValueError):
            raise RpcError("malformed answer to getchainparameters") from None

    async def account(self, address: str) -> dict[str, Any]:
        """`/wallet/getaccount` (`{}`: the account does not exist: never sent any TRX)."""
        return _object(await self._ask("/wallet/getaccount", {"address": address, "visible": True}))

    async def account_resource(self, address: str) -> dict[str, Any]:
        body = {"address": address, "visible": True}
        return _object(await self._ask("/wallet/getaccountresource", body))

    async def trx_balance(self, address: str) -> int:
        return int((await self.account(address)).get("balance", 0))

    async def token_balance(self, token: str, address: str) -> int:
        answer = await self._constant(token, address, "balanceOf(address)", address_word(address))
        if not _succeeded(answer):
            raise RpcError(f"balanceOf refused: {_call_error(answer)}")
        try:
            return int(answer["constant_result"][0] or "0", 16)
        except (KeyError, IndexError, TypeError, ValueError):
            raise RpcError("malformed answer to balanceOf") from None

    async def estimate_transfer(
        self, owner: str, token: str, to: str, amount: int
    ) -> tuple[int | None, str | None]:
        """The energy a TRC-20 `transfer(to, amount)` from `owner` uses (run, not sent, by
        `triggerconstantcontract`): (energy, None), or (None, why it would fail)."""
        parameter = address_word(to) + format(amount, "064x")
        answer = await self._constant(token, owner, "transfer(address,uint256)", parameter)
        if not _succeeded(answer):
            return None, _call_error(answer)
        try:
            return int(answer.get("energy_used", 0)), None
        except (TypeError, ValueError):
            raise RpcError("malformed answer to triggerconstantcontract") from None

    async def transaction_info(self, tx_id: str, *, solid: bool = False) -> dict[str, Any] | None:
        """A transaction's receipt once it is in a block (of the solidified chain, `solid`);
        None while it is not."""
        path = (
            "/walletsolidity/gettransactioninfobyid" if solid else "/wallet/gettransactioninfobyid"
        )
        answer = _object(await self._ask(path, {"value": tx_id}))
        return answer if answer.get("blockNumber") is not None else None

    async def _constant(
        self, contract: str, owner: str, selector: str, parameter: str
    ) -> dict[str, Any]:
        body = {
            "owner_address": owner,
            "contract_address": contract,
            "function_selector": selector,
            "parameter": parameter,
            "visible": True,
        }
        return _object(await self._ask("/wallet/triggerconstantcontract", body))

    async def transfers(
        self, first: int, last: int, watch: Watch
    ) -> tuple[list[BlockRef], list[Transfer]]:
        numbers = range(first, last + 1)
        raw = await asyncio.gather(*(self._block(n) for n in numbers))
        refs = []
        for number, block in zip(numbers, raw, strict=True):
            if block is None:
                raise ChainInconsistent(f"node has no block {number} yet")
            ref = _ref(block, number)
            if refs and ref.parent_hash != refs[-1].hash:
                raise ChainInconsistent("blocks of one batch do not chain")
            refs.append(ref)
        found: list[Transfer] = []
        if watch.native is not None:
            for block, ref in zip(raw, refs, strict=True):
                found.extend(_trx_transfers(watch, watch.native, block, ref))  # type: ignore[arg-type]
        if watch.tokens:
            busy = [(b, r) for b, r in zip(raw, refs, strict=True) if b.get("transactions")]  # type: ignore[union-attr]
            infos = await asyncio.gather(*(self._infos(r.number) for _, r in busy))
            tokens = self._tokens_by_hex(watch)
            for (block, ref), (answer, endpoint) in zip(busy, infos, strict=True):
                _check_infos(self.rpc, block, ref, answer, endpoint)
                found.extend(_trc20_transfers(watch, tokens, answer, ref))
        return refs, found

    # --- requests ------------------------------------------------------------------------

    async def _ask(self, path: str, body: dict[str, Any]) -> Any:
        async with self._gate:
            return await self.rpc.post(path, body)

    async def _block(self, number: int) -> dict[str, Any] | None:
        block = await self._ask("/wallet/getblockbynum", {"num": number})
        if not isinstance(block, dict):
            raise ChainInconsistent(f"block {number}: the answer is not a block")
        return block or None  # `{}`: the node has no such block

    async def _infos(self, number: int) -> tuple[Any, str]:
        async with self._gate:
            return await self.rpc.post_from("/wallet/gettransactioninfobyblocknum", {"num": number})

    def _tokens_by_hex(self, watch: Watch) -> dict[str, CatalogCurrency]:
        """The watched tokens by the 40 lower-case hex digits their logs carry (recomputed
        only when the watched set changes)."""
        key = hash(tuple(sorted(watch.tokens)))
        if self._hex_tokens[0] != key:
            self._hex_tokens = (key, {tron_to_hex(c)[2:]: v for c, v in watch.tokens.items()})
        return self._hex_tokens[1]


def _object(answer: Any) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise RpcError("malformed Tron answer (not an object)")
    return answer


def _text(value: Any) -> str:
    """A node's message: java-tron's HTTP API hex-encodes some (broadcasttransaction's)."""
    text = str(value or "")
    if text and _HEX.fullmatch(text):
        with contextlib.suppress(UnicodeDecodeError):
            text = bytes.fromhex(text).decode()
    return mask_urls_in(text)[:300]


def _succeeded(answer: dict[str, Any]) -> bool:
    result = answer.get("result") or {}
    ret = ((answer.get("transaction") or {}).get("ret") or [{}])[0]
    return result.get("result") is True and "code" not in result and ret.get("ret") != "FAILED"


def _call_error(answer: dict[str, Any]) -> str:
    result = answer.get("result") or {}
    code = result.get("code") or "REVERT"
    return f"{code}: {_text(result.get('message')) or 'the call reverted'}"


def _ref(block: Any, number: int | None) -> BlockRef:
    """A block's reference; ChainInconsistent when it is not shaped like a block (or is not
    block `number`)."""
    try:
        raw = block["block_header"]["raw_data"]
        ref = BlockRef(
            int(raw.get("number", 0)),
            block["blockID"],
            raw["parentHash"],
            int(raw["timestamp"]) // 1000,
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ChainInconsistent("a block that is not shaped like one") from None
    if not isinstance(ref.hash, str) or not _BLOCK_ID.fullmatch(ref.hash):
        raise ChainInconsistent("a block id that is not 64 hex digits")
    if int(ref.hash[:16], 16) != ref.number or (number is not None and ref.number != number):
        raise ChainInconsistent(f"asked for block {number}, the node answered {ref.number}")
    return ref


def _trx_transfers(
    watch: Watch, native: CatalogCurrency, block: dict[str, Any], ref: BlockRef
) -> list[Transfer]:
    """The block's successful `TransferContract`s (top level: TRX moved by contracts'
    internal calls is not seen, as on EVM)."""
    found = []
    for tx in block.get("transactions", ()):
        try:
            contract = tx["raw_data"]["contract"][0]
            if contract.get("type") != "TransferContract":
                continue
            if (tx.get("ret") or [{}])[0].get("contractRet", "SUCCESS") != "SUCCESS":
                continue
            value = contract["parameter"]["value"]
            amount = int(value.get("amount", 0))  # protobuf JSON leaves a zero out
            if not is_payment(native, amount):
                continue
            found.append(
                Transfer(
                    watch.code,
                    native.id,
                    tx["txID"],
                    -1,
                    ref.number,
                    ref.hash,
                    ref.timestamp,
                    tron_from_hex(value["owner_address"]),
                    tron_from_hex(value["to_address"]),
                    amount,
                )
            )
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            # A TRX transfer whose shape is garbled may be a payment: never read past it.
            raise ChainInconsistent(f"a garbled transaction in block {ref.number}") from None
    return found


def _check_infos(
    rpc: FailoverClient, block: dict[str, Any], ref: BlockRef, infos: Any, endpoint: str
) -> None:
    """The infos are the block's transactions' (see the module docstring)."""
    try:
        wanted = {tx["txID"] for tx in block["transactions"]}
        got = {info["id"] for info in infos}
        numbers = {int(info.get("blockNumber", ref.number)) for info in infos}
    except (KeyError, TypeError, ValueError):
        raise ChainInconsistent(f"garbled transaction infos of block {ref.number}") from None
    if got != wanted or numbers - {ref.number}:
        log.warning("tron_infos_missing", block=ref.number, endpoint_id=endpoint)
        rpc.demote(endpoint)
        raise ChainInconsistent(
            f"the transaction infos of block {ref.number} are not its transactions' "
            "(a node that lags?); asking again"
        )


def _trc20_transfers(
    watch: Watch, tokens: dict[str, CatalogCurrency], infos: list[dict[str, Any]], ref: BlockRef
) -> list[Transfer]:
    found = []
    for info in infos:
        logs = info.get("log")
        if not logs:
            continue
        if (
            info.get("result") == "FAILED"
            or (info.get("receipt") or {}).get("result", "SUCCESS") != "SUCCESS"
        ):
            continue  # a reverted call's logs (if a node showed any) moved nothing
        for index, entry in enumerate(logs):
            transfer = _decode(watch, tokens, info, index, entry, ref)
            if transfer is not None:
                found.append(transfer)
    return found


def _decode(
    watch: Watch,
    tokens: dict[str, CatalogCurrency],
    info: dict[str, Any],
    index: int,
    entry: Any,
    ref: BlockRef,
) -> Transfer | None:
    """One log → a payment-sized Transfer of a watched token, or None (another contract,
    another event, dust). A watched token's log that is not well formed is a garbled
    answer: ChainInconsistent."""
    try:
        address = entry["address"].lower()
        address = address[2:] if len(address) == 42 else address
        currency = tokens.get(address)
        if currency is None:
            return None
        topics = entry["topics"]
        data = entry.get("data", "")
        if not all(isinstance(t, str) and _HEX.fullmatch(t) for t in topics) or not (
            isinstance(data, str) and _HEX.fullmatch(data)
        ):
            raise ValueError
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ChainInconsistent(f"a malformed log in block {ref.number}") from None
    if len(topics) != 3 or topics[0].lower() != TRANSFER_TOPIC:
        return None  # Approval, or a Transfer of another shape (TRC-721's four topics)
    match = _TRANSFER_FIELDS.fullmatch(topics[1] + topics[2] + data)
    if match is None:
        return None
    sender, recipient, amount_hex = match.groups()
    amount = int(amount_hex, 16)
    if not is_payment(currency, amount):
        return None
    return Transfer(
        watch.code,
        currency.id,
        info["id"],
        index,
        ref.number,
        ref.hash,
        ref.timestamp,
        tron_from_hex(sender),
        tron_from_hex(recipient),
        amount,
    )
