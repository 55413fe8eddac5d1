"""A fake TronGrid: a small Tron chain in memory, served over the java-tron FullNode HTTP API's
paths and JSON shapes (as TronGrid serves them), for the test suite and `nespay sandbox
--chain tron`. No Tron node runs on this machine; this is what the Tron scanner is proven on.

Built from the public API documentation (developers.tron.network, tronprotocol.github.io
documentation-en `api/http`), not from any node's code:

- `POST /wallet/getnowblock`, `/walletsolidity/getnowblock` (the solidified head: it never
  goes back), `/wallet/getblockbynum {num}` (`{}` for a block the node does not have),
  `/wallet/getblockbyid {value}`, `/wallet/gettransactioninfobyblocknum {num}` (a JSON array,
  `[]` for a block without transactions) and their `/walletsolidity/…` twins (solidified
  blocks only);
- a block is `{blockID, block_header: {raw_data: {number, txTrieRoot, witness_address,
  parentHash, version, timestamp (ms)}, witness_signature}, transactions: […]}`, without the
  `transactions` key when it has none; the block id's first 8 bytes are its number;
- a TRX transfer is a `TransferContract` (`parameter.value {amount (sun), owner_address,
  to_address}`, hex `41…`); a TRC-20 transfer a `TriggerSmartContract` (`{data,
  owner_address, contract_address}`) whose transaction info carries the token's `Transfer`
  log: `log[] {address (20 bytes hex, no 41), topics (hex, no 0x), data}`, `receipt.result`;
- `visible: true` in the request turns the addresses into base58 (`T…`), log addresses too;
- `TRON-PRO-API-KEY`: when the fake is given keys, a request without one of them is refused
  with 401, as TronGrid refuses an unknown key; every key seen is recorded.

What a test needs on command: blocks (`mine`), TRX and TRC-20 transfers (`send_trx`,
`send_trc20`, into the next block), a token that reverts (`revert=True`: no log, receipt
`REVERT`), reorgs (`reorg`, never below the solidified head), the solidified height
(`solid_lag`, `solidify`), failures of the next requests (`fail_next`: 429 with Retry-After,
5xx, or a garbled answer), a different chain (another `genesis_salt`), and a block producer
thread (`produce_every`) for the sandbox.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from nespay.kit.addresses import AddressInvalid, tron_from_hex, tron_to_hex
from nespay.wallets import trontx

TRANSFER_TOPIC = "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
TRANSFER_SELECTOR = "a9059cbb"
BLOCK_TIME_MS = 3_000
SANDBOX_PORT = 8090  # java-tron's FullNode HTTP port; the seeded `tron-local` endpoint
DEFAULT_SOLID_LAG = 19  # mainnet solidifies about 19 blocks (~1 minute) behind the head
# Fees as mainnet's chain parameters put them (CONTRACTS §4.5; read back by the sender from
# /wallet/getchainparameters, never assumed).
ENERGY_FEE = 100  # sun per energy burnt
TRANSACTION_FEE = 1_000  # sun per bandwidth byte burnt
CREATE_ACCOUNT_FEE = 1_100_000  # a TRX transfer to a new account: 1 TRX + 0.1 TRX
FREE_NET_LIMIT = 600  # free bandwidth bytes a day of an activated account
TRC20_ENERGY_HOLDER = 64_285  # USDT transfer to an address that already holds the token
TRC20_ENERGY_NEW = 130_285  # ... to one that does not
REVERT_ENERGY = 4_000
MAX_EXPIRATION_MS = 24 * 3600 * 1000
WITNESS = "41" + "be" * 20
NET = "@net"  # the pseudo-asset of free bandwidth used, in a transaction's effects


def genesis_id(salt: str = "") -> str:
    """Block 0's id of the fake chain made with `salt` (the default chain: always the same)."""
    return "00" * 8 + hashlib.sha256(f"nespay fake tron {salt}".encode()).hexdigest()[16:]


def chain_id(salt: str = "") -> int:
    """What a Tron network's chain id is: the last 4 bytes of its block 0's id."""
    return int(genesis_id(salt)[-8:], 16)


