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

from nespay.kit.addresses import tron_from_hex, tron_to_hex

TRANSFER_TOPIC = "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
TRANSFER_SELECTOR = "a9059cbb"
BLOCK_TIME_MS = 3_000
SANDBOX_PORT = 8090  # java-tron's FullNode HTTP port; the seeded `tron-local` endpoint
DEFAULT_SOLID_LAG = 19  # mainnet solidifies about 19 blocks (~1 minute) behind the head
WITNESS = "41" + "be" * 20


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


@dataclass
class Block:
    number: int
    id: str
    parent: str
    timestamp: int
    txs: list[Tx] = field(default_factory=list)


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
        return tron_from_hex(digest[:20].hex())

    def send_trx(self, sender: str, to: str, amount: int) -> str:
        """A TRX transfer (sun) into the next block; returns its transaction id."""
        value = {
            "amount": amount,
            "owner_address": tron_to_hex(sender),
            "to_address": tron_to_hex(to),
        }
        return self._queue(_contract("TransferContract", value), {"receipt": {"net_usage": 267}})

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
        return self._queue(_contract("TriggerSmartContract", value), info)

    def emit(self, contract: str, logs: list[dict[str, Any]], sender: str) -> str:
        """A contract call whose receipt carries `logs` as given (for logs of any shape)."""
        value = {
            "data": "00",
            "owner_address": tron_to_hex(sender),
            "contract_address": tron_to_hex(contract),
        }
        info = {"contract_address": tron_to_hex(contract), "receipt": {"result": "SUCCESS"}}
        return self._queue(_contract("TriggerSmartContract", value), {**info, "log": logs})

    def _queue(self, contract: dict[str, Any], info: dict[str, Any]) -> str:
        with self.lock:
            serial = next(self._counter)
            tx_id = hashlib.sha256(json.dumps([serial, contract]).encode()).hexdigest()
            self.pending.append(Tx(tx_id, contract, info, int(time.time() * 1000)))
            return tx_id

    def mine(self, count: int = 1) -> int:
        """Produce `count` blocks (the first takes every pending transaction); returns the
        new head. The solidified head follows `solid_lag` blocks behind."""
        with self.lock:
            for _ in range(count):
                parent = self.blocks[-1]
                number = parent.number + 1
                stamp = max(parent.timestamp + BLOCK_TIME_MS, int(time.time() * 1000))
                seed = f"{parent.id}:{number}:{self._fork}:{[t.id for t in self.pending]}"
                block_id = format(number, "016x") + hashlib.sha256(seed.encode()).hexdigest()[16:]
                self.blocks.append(Block(number, block_id, parent.id, stamp, self.pending))
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
    result = "REVERT" if tx.info.get("result") == "FAILED" else "SUCCESS"
    return {
        "ret": [{"contractRet": result}],
        "signature": ["00" * 65],
        "txID": tx.id,
        "raw_data": {
            "contract": [contract],
            "ref_block_bytes": block.parent[12:16],
            "ref_block_hash": block.parent[16:32],
            "expiration": tx.timestamp + 60_000,
            "timestamp": tx.timestamp,
        },
        "raw_data_hex": "0a",
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
