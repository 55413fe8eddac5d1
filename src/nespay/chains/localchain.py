"""A local EVM chain for `nespay sandbox` and the tests: find and start anvil, deploy the shipped
test contracts (TestToken, BatchSender), move tokens and ether, mine, snapshot, reorg.

Raw JSON-RPC over one shared synchronous httpx client; nothing here is meant for production
nodes. Transactions go through `eth_sendTransaction` from anvil's unlocked dev accounts
(`sender=None` means account 0 of `eth_accounts`). Unless `wait=False`, a send waits for the
receipt and raises LocalChainError if the transaction reverted; with automine off there is no
receipt until someone mines, so pass `wait=False` there (and `mine()` afterwards).

The contracts are compiled by `node scripts/compile_contracts.mjs` into
`nespay/chains/contracts/<Name>.json` and shipped with the package, so node is not needed here.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from nespay.chains.evm import (
    ALLOWANCE,
    APPROVE,
    BALANCE_OF,
    DECIMALS,
    NAME,
    SYMBOL,
    TRANSFER,
    UINT256_MAX,
    decode_string,
    decode_uint,
    encode_abi,
    encode_call,
    hex_to_int,
    normalize_address,
    selector,
)

ARTIFACTS = Path(__file__).with_name("contracts")
# The source checkout's root (…/src/nespay/chains/localchain.py → …): where `npm ci` puts
# node_modules. In an installed wheel this points somewhere without node_modules; fine.
PROJECT_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_CHAIN_ID = 31337
# batchTransfer(address,address[],uint256[]) on BatchSender
BATCH_TRANSFER = selector("batchTransfer(address,address[],uint256[])")
# Gas bound per BatchSender transfer (measured: 27.2k to a new holder with an unlimited
# allowance; ~30k if the allowance is spent down) and per batch transaction.
_BATCH_GAS_PER_ITEM = 32_000
_BATCH_GAS_BASE = 60_000
DEFAULT_BATCH_CHUNK = 500  # 13.6M gas used: two fit anvil's 30M block


class LocalChainError(Exception):
    pass


# --- JSON-RPC ----------------------------------------------------------------------------------

_client: httpx.Client | None = None
_client_lock = threading.Lock()


def _http() -> httpx.Client:
    global _client
    if _client is None:
        with _client_lock:
            if _client is None:
                _client = httpx.Client(timeout=30.0)
    return _client


def rpc(rpc_url: str, method: str, *params: Any) -> Any:
    """One JSON-RPC call; the `result`, or LocalChainError with the node's error."""
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    response = _http().post(rpc_url, json=body)
    response.raise_for_status()
    answer = response.json()
    if "error" in answer:
        raise LocalChainError(f"{method}: {answer['error']}")
    return answer["result"]


@functools.lru_cache(maxsize=64)
def _accounts(rpc_url: str) -> tuple[str, ...]:
    return tuple(normalize_address(account) for account in rpc(rpc_url, "eth_accounts"))


def accounts(rpc_url: str) -> list[str]:
    """The node's unlocked accounts (anvil: the 10 dev accounts of its mnemonic), lowercase."""
    return list(_accounts(rpc_url))


def _sender(rpc_url: str, sender: str | None) -> str:
    if sender is not None:
        return normalize_address(sender)
    found = _accounts(rpc_url)
    if not found:
        raise LocalChainError(f"{rpc_url} has no unlocked accounts")
    return found[0]


# --- anvil -------------------------------------------------------------------------------------


def find_anvil() -> Path | None:
    """anvil from the project's node_modules (npm package @foundry-rs/anvil), else from PATH."""
    system = {"linux": "linux", "darwin": "darwin", "win32": "win32"}.get(sys.platform)
    machine = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower()
    )
    if system and machine:
        binary = "anvil.exe" if system == "win32" else "anvil"
        for root in dict.fromkeys((PROJECT_ROOT, Path.cwd())):
            candidate = root / "node_modules" / "@foundry-rs" / f"anvil-{system}-{machine}"
            candidate = candidate / "bin" / binary
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    found = shutil.which("anvil")
    return Path(found) if found else None