@dataclass
class Tx:
    id: str
    contract: dict[str, Any]  # the raw_data.contract[0] entry, hex addresses
    info: dict[str, Any]  # gettransactioninfobyid without the block's fields
    timestamp: int
    # What it moved: (asset: None for TRX or a token's base58, address, delta).
    effects: list[tuple[str | None, str, int]] = field(default_factory=list)
    signed: trontx.Signed | None = None  # broadcast to the fake (executed when mined)
    expiration: int = 0
    raw_data_hex: str = "0a"


@dataclass
class Block:
    number: int
    id: str
    parent: str
    timestamp: int
    txs: list[Tx] = field(default_factory=list)


@dataclass
class State:
    """Balances as the blocks up to some height left them."""

    trx: dict[str, int] = field(default_factory=dict)  # an account exists once it has a key
    tokens: dict[str, dict[str, int]] = field(default_factory=dict)
    net_used: Counter[str] = field(default_factory=Counter)  # free bandwidth used

    def copy(self) -> State:
        return State(
            dict(self.trx), {k: dict(v) for k, v in self.tokens.items()}, Counter(self.net_used)
        )

    def apply(self, effects: Iterable[tuple[str | None, str, int]]) -> None:
        for asset, address, delta in effects:
            if asset == NET:
                self.net_used[address] += delta
            elif asset is None:
                self.trx[address] = self.trx.get(address, 0) + delta
            else:
                held = self.tokens.setdefault(asset, {})
                held[address] = held.get(address, 0) + delta

    def token(self, token: str, address: str) -> int:
        return self.tokens.get(token, {}).get(address, 0)

    def free_net(self, address: str) -> int:
        if address not in self.trx:
            return 0  # an account that does not exist has no free bandwidth
        return max(0, FREE_NET_LIMIT - self.net_used[address])


@dataclass
class Fault:
    status: int
    headers: dict[str, str]
    body: Any


