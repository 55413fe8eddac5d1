"""Mainnet-shaped catch-up on an EVM chain: Nespay's scanner working through a backlog of blocks
against a raw loop that fetches the same data, decodes it and inserts the matching payments.

Setup (not timed): a JSON-RPC server in this process (`bench.catchup_mainnet.serve`) serving
`--blocks` (10,000) pre-built blocks of `--per-block` (200) ERC-20 `transfer` transactions
each, with their `Transfer` logs, in an Ethereum node's JSON shapes (hex quantities, 32-byte
hashes, a real `logsBloom` holding the token and the topic); 1 % of the transfers (2 a block:
20,000) go to `--invoices` (100,000) watched deposit addresses, open invoices COPY-loaded on
the seeded `local` network (chain id 31337). A block and its logs are rendered once as byte
templates and stamped per request with the block's number, hash, parent, transaction hashes
and the watched recipients, so the server costs both sides the same and little (anvil cannot
build two million transfers in reasonable time: see `bench_catchup`).

Timed, alternately:

- thing: `NetworkScanner(runtime, "local", …)` in this process, `step()` until it returns 0
  (batches of `SCANNER_BATCH_BLOCKS`, 100: one JSON-RPC batch of the blocks and one
  `eth_getLogs` over them, blocks with their transactions as the scanner asks for them when
  the native coin is watched, the logs checked against the blocks' hashes and blooms; then
  payments, events, invoice states, block hashes and the cursor in one transaction a batch);
- baseline: the same JSON-RPC batch a batch over httpx, orjson-decoded, every log of the
  token matched against the watched addresses in a dict, and the batch's matching payments
  inserted into `payments` in ONE multi-row INSERT per batch (no events, no invoice states).

Goal: the scanner at least 0.5× the baseline's blocks/s, both recording the same payments.
`--max-seconds` caps each side.

`.venv/bin/python -m bench.bench_catchup_evm [--blocks 10000 --per-block 200 --invoices 100000
 --rounds 1 --max-seconds 300]`
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os

import asyncpg
import httpx
import orjson

from bench import catchup_mainnet as mainnet
from bench import chain, harness
from bench.catchup_mainnet import Side
from bench.chain import AMOUNT
from bench.harness import ScratchDatabase
from nespay.chains.evm import TRANSFER_TOPIC, bloom_mask

NETWORK = "local"
CHAIN_ID = 31337
WATCHED_PER_BLOCK = 2
TRANSFER_SELECTOR = "0xa9059cbb"


def block_hash(number: int) -> str:
    return "0x" + format(number, "016x") + hashlib.sha256(f"evm {number}".encode()).hexdigest()[16:]


def word(address: str) -> str:
    return "0x" + "0" * 24 + address.removeprefix("0x")


class Templates:
    """Block `n` (1…blocks), with or without its transactions, and its logs as bytes."""

    def __init__(self, token: str, per_block: int, watched: list[str], blocks: int) -> None:
        self.blocks = blocks
        self.watched = [address.removeprefix("0x") for address in watched]
        payer = "0x" + "ab" * 20
        bloom = bloom_mask(token) | bloom_mask(TRANSFER_TOPIC) | bloom_mask(word(payer))
        txs, logs = [], []
        for slot in range(per_block):
            recipient = (
                f"@W{slot}@" if slot < WATCHED_PER_BLOCK else os.urandom(20).hex()
            )  # the watched ones are stamped per block
            tx_hash = "0x@N16@" + hashlib.sha256(f"slot {slot}".encode()).hexdigest()[16:]
            amount = format(AMOUNT, "064x")
            txs.append(
                {
                    "hash": tx_hash,
                    "blockHash": "@HASH@",
                    "blockNumber": "@NUM@",
                    "transactionIndex": hex(slot),
                    "from": payer,
                    "to": token,
                    "value": "0x0",
                    "gas": "0xfde8",
                    "gasPrice": "0x3b9aca00",
                    "maxFeePerGas": "0x3b9aca00",
                    "maxPriorityFeePerGas": "0x1",
                    "input": TRANSFER_SELECTOR + "0" * 24 + recipient + amount,
                    "nonce": hex(slot),
                    "type": "0x2",
                    "chainId": hex(CHAIN_ID),
                    "v": "0x0",
                    "r": "0x" + "11" * 32,
                    "s": "0x" + "22" * 32,
                }
            )
            logs.append(
                {
                    "address": token,
                    "topics": [TRANSFER_TOPIC, word(payer), "0x" + "0" * 24 + recipient],
                    "data": "0x" + amount,
                    "blockNumber": "@NUM@",
                    "blockHash": "@HASH@",
                    "transactionHash": tx_hash,
                    "transactionIndex": hex(slot),
                    "logIndex": hex(slot),
                    "removed": False,
                }
            )
        header = {
            "number": "@NUM@",
            "hash": "@HASH@",
            "parentHash": "@PARENT@",
            "timestamp": "@TS@",
            "logsBloom": "0x" + format(bloom, "0512x"),
            "miner": "0x" + "00" * 20,
            "gasLimit": "0x1c9c380",
            "gasUsed": "0xc65d40",
            "baseFeePerGas": "0x7",
        }
        self.full = orjson.dumps({**header, "transactions": txs})
        self.hashes = orjson.dumps({**header, "transactions": [tx["hash"] for tx in txs]})
        self.logs = orjson.dumps(logs)[1:-1]  # the array's items: joined over a range

    def stamp(self, template: bytes, number: int) -> bytes:
        out = template.replace(b"@NUM@", hex(number).encode())
        out = out.replace(b"@TS@", hex(1_700_000_000 + number * 12).encode())
        out = out.replace(b"@N16@", format(number, "016x").encode())
        out = out.replace(b"@HASH@", block_hash(number).encode())
        out = out.replace(b"@PARENT@", block_hash(number - 1).encode())
        for slot in range(WATCHED_PER_BLOCK):
            index = ((number - 1) * WATCHED_PER_BLOCK + slot) % len(self.watched)
            out = out.replace(f"@W{slot}@".encode(), self.watched[index].encode())
        return out

    def block(self, number: int, full: bool) -> bytes:
        if number == 0:
            return orjson.dumps(
                {
                    "number": "0x0",
                    "hash": block_hash(0),
                    "parentHash": "0x" + "00" * 32,
                    "timestamp": hex(1_700_000_000),
                    "logsBloom": "0x" + "00" * 256,
                    "transactions": [],
                }
            )
        if not 0 < number <= self.blocks:
            return b"null"
        return self.stamp(self.full if full else self.hashes, number)

    def get_logs(self, query: dict) -> bytes:
        if "blockHash" in query:
            numbers = [int(query["blockHash"][2:18], 16)]
        else:
            numbers = range(int(query["fromBlock"], 16), int(query["toBlock"], 16) + 1)
        return b"[" + b",".join(self.stamp(self.logs, n) for n in numbers if n > 0) + b"]"

    def result(self, method: str, params: list) -> bytes:
        if method == "eth_chainId":
            return orjson.dumps(hex(CHAIN_ID))
        if method == "eth_blockNumber":
            return orjson.dumps(hex(self.blocks))
        if method == "eth_getBlockByNumber":
            return self.block(int(params[0], 16), bool(params[1]))
        if method == "eth_getLogs":
            return self.get_logs(params[0])
        raise ValueError(method)

    def answer(self, path: str, body: bytes) -> bytes:
        calls = orjson.loads(body)
        one = isinstance(calls, dict)
        answers = [
            b'{"jsonrpc":"2.0","id":%s,"result":%s}'
            % (orjson.dumps(call["id"]), self.result(call["method"], call["params"]))
            for call in ([calls] if one else calls)
        ]
        return answers[0] if one else b"[" + b",".join(answers) + b"]"


async def native_watched(db: ScratchDatabase) -> bool:
    """Whether Nespay reads blocks with their transactions on `local` (its native coin is
    offered): the raw loop then asks for the same."""
    conn = await asyncpg.connect(db.dsn)
    try:
        return bool(
            await conn.fetchval(
                "SELECT bool_or(enabled) FROM currencies"
                " WHERE network_code = $1 AND contract IS NULL",
                NETWORK,
            )
        )
    finally:
        await conn.close()


async def scan_raw(
    url: str, db: ScratchDatabase, blocks: int, token: str, full: bool, side: Side, max_s: float
) -> None:
    options = await mainnet.options(db, NETWORK, lambda address: address.removeprefix("0x"))
    async with httpx.AsyncClient(timeout=60) as http:

        async def payments_of(first: int, last: int) -> list[tuple]:
            numbers = range(first, last + 1)
            calls: list[tuple[str, list]] = [
                ("eth_getBlockByNumber", [hex(n), full]) for n in numbers
            ]
            query = {"fromBlock": hex(first), "toBlock": hex(last), "address": [token]}
            calls.append(("eth_getLogs", [{**query, "topics": [TRANSFER_TOPIC]}]))
            body = [
                {"jsonrpc": "2.0", "id": i, "method": method, "params": params}
                for i, (method, params) in enumerate(calls)
            ]
            response = await http.post(
                url, content=orjson.dumps(body), headers={"content-type": "application/json"}
            )
            rows = []
            for entry in orjson.loads(response.content)[-1]["result"]:
                topics = entry["topics"]
                if entry["address"] != token or len(topics) != 3 or topics[0] != TRANSFER_TOPIC:
                    continue
                if (option := options.get(topics[2][-40:])) is not None:
                    index, number = int(entry["logIndex"], 16), int(entry["blockNumber"], 16)
                    sender, amount = "0x" + topics[1][-40:], int(entry["data"], 16)
                    rows.append(
                        option.payment(
                            NETWORK,
                            entry["transactionHash"],
                            index,
                            number,
                            entry["blockHash"],
                            sender,
                            amount,
                        )  # fmt: skip
                    )
            return rows

        await mainnet.scan_raw(db, blocks, side, max_s, payments_of)


def run(args: argparse.Namespace) -> str:
    raw = Side("raw loop (fetch, decode, one INSERT per batch)")
    nespay = Side("Nespay scanner")
    token = "0x" + hashlib.sha256(b"bench evm token").digest()[:20].hex()
    with harness.scratch_database("_catchup_evm") as db:
        harness.create_merchant(db, "Bench EVM Catchup")
        addresses = chain.random_addresses(args.invoices)
        templates = Templates(token, args.per_block, addresses, args.blocks)
        server, url = mainnet.serve(templates.answer)
        harness.enable_usdt_on_local(db, token, rpc_url=url)
        asyncio.run(chain.bulk_invoices(db, addresses, network=NETWORK))
        full = asyncio.run(native_watched(db))
        mainnet.rounds(
            db,
            args.rounds,
            lambda: scan_raw(url, db, args.blocks, token, full, raw, args.max_seconds),
            lambda: mainnet.scan_nespay(db, NETWORK, block_hash(0), nespay, args.max_seconds),
        )
        server.shutdown()
    return mainnet.report(
        "EVM catch-up, mainnet-shaped",
        f"{args.blocks} blocks × {args.per_block} ERC-20 transfers, {WATCHED_PER_BLOCK} a block"
        f" to {args.invoices} watched addresses; blocks read {'with' if full else 'without'} their"
        f" transactions; rounds {args.rounds}, cap {args.max_seconds} s",
        raw,
        nespay,
    )


def argument_parser() -> argparse.ArgumentParser:
    return mainnet.argument_parser(__doc__.split("\n\n")[0])


def main() -> None:
    print(run(argument_parser().parse_args()))


if __name__ == "__main__":
    main()