def start_anvil(
    port: int,
    *,
    block_time: float | None = None,
    chain_id: int = DEFAULT_CHAIN_ID,
    host: str = "127.0.0.1",
    extra_args: Sequence[str] = (),
    log_path: Path | None = None,
    anvil: Path | None = None,
    timeout: float = 15.0,
) -> subprocess.Popen[bytes]:
    """Start anvil on host:port and return once it answers `eth_chainId` with `chain_id`.

    `block_time` (seconds) turns on interval mining; None keeps automine (a block per
    transaction). Output goes to `log_path` if given, else anvil runs `--silent` and what it
    says before it is ready (e.g. why it refused its arguments) ends the LocalChainError. The
    caller stops it (`process.terminate(); process.wait()`)."""
    binary = anvil or find_anvil()
    if binary is None:
        raise LocalChainError("anvil not found: run `npm ci` in the project root or put it on PATH")
    # Else another node on the port could answer the readiness probe before anvil exits.
    _check_port_free(host, port)
    command = [str(binary), "--host", host, "--port", str(port), "--chain-id", str(chain_id)]
    if block_time is not None:
        command += ["--block-time", str(block_time)]
    command += list(extra_args)
    if log_path is None:
        command.append("--silent")
        output: Any = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
    else:
        output = log_path.open("ab")
    try:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            wait_ready(f"http://{host}:{port}", process, chain_id=chain_id, timeout=timeout)
        except LocalChainError as error:
            process.terminate()
            process.wait(timeout=10)
            said = _tail(output) if log_path is None else ""
            raise LocalChainError(f"{error}: {said}" if said else str(error)) from None
        except BaseException:
            process.terminate()
            process.wait(timeout=10)
            raise
    finally:
        output.close()
    return process


def _tail(output: Any, limit: int = 600) -> str:
    output.seek(0)
    return " ".join(output.read().decode(errors="replace").split())[-limit:]


def _check_port_free(host: str, port: int) -> None:
    with socket.socket() as probe:
        # As servers bind: a port whose last node's connections linger in TIME_WAIT (a
        # restart) is free; one something listens on is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise LocalChainError(f"cannot start anvil on {host}:{port}: {error}") from None