class FakeTron:
    """The chain; `serve()` puts it on a port. Thread-safe: the server's threads and the test
    that drives it share one lock."""

    def __init__(
        self,
        *,
        genesis_salt: str = "",
        solid_lag: int = DEFAULT_SOLID_LAG,
        api_keys: Iterable[str] = (),
    ) -> None:
        now = int(time.time() * 1000)
        self.lock = threading.RLock()
        self.blocks = [Block(0, genesis_id(genesis_salt), "00" * 32, now - BLOCK_TIME_MS)]
        self.pending: list[Tx] = []
        self.solid_lag = solid_lag
        self.solid = 0
        self.api_keys = set(api_keys)
        self.keys_seen: list[str | None] = []
        self.requests: Counter[str] = Counter()
        self.faults: deque[Fault] = deque()
        self._fork = 0  # bumped by each reorg: the new blocks get other ids
        self.clock_offset_ms = 0
        self.token_contracts: set[str] = set()
        self.broadcasts: Counter[str] = Counter()  # accepted broadcasts by transaction id
        self.refusals: list[tuple[str, str]] = []  # (code, transaction id)
        self.lose_broadcasts = 0  # accept the next N broadcasts, then forget them
        self._state: tuple[tuple[str, int], State] | None = None
        self._counter = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._producer: threading.Thread | None = None
        self._stop = threading.Event()
        self.url = ""

    # --- the chain -----------------------------------------------------------------------

    @property
    def head(self) -> int:
        return self.blocks[-1].number

    def new_token(self, symbol: str = "TUSD") -> str:
        """A TRC-20 contract address (base58) for the fake's transfers."""
        digest = hashlib.sha256(f"token {symbol} {next(self._counter)}".encode()).digest()
        token = tron_from_hex(digest[:20].hex())
        self.token_contracts.add(token)
        return token

    def send_trx(self, sender: str, to: str, amount: int) -> str:
        """A TRX transfer (sun) into the next block; returns its transaction id."""
        value = {
            "amount": amount,
            "owner_address": tron_to_hex(sender),
            "to_address": tron_to_hex(to),
        }
        return self._queue(
            _contract("TransferContract", value),
            {"receipt": {"net_usage": 267}},
            [(None, to, amount)],
        )

    def send_trc20(
        self, token: str, sender: str, to: str, amount: int, *, revert: bool = False
    ) -> str:
        """A TRC-20 `transfer(to, amount)` call on `token` into the next block: its receipt
        has the `Transfer` log (none when `revert`)."""
        to_word = tron_to_hex(to)[2:].rjust(64, "0")
        value = {
            "data": TRANSFER_SELECTOR + to_word + format(amount, "064x"),
            "owner_address": tron_to_hex(sender),
            "contract_address": tron_to_hex(token),
        }
        receipt = {"energy_usage_total": 64285, "net_usage": 345}
        info: dict[str, Any] = {"contract_address": tron_to_hex(token), "receipt": receipt}
        if revert:
            receipt["result"] = "REVERT"
            info["result"] = "FAILED"
        else:
            receipt["result"] = "SUCCESS"
            info["log"] = [transfer_log(token, sender, to, amount)]
        effects = [] if revert else [(token, to, amount)]
        return self._queue(_contract("TriggerSmartContract", value), info, effects)

    def emit(self, contract: str, logs: list[dict[str, Any]], sender: str) -> str:
        """A contract call whose receipt carries `logs` as given (for logs of any shape)."""
        value = {
            "data": "00",
            "owner_address": tron_to_hex(sender),
            "contract_address": tron_to_hex(contract),
        }
        info = {"contract_address": tron_to_hex(contract), "receipt": {"result": "SUCCESS"}}
        return self._queue(_contract("TriggerSmartContract", value), {**info, "log": logs})

    def _queue(
        self,
        contract: dict[str, Any],
        info: dict[str, Any],
        effects: list[tuple[str | None, str, int]] | None = None,
    ) -> str:
        """A transaction from outside the fake's books: its payer is not debited or checked
        (payers are any address), its recipient is credited once it is in a block."""
        with self.lock:
            serial = next(self._counter)
            tx_id = hashlib.sha256(json.dumps([serial, contract]).encode()).hexdigest()
            self.pending.append(Tx(tx_id, contract, info, self.now_ms(), effects or []))
            return tx_id

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.clock_offset_ms

    def skip_time(self, ms: int) -> None:
        """The next blocks are stamped `ms` later (expiring transactions without mining
        thousands of blocks)."""
        with self.lock:
            self.clock_offset_ms += ms

    def mine(self, count: int = 1) -> int:
        """Produce `count` blocks (the first takes every pending transaction); returns the
        new head. The solidified head follows `solid_lag` blocks behind."""
        with self.lock:
            for _ in range(count):
                parent = self.blocks[-1]
                number = parent.number + 1
                stamp = max(parent.timestamp + BLOCK_TIME_MS, self.now_ms())
                included = self._execute(self.pending, stamp)
                seed = f"{parent.id}:{number}:{self._fork}:{[t.id for t in included]}"
                block_id = format(number, "016x") + hashlib.sha256(seed.encode()).hexdigest()[16:]
                self.blocks.append(Block(number, block_id, parent.id, stamp, included))
                self.pending = []
            self.solid = max(self.solid, self.head - self.solid_lag)
            return self.head

    def solidify(self, number: int | None = None) -> None:
        """Move the solidified head to `number` (default: the head); it never goes back."""
        with self.lock:
            self.solid = max(self.solid, min(self.head, self.head if number is None else number))

    def reorg(
        self, depth: int, *, keep: bool | Iterable[str] = True, new: int | None = None
    ) -> None:
        """Replace the last `depth` blocks by `new` (default `depth`) others with other ids.
        Their transactions go back into the next block when `keep` is True, are dropped when
        False, or only those listed are kept. A solidified block is never replaced."""
        with self.lock:
            if depth > self.head - self.solid:
                raise ValueError(f"block {self.head - depth + 1} is solidified: no reorg there")
            dropped = self.blocks[-depth:]
            del self.blocks[-depth:]
            kept = {t.id for b in dropped for t in b.txs} if keep is True else set(keep or ())
            self.pending = [t for b in dropped for t in b.txs if t.id in kept] + self.pending
            self._fork += 1
            self.mine(depth if new is None else new)

    def fail_next(
        self,
        count: int = 1,
        status: int = 503,
        *,
        retry_after: float | None = None,
        body: Any = None,
    ) -> None:
        """The next `count` requests (any path) get `status` (200 with `body`: a garbled
        answer)."""
        headers = {} if retry_after is None else {"retry-after": str(retry_after)}
        with self.lock:
            for _ in range(count):
                self.faults.append(Fault(status, headers, body or {"Error": "fake failure"}))

    # --- balances and the write side -------------------------------------------------------

    def state(self, top: int | None = None) -> State:
        """Balances after block `top` (default: the head)."""
        with self.lock:
            top = self.head if top is None else top
            cached = self._state
            if (
                cached is not None
                and cached[0][0] <= top
                and (self.blocks[cached[0][0]].id == cached[0][1])
            ):
                start, found = cached[0][0] + 1, cached[1].copy()
            else:
                start, found = 0, State()
            for block in self.blocks[start : top + 1]:
                for tx in block.txs:
                    found.apply(tx.effects)
            self._state = ((top, self.blocks[top].id), found)
            return found.copy()

    def trx_balance(self, address: str) -> int:
        return self.state().trx.get(address, 0)

    def token_balance(self, token: str, address: str) -> int:
        return self.state().token(token, address)

    def fund(self, address: str, sun: int) -> str:
        """TRX from outside (a faucet) into the next block: activates the account."""
        return self.send_trx(FAUCET, address, sun)

    def mint(self, token: str, address: str, amount: int) -> str:
        """Tokens from outside into the next block."""
        return self.send_trc20(token, FAUCET, address, amount)

    def included(self, tx_id: str) -> int:
        """How many blocks of the chain hold transaction `tx_id` (at most one, or a bug)."""
        with self.lock:
            return sum(1 for b in self.blocks for t in b.txs if t.id == tx_id)

    def signed_from(self, owner: str) -> list[tuple[int, Tx]]:
        """(block, transaction) of every broadcast transaction of `owner` on the chain."""
        with self.lock:
            return [
                (b.number, t)
                for b in self.blocks
                for t in b.txs
                if t.signed is not None and trontx.decode_raw(t.signed.raw_data).owner == owner
            ]

    def drop_pending(self) -> int:
        """Forget the pending transactions (a node that lost its pool); returns how many."""
        with self.lock:
            count, self.pending = len(self.pending), []
            return count

    def _known(self, tx_id: str) -> bool:
        return any(t.id == tx_id for t in self.pending) or self.included(tx_id) > 0

    def _execute(self, pending: list[Tx], stamp: int) -> list[Tx]:
        """The transactions a new block stamped `stamp` takes: outside ones as they are;
        broadcast ones run against the balances (dropped when expired or unaffordable)."""
        if not any(tx.signed is not None for tx in pending):
            return pending
        state = self.state()
        included = []
        for tx in pending:
            if tx.signed is not None and not self._run(state, tx, stamp):
                continue
            if tx.signed is None:
                state.apply(tx.effects)
            included.append(tx)
        return included

    def _run(self, state: State, tx: Tx, stamp: int) -> bool:
        assert tx.signed is not None
        if tx.expiration <= stamp:
            return False
        ask = trontx.decode_raw(tx.signed.raw_data)
        size = len(tx.signed.transaction_hex) // 2 + 64
        fee, receipt, effects = 0, {}, []
        if ask.token is None and ask.to not in state.trx:
            fee += CREATE_ACCOUNT_FEE  # creating the recipient's account
            receipt["net_fee"] = CREATE_ACCOUNT_FEE - 1_000_000
        elif state.free_net(ask.owner) >= size:
            receipt["net_usage"] = size
            effects.append((NET, ask.owner, size))
        else:
            fee += size * TRANSACTION_FEE
            receipt["net_fee"] = size * TRANSACTION_FEE
        info: dict[str, Any] = {}
        balance = state.trx.get(ask.owner, 0)
        if ask.token is None:
            if balance < ask.amount + fee:
                return False
            effects += [(None, ask.owner, -(ask.amount + fee)), (None, ask.to, ask.amount)]
        else:
            if balance < fee:
                return False
            info["contract_address"] = tron_to_hex(ask.token)
            enough = state.token(ask.token, ask.owner) >= ask.amount
            energy = (
                REVERT_ENERGY
                if not enough
                else TRC20_ENERGY_HOLDER
                if state.token(ask.token, ask.to) > 0
                else TRC20_ENERGY_NEW
            )
            result = "SUCCESS" if enough else "REVERT"
            limit = min(ask.fee_limit, balance - fee)
            if energy * ENERGY_FEE > limit:
                energy, result = limit // ENERGY_FEE, "OUT_OF_ENERGY"
            fee += energy * ENERGY_FEE
            receipt.update(energy_usage_total=energy, energy_fee=energy * ENERGY_FEE, result=result)
            effects.append((None, ask.owner, -fee))
            if result == "SUCCESS":
                effects += [(ask.token, ask.owner, -ask.amount), (ask.token, ask.to, ask.amount)]
                info["log"] = [transfer_log(ask.token, ask.owner, ask.to, ask.amount)]
            else:
                info["result"] = "FAILED"
                info["resMessage"] = result.encode().hex()
        if fee:
            info["fee"] = fee
        info["receipt"] = {k: v for k, v in receipt.items() if v}
        state.apply(effects)
        tx.effects, tx.info = effects, info
        return True

    def broadcast(self, transaction_hex: Any) -> dict[str, Any]:
        """`/wallet/broadcasthex`: the checks java-tron makes before a transaction enters the
        pool (signature against the owner, duplicate, expiration, TaPoS, the accounts)."""
        try:
            signed = trontx.parse_signed(str(transaction_hex))
            ask = trontx.decode_raw(signed.raw_data)
        except ValueError as error:
            return _refused("OTHER_ERROR", "", str(error))
        with self.lock:
            head = self.blocks[-1]
            state = self.state()
            size = len(signed.transaction_hex) // 2 + 64
            refusal = None
            if trontx.signer_of(signed.tx_id, signed.signature) != ask.owner:
                refusal = ("SIGERROR", "Validate signature error: the owner did not sign it")
            elif self._known(signed.tx_id):
                refusal = ("DUP_TRANSACTION_ERROR", "Dup transaction.")
            elif not head.timestamp < ask.expiration <= head.timestamp + MAX_EXPIRATION_MS:
                refusal = ("TRANSACTION_EXPIRATION_ERROR", "Transaction expired")
            elif not any(
                b.id[12:16] == ask.ref_block_bytes and b.id[16:32] == ask.ref_block_hash
                for b in self.blocks[-65536:]
            ):
                refusal = ("TAPOS_ERROR", "Tapos check error.")
            elif ask.owner not in state.trx:
                refusal = ("CONTRACT_VALIDATE_ERROR", f"account [{ask.owner}] does not exist")
            elif ask.token is not None and ask.token not in self.token_contracts:
                refusal = ("CONTRACT_VALIDATE_ERROR", "No contract or not a smart contract")
            elif ask.token is None and state.trx[ask.owner] < ask.amount:
                refusal = (
                    "CONTRACT_VALIDATE_ERROR",
                    "Validate TransferContract error, balance is not sufficient.",
                )
            elif state.free_net(ask.owner) < size and state.trx[ask.owner] < size * TRANSACTION_FEE:
                refusal = ("BANDWITH_ERROR", "Account resource insufficient error.")
            if refusal is not None:
                self.refusals.append((refusal[0], signed.tx_id))
                return _refused(refusal[0], signed.tx_id, refusal[1])
            self.broadcasts[signed.tx_id] += 1
            if self.lose_broadcasts:
                self.lose_broadcasts -= 1  # accepted, then lost: never mined
                return {"result": True, "txid": signed.tx_id}
            self.pending.append(
                Tx(
                    signed.tx_id,
                    _signed_contract(ask),
                    {},
                    ask.timestamp,
                    [],
                    signed,
                    ask.expiration,
                    signed.raw_data.hex(),
                )
            )
            return {"result": True, "txid": signed.tx_id}

    def constant_call(self, params: dict[str, Any], visible: bool) -> dict[str, Any]:
        """`/wallet/triggerconstantcontract`: `balanceOf(address)` and `transfer(address,
        uint256)` of the fake's tokens, run against the head's balances, never recorded."""
        owner = _parse_address(params.get("owner_address"), visible)
        token = _parse_address(params.get("contract_address"), visible)
        if token is None or token not in self.token_contracts:
            return {
                "result": {
                    "code": "CONTRACT_VALIDATE_ERROR",
                    "message": b"No contract or not a smart contract".hex(),
                }
            }
        selector = params.get("function_selector")
        parameter = str(params.get("parameter") or "")
        state = self.state()
        try:
            words = [parameter[i : i + 64] for i in range(0, len(parameter), 64)]
            who = tron_from_hex(words[0][24:])
            value = int(words[1], 16) if len(words) > 1 else 0
        except (IndexError, ValueError):
            return {"result": {"code": "OTHER_ERROR", "message": b"bad parameter".hex()}}
        if selector == "balanceOf(address)":
            return {
                "result": {"result": True},
                "energy_used": 500,
                "constant_result": [format(state.token(token, who), "064x")],
            }
        if selector != "transfer(address,uint256)" or owner is None:
            return {"result": {"code": "OTHER_ERROR", "message": b"unknown function".hex()}}
        if state.token(token, owner) < value:
            return {
                "result": {"result": True, "message": b"REVERT opcode executed".hex()},
                "energy_used": REVERT_ENERGY,
                "constant_result": ["08c379a0" + "0" * 56],
                "transaction": {"ret": [{"ret": "FAILED"}]},
            }
        energy = TRC20_ENERGY_HOLDER if state.token(token, who) > 0 else TRC20_ENERGY_NEW
        return {
            "result": {"result": True},
            "energy_used": energy,
            "constant_result": ["0" * 63 + "1"],
            "transaction": {"ret": [{}]},
        }

    def account(self, params: dict[str, Any], visible: bool, *, resources: bool) -> dict[str, Any]:
        """`/wallet/getaccount` and `/wallet/getaccountresource` (`{}`: no such account)."""
        address = _parse_address(params.get("address"), visible)
        state = self.state()
        if address is None or address not in state.trx:
            return {}
        if resources:
            answer = {"freeNetLimit": FREE_NET_LIMIT, "freeNetUsed": state.net_used[address]}
            answer |= {"TotalNetLimit": 43_200_000_000, "TotalEnergyLimit": 180_000_000_000}
            return {k: v for k, v in answer.items() if v}
        answer = {"address": address if visible else tron_to_hex(address)}
        if state.trx[address]:
            answer["balance"] = state.trx[address]
        return answer

    def transaction_info(self, tx_id: Any, top: int, visible: bool) -> dict[str, Any]:
        for block in self.blocks[: top + 1]:
            for tx in block.txs:
                if tx.id == tx_id:
                    return self.infos_json(
                        Block(block.number, block.id, block.parent, block.timestamp, [tx]), visible
                    )[0]
        return {}

    def transaction(self, tx_id: Any, top: int, visible: bool, pool: bool) -> dict[str, Any]:
        for block in self.blocks[: top + 1]:
            for tx in block.txs:
                if tx.id == tx_id:
                    return _tx_json(tx, block, visible)
        if pool:
            for tx in self.pending:
                if tx.id == tx_id:
                    return _tx_json(tx, self.blocks[-1], visible)
        return {}

    # --- the API's JSON ------------------------------------------------------------------

    def block_json(self, block: Block, visible: bool) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "blockID": block.id,
            "block_header": {
                "raw_data": {
                    "number": block.number,
                    "txTrieRoot": hashlib.sha256(block.id.encode()).hexdigest(),
                    "witness_address": _address(WITNESS, visible),
                    "parentHash": block.parent,
                    "version": 30,
                    "timestamp": block.timestamp,
                },
                "witness_signature": "00" * 65,
            },
        }
        if block.number == 0:
            del answer["block_header"]["raw_data"]["number"]  # java-tron omits a zero number
        if block.txs:
            answer["transactions"] = [_tx_json(tx, block, visible) for tx in block.txs]
        return answer

    def infos_json(self, block: Block, visible: bool) -> list[dict[str, Any]]:
        infos = []
        for tx in block.txs:
            info = {
                "id": tx.id,
                "blockNumber": block.number,
                "blockTimeStamp": block.timestamp,
                "contractResult": [""],
                **tx.info,
            }
            if visible:
                info = _visible_info(info)
            infos.append(info)
        return infos

    def answer(self, path: str, params: dict[str, Any]) -> tuple[int, Any]:
        """(status, JSON) for a request; the HTTP handler's only call into the chain."""
        visible = params.get("visible") in (True, "true")
        with self.lock:
            solid_only = path.startswith("/walletsolidity/")
            top = self.solid if solid_only else self.head
            name = path.rsplit("/", 1)[-1]
            if name == "getnowblock":
                return 200, self.block_json(self.blocks[top], visible)
            if name == "getblockbynum":
                block = self._by_number(params.get("num"), top)
                return 200, {} if block is None else self.block_json(block, visible)
            if name == "getblockbyid":
                wanted = params.get("value")
                block = next((b for b in self.blocks[: top + 1] if b.id == wanted), None)
                return 200, {} if block is None else self.block_json(block, visible)
            if name == "gettransactioninfobyblocknum":
                block = self._by_number(params.get("num"), top)
                return 200, [] if block is None else self.infos_json(block, visible)
            if name == "gettransactioninfobyid":
                return 200, self.transaction_info(params.get("value"), top, visible)
            if name == "gettransactionbyid":
                return 200, self.transaction(params.get("value"), top, visible, not solid_only)
            if solid_only:
                return 404, {"Error": f"no such path {path}"}
            if name == "broadcasthex":
                return 200, self.broadcast(params.get("transaction"))
            if name == "triggerconstantcontract":
                return 200, self.constant_call(params, visible)
            if name in ("getaccount", "getaccountresource"):
                return 200, self.account(params, visible, resources=name == "getaccountresource")
            if name == "getchainparameters":
                return 200, {"chainParameter": CHAIN_PARAMETERS}
        return 404, {"Error": f"no such path {path}"}

    def _by_number(self, value: Any, top: int) -> Block | None:
        try:
            number = int(value)
        except (TypeError, ValueError):
            return None
        return self.blocks[number] if 0 <= number <= top else None

    # --- serving -------------------------------------------------------------------------

    def serve(self, port: int = 0, host: str = "127.0.0.1") -> str:
        """Serve on `host:port` (0: any free port) in a thread; returns the base URL."""
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://{host}:{self._server.server_address[1]}"
        return self.url

    def produce_every(self, seconds: float) -> None:
        """Mine a block every `seconds` in a thread (the sandbox's chain), until `stop`."""

        def produce() -> None:
            while not self._stop.wait(seconds):
                self.mine()

        self._producer = threading.Thread(target=produce, daemon=True)
        self._producer.start()

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def request(self, path: str, headers: dict[str, str], params: dict[str, Any]) -> Fault:
        """One HTTP request: key check, injected faults, then the chain's answer."""
        key = headers.get("tron-pro-api-key")
        with self.lock:
            self.requests[path] += 1
            self.keys_seen.append(key)
            if self.api_keys and key not in self.api_keys:
                return Fault(401, {}, {"Error": "ApiKey not exists"})
            if self.faults:
                return self.faults.popleft()
        status, body = self.answer(path, params)
        return Fault(status, {}, body)


CHAIN_PARAMETERS = [
    {"key": "getMaintenanceTimeInterval", "value": 21_600_000},
    {"key": "getCreateAccountFee", "value": 100_000},
    {"key": "getTransactionFee", "value": TRANSACTION_FEE},
    {"key": "getCreateNewAccountFeeInSystemContract", "value": 1_000_000},
    {"key": "getEnergyFee", "value": ENERGY_FEE},
    {"key": "getFreeNetLimit", "value": FREE_NET_LIMIT},
]
FAUCET = "TPX6HK2NRN4XKRX1JAhbC827bm7gMmy5w1"  # the payer of `fund` and `mint`


def _refused(code: str, tx_id: str, message: str) -> dict[str, Any]:
    return {"result": False, "code": code, "txid": tx_id, "message": message}


def _parse_address(value: Any, visible: bool) -> str | None:
    """An address of a request: base58 with `visible`, hex (`41…`) without."""
    if not isinstance(value, str):
        return None
    try:
        if visible or value.startswith("T"):
            tron_to_hex(value)
            return value
        return tron_from_hex(value)
    except (AddressInvalid, ValueError):
        return None


def _signed_contract(ask: trontx.Transfer) -> dict[str, Any]:
    if ask.token is None:
        value = {
            "amount": ask.amount,
            "owner_address": tron_to_hex(ask.owner),
            "to_address": tron_to_hex(ask.to),
        }
        return _contract("TransferContract", value)
    value = {
        "data": trontx.trc20_transfer_data(ask.to, ask.amount).hex(),
        "owner_address": tron_to_hex(ask.owner),
        "contract_address": tron_to_hex(ask.token),
    }
    return _contract("TriggerSmartContract", value)