def wait_ready(
    rpc_url: str,
    process: subprocess.Popen[bytes] | None = None,
    *,
    chain_id: int | None = None,
    timeout: float = 15.0,
) -> None:
    """Poll `eth_chainId` until the node answers (and, given `chain_id`, is on that chain)."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise LocalChainError(f"anvil exited with code {process.returncode} ({rpc_url})")
        try:
            answered = hex_to_int(rpc(rpc_url, "eth_chainId"))
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise LocalChainError(f"no node answered at {rpc_url} in {timeout}s") from None
            time.sleep(0.05)
            continue
        if chain_id is not None and answered != chain_id:
            raise LocalChainError(f"{rpc_url} is on chain {answered}, not {chain_id}")
        if process is not None and process.poll() is not None:  # someone else owns the port
            raise LocalChainError(f"anvil exited with code {process.returncode} ({rpc_url})")
        return


# --- transactions ------------------------------------------------------------------------------


def send_transaction(
    rpc_url: str, tx: dict[str, Any], *, wait: bool = True, timeout: float = 30.0
) -> str:
    """`eth_sendTransaction` (from account 0 unless tx has "from"); the tx hash. With `wait`,
    waits for the receipt and raises LocalChainError if the transaction reverted."""
    tx = {**tx, "from": _sender(rpc_url, tx.get("from"))}
    tx_hash = rpc(rpc_url, "eth_sendTransaction", tx)
    if wait:
        wait_for_receipt(rpc_url, tx_hash, timeout=timeout)
    return tx_hash


def wait_for_receipt(
    rpc_url: str, tx_hash: str, *, timeout: float = 30.0, check: bool = True
) -> dict[str, Any]:
    """Poll for the receipt; with `check`, LocalChainError unless status is 1."""
    deadline = time.monotonic() + timeout
    while True:
        receipt = rpc(rpc_url, "eth_getTransactionReceipt", tx_hash)
        if receipt is not None:
            if check and receipt.get("status") != "0x1":
                raise LocalChainError(f"transaction {tx_hash} reverted")
            return receipt
        if time.monotonic() > deadline:
            raise LocalChainError(
                f"no receipt for {tx_hash} after {timeout}s: is automine off? mine a block, "
                "or send with wait=False"
            )
        time.sleep(0.02)


@functools.lru_cache(maxsize=8)
def load_artifact(name: str) -> dict[str, Any]:
    """`{"abi": [...], "bytecode": "0x…", ...}` of a shipped contract (TestToken, BatchSender)."""
    path = ARTIFACTS / f"{name}.json"
    if not path.is_file():
        raise LocalChainError(f"no compiled contract {name!r} in {ARTIFACTS}")
    return json.loads(path.read_text())


def constructor_types(artifact: dict[str, Any]) -> list[str]:
    for entry in artifact["abi"]:
        if entry.get("type") == "constructor":
            return [argument["type"] for argument in entry["inputs"]]
    return []


def deploy_contract(
    rpc_url: str, artifact_name: str, *ctor_args: Any, sender: str | None = None
) -> str:
    """Deploy a shipped contract, its constructor arguments ABI-encoded from the artifact's
    ABI; waits for the receipt and returns the new contract's (lowercase) address."""
    artifact = load_artifact(artifact_name)
    data = artifact["bytecode"] + encode_abi(constructor_types(artifact), ctor_args)
    tx_hash = rpc(rpc_url, "eth_sendTransaction", {"from": _sender(rpc_url, sender), "data": data})
    receipt = wait_for_receipt(rpc_url, tx_hash)
    address = receipt.get("contractAddress")
    if not address:
        raise LocalChainError(f"deploying {artifact_name}: no contract address in the receipt")
    return normalize_address(address)


def deploy_test_token(
    rpc_url: str,
    name: str = "Test USD",
    symbol: str = "TUSD",
    decimals: int = 6,
    *,
    sender: str | None = None,
) -> str:
    """A fresh TestToken (anyone can mint) with no supply; its address."""
    return deploy_contract(rpc_url, "TestToken", name, symbol, decimals, sender=sender)


def deploy_batch_sender(rpc_url: str, *, sender: str | None = None) -> str:
    return deploy_contract(rpc_url, "BatchSender", sender=sender)


def transfer_request(token: str, to: str, amount: int, sender: str | None = None) -> dict[str, Any]:
    """The transaction request for `token.transfer(to, amount)` (e.g. for `reorg`)."""
    tx: dict[str, Any] = {
        "to": normalize_address(token),
        "data": encode_call(TRANSFER, to, amount),
    }
    if sender is not None:
        tx["from"] = normalize_address(sender)
    return tx


def mint(
    rpc_url: str, token: str, to: str, amount: int, *, sender: str | None = None, wait: bool = True
) -> str:
    """TestToken.mint(to, amount) (a `Transfer` from the zero address); the tx hash."""
    data = encode_call(selector("mint(address,uint256)"), to, amount)
    return send_transaction(
        rpc_url, {"from": sender, "to": normalize_address(token), "data": data}, wait=wait
    )


def transfer_token(
    rpc_url: str,
    token: str,
    to: str,
    amount: int,
    sender: str | None = None,
    *,
    wait: bool = True,
) -> str:
    """ERC-20 transfer(to, amount) from `sender` (account 0); the tx hash."""
    return send_transaction(
        rpc_url, transfer_request(token, to, amount, _sender(rpc_url, sender)), wait=wait
    )