def transfer_log(token: str, sender: str, to: str, amount: int) -> dict[str, Any]:
    """A TRC-20 `Transfer` log as transaction info shows it (20-byte hex, no 41, no 0x)."""
    return {
        "address": tron_to_hex(token)[2:],
        "topics": [
            TRANSFER_TOPIC,
            tron_to_hex(sender)[2:].rjust(64, "0"),
            tron_to_hex(to)[2:].rjust(64, "0"),
        ],
        "data": format(amount, "064x"),
    }


def _contract(kind: str, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "parameter": {"value": value, "type_url": f"type.googleapis.com/protocol.{kind}"},
        "type": kind,
    }


def _address(hex_address: str, visible: bool) -> str:
    return tron_from_hex(hex_address) if visible else hex_address


def _tx_json(tx: Tx, block: Block, visible: bool) -> dict[str, Any]:
    contract = json.loads(json.dumps(tx.contract))
    value = contract["parameter"]["value"]
    for name in ("owner_address", "to_address", "contract_address"):
        if name in value:
            value[name] = _address(value[name], visible)
    result = "SUCCESS"
    if tx.info.get("result") == "FAILED":
        result = (tx.info.get("receipt") or {}).get("result", "REVERT")
    raw_data: dict[str, Any] = {
        "contract": [contract],
        "ref_block_bytes": block.parent[12:16],
        "ref_block_hash": block.parent[16:32],
        "expiration": tx.timestamp + 60_000,
        "timestamp": tx.timestamp,
    }
    signature = "00" * 65
    if tx.signed is not None:
        ask = trontx.decode_raw(tx.signed.raw_data)
        raw_data |= {
            "ref_block_bytes": ask.ref_block_bytes,
            "ref_block_hash": ask.ref_block_hash,
            "expiration": ask.expiration,
        }
        if ask.fee_limit:
            raw_data["fee_limit"] = ask.fee_limit
        signature = tx.signed.signature.hex()
    return {
        "ret": [{"contractRet": result}],
        "signature": [signature],
        "txID": tx.id,
        "raw_data": raw_data,
        "raw_data_hex": tx.raw_data_hex,
        "visible": visible,
    }


def _visible_info(info: dict[str, Any]) -> dict[str, Any]:
    info = json.loads(json.dumps(info))
    if "contract_address" in info:
        info["contract_address"] = tron_from_hex(info["contract_address"])
    for entry in info.get("log", []):
        if isinstance(entry.get("address"), str):
            with contextlib.suppress(ValueError):
                entry["address"] = tron_from_hex(entry["address"])
    return info


def _handler(chain: FakeTron) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            params: dict[str, Any] = dict(parse_qsl(parts.query))
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            if raw.strip():
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                if not isinstance(body, dict):
                    return self._send(Fault(400, {}, {"Error": "the body is not a JSON object"}))
                params.update(body)
            headers = {name.lower(): value for name, value in self.headers.items()}
            self._send(chain.request(parts.path, headers, params))

        def _send(self, fault: Fault) -> None:
            payload = json.dumps(fault.body).encode()
            self.send_response(fault.status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            for name, value in fault.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _serve  # noqa: N815

        def log_message(self, *args: Any) -> None:
            pass

    return Handler