def approve(
    rpc_url: str,
    token: str,
    spender: str,
    amount: int,
    sender: str | None = None,
    *,
    wait: bool = True,
) -> str:
    data = encode_call(APPROVE, spender, amount)
    return send_transaction(
        rpc_url, {"from": sender, "to": normalize_address(token), "data": data}, wait=wait
    )


def send_native(
    rpc_url: str, to: str, wei: int, sender: str | None = None, *, wait: bool = True
) -> str:
    """A plain ether (native coin) transfer; the tx hash."""
    tx = {"from": sender, "to": normalize_address(to), "value": hex(wei)}
    return send_transaction(rpc_url, tx, wait=wait)


def batch_gas(transfers: int) -> int:
    """The gas limit batch transfers are sent with: an upper bound (a TestToken transfer to a
    new holder uses ~27.2k), so no `eth_estimateGas` round (4-5x faster, and it works while an
    approval is still pending). 500 transfers: 16.06M, under EIP-7825's 2^24 cap."""
    return _BATCH_GAS_BASE + _BATCH_GAS_PER_ITEM * transfers


def batch_transfer(
    rpc_url: str,
    token: str,
    batch_sender: str,
    recipients: Sequence[str],
    amounts: Sequence[int],
    sender: str | None = None,
    *,
    wait: bool = True,
    gas: int | None = None,
) -> str:
    """All of `recipients[i]` get `amounts[i]` of `token` from `sender` in ONE transaction
    through BatchSender (one block, len(recipients) Transfer logs); the tx hash.

    Approves BatchSender for an unlimited amount first if the allowance is short (a separate
    transaction). Sent with `gas` (default `batch_gas(len(recipients))`); a revert surfaces as
    "transaction … reverted" without a reason. Keep a batch within the block gas limit
    (anvil's default is 30M: ~1,000 transfers); `batch_transfer_many` splits bigger lists."""
    if len(recipients) != len(amounts):
        raise ValueError(f"{len(recipients)} recipients for {len(amounts)} amounts")
    owner = _sender(rpc_url, sender)
    _ensure_allowance(rpc_url, token, owner, batch_sender, sum(amounts), wait=wait)
    return _send_batch(
        rpc_url,
        token,
        batch_sender,
        recipients,
        amounts,
        owner,
        gas=gas if gas is not None else batch_gas(len(recipients)),
        wait=wait,
    )


def batch_transfer_many(
    rpc_url: str,
    token: str,
    batch_sender: str,
    recipients: Sequence[str],
    amounts: Sequence[int],
    sender: str | None = None,
    *,
    chunk: int = DEFAULT_BATCH_CHUNK,
    wait: bool = True,
) -> list[str]:
    """`batch_transfer` in transactions of at most `chunk` transfers; the tx hashes.

    One approval (if needed) first; every batch gets the same gas limit (that of a full chunk),
    so with automine off no later batch can fit a block an earlier one did not (see
    `set_automine` for why that matters). 20,000 transfers: 40 transactions, ~2.5 s with
    automine, ~1 s queued with automine off and then `mine()`d (20 full blocks).

    With `wait=False` the batches also get a fee cap high enough for the EIP-1559 base fee to
    rise ~10% for every full block until the last one is mined (anvil drops transactions whose
    cap falls below the base fee). That caps one queue at about 60 full blocks (~60,000
    transfers) on a default anvil: beyond it the dev account cannot cover the fees."""
    if len(recipients) != len(amounts):
        raise ValueError(f"{len(recipients)} recipients for {len(amounts)} amounts")
    if chunk < 1:
        raise ValueError("chunk must be at least 1")
    owner = _sender(rpc_url, sender)
    gas = batch_gas(min(chunk, len(recipients)))
    starts = range(0, len(recipients), chunk)
    # Queued, every transaction (the approval too) carries the same fees: anvil 1.7.1 orders
    # its pool by fee and drops a transaction it reaches before a cheaper lower nonce.
    fees = {} if wait else _queued_fees(rpc_url, len(starts) + 1, gas)
    _ensure_allowance(rpc_url, token, owner, batch_sender, sum(amounts), wait=wait, fees=fees)
    return [
        _send_batch(
            rpc_url,
            token,
            batch_sender,
            recipients[start : start + chunk],
            amounts[start : start + chunk],
            owner,
            gas=gas,
            wait=wait,
            fees=fees,
        )
        for start in starts
    ]


def _queued_fees(rpc_url: str, transactions: int, gas: int) -> dict[str, str]:
    """EIP-1559 fee fields for `transactions` queued transactions of `gas` each that will be
    mined over several full blocks: the base fee rises up to 12.5% per full block."""
    head = get_block(rpc_url)
    if head.get("baseFeePerGas") is None:  # a pre-London hardfork: legacy gas price, no rise
        return {}
    base = hex_to_int(head["baseFeePerGas"])
    per_block = max(1, hex_to_int(head["gasLimit"]) // (gas * 85 // 100))  # ~85% of gas is used
    blocks = -(-transactions // per_block) + 1
    tip = 10**9
    cap = base * 9**blocks // 8**blocks + 2 * tip
    return {"maxFeePerGas": hex(cap), "maxPriorityFeePerGas": hex(tip)}


def _ensure_allowance(
    rpc_url: str,
    token: str,
    owner: str,
    spender: str,
    needed: int,
    *,
    wait: bool,
    fees: dict[str, str] | None = None,
) -> None:
    if allowance(rpc_url, token, owner, spender) < needed:
        data = encode_call(APPROVE, spender, UINT256_MAX)
        tx = {"from": owner, "to": normalize_address(token), "data": data, **(fees or {})}
        send_transaction(rpc_url, tx, wait=wait)


def _send_batch(
    rpc_url: str,
    token: str,
    batch_sender: str,
    recipients: Sequence[str],
    amounts: Sequence[int],
    owner: str,
    *,
    gas: int,
    wait: bool,
    fees: dict[str, str] | None = None,
) -> str:
    data = BATCH_TRANSFER + encode_abi(
        ["address", "address[]", "uint256[]"], [token, list(recipients), list(amounts)]
    )
    tx = {"from": owner, "to": normalize_address(batch_sender), "data": data, "gas": hex(gas)}
    return send_transaction(rpc_url, {**tx, **(fees or {})}, wait=wait)


# --- reads -------------------------------------------------------------------------------------


def call(rpc_url: str, to: str, data: str, block: str | int = "latest") -> str:
    """`eth_call`; the raw result hex."""
    tag = hex(block) if isinstance(block, int) else block
    return rpc(rpc_url, "eth_call", {"to": normalize_address(to), "data": data}, tag)


def token_balance(rpc_url: str, token: str, holder: str, block: str | int = "latest") -> int:
    return decode_uint(call(rpc_url, token, encode_call(BALANCE_OF, holder), block))


def allowance(rpc_url: str, token: str, owner: str, spender: str) -> int:
    return decode_uint(call(rpc_url, token, encode_call(ALLOWANCE, owner, spender)))


def token_metadata(rpc_url: str, token: str) -> tuple[str, str, int]:
    """(name, symbol, decimals) read from the token."""
    return (
        decode_string(call(rpc_url, token, NAME)),
        decode_string(call(rpc_url, token, SYMBOL)),
        decode_uint(call(rpc_url, token, DECIMALS)),
    )


def native_balance(rpc_url: str, holder: str, block: str | int = "latest") -> int:
    tag = hex(block) if isinstance(block, int) else block
    return hex_to_int(rpc(rpc_url, "eth_getBalance", normalize_address(holder), tag))


def has_code(rpc_url: str, address: str) -> bool:
    """Whether a contract is deployed at `address` (on a new chain, a stored one is not)."""
    return rpc(rpc_url, "eth_getCode", normalize_address(address), "latest") not in ("0x", "0x0")


def block_number(rpc_url: str) -> int:
    return hex_to_int(rpc(rpc_url, "eth_blockNumber"))


def get_block(rpc_url: str, block: str | int = "latest", *, full: bool = False) -> dict[str, Any]:
    tag = hex(block) if isinstance(block, int) else block
    found = rpc(rpc_url, "eth_getBlockByNumber", tag, full)
    if found is None:
        raise LocalChainError(f"no block {block}")
    return found


# --- mining and chain surgery (anvil) ----------------------------------------------------------


def mine(rpc_url: str, blocks: int = 1) -> int:
    """Mine `blocks` blocks now (including pending transactions); the new head number."""
    if blocks < 1:
        raise ValueError("mine at least one block")
    rpc(rpc_url, "anvil_mine", hex(blocks))
    return block_number(rpc_url)


def set_automine(rpc_url: str, on: bool) -> None:
    """Automine on: every transaction is mined at once in its own block. Off: transactions wait
    in the pool until `mine()` (or interval mining, if the node has a block time).

    anvil 1.7.1 drops queued transactions silently (observed with automine off):
    - a transaction the miner reaches out of nonce order goes, with the sender's later ones:
      when a block fills up and a later, smaller transaction would still fit, or when a later
      nonce pays a higher fee (the pool is ordered by fee);
    - a transaction whose max fee falls below the base fee goes; the base fee rises ~10% per
      full block, and a default send's cap is only ~2x the base fee at send time.
    So queue one sender's transactions with equal gas limits and equal fees, or mine before
    a block's worth (30M gas) piles up; `batch_transfer_many(wait=False)` does the former."""
    rpc(rpc_url, "evm_setAutomine", on)


def set_time(rpc_url: str, timestamp: int) -> None:
    """`evm_setTime`: the node's clock; the blocks mined next carry times from `timestamp` on."""
    rpc(rpc_url, "evm_setTime", timestamp)


def snapshot(rpc_url: str) -> str:
    """`evm_snapshot`: an id to `revert` to (the whole chain state, blocks included)."""
    return rpc(rpc_url, "evm_snapshot")


def revert(rpc_url: str, snapshot_id: str) -> bool:
    """`evm_revert`: back to the snapshot; blocks mined since are gone (the next block at the
    same height gets a new hash). The snapshot is used up (and later ones are dropped)."""
    return bool(rpc(rpc_url, "evm_revert", snapshot_id))


def rollback(rpc_url: str, depth: int = 1) -> None:
    """`anvil_rollback`: drop the last `depth` blocks, head becomes head - depth, nothing is
    re-mined; their transactions are discarded, not returned to the pool."""
    rpc(rpc_url, "anvil_rollback", depth)


def reorg(
    rpc_url: str,
    depth: int,
    txs: Sequence[tuple[dict[str, Any] | str, int]] = (),
) -> None:
    """`anvil_reorg`: replace the last `depth` blocks with `depth` new ones (same heights, new
    hashes, head number unchanged). The old blocks' transactions are discarded; `txs` are
    (transaction request or signed raw tx hex, index 0..depth-1 of the new block) pairs put
    into the new blocks. Requests without "from" are sent from account 0."""
    if depth < 1:
        raise ValueError("reorg depth must be at least 1")
    pairs: list[list[Any]] = []
    for tx, offset in txs:
        if not 0 <= offset < depth:
            raise ValueError(f"block index {offset} outside 0..{depth - 1}")
        if isinstance(tx, dict):
            # anvil_reorg's default gas limit is too low for a token transfer: it would revert.
            tx = {"gas": hex(200_000), **tx, "from": _sender(rpc_url, tx.get("from"))}
        pairs.append([tx, offset])
    rpc(rpc_url, "anvil_reorg", depth, pairs)
