"""Mainnet-shaped catch-up on Tron: Nespay's scanner working through a backlog of blocks
against a raw loop that fetches the same data, decodes it and inserts the matching payments.

Setup (not timed): a TronGrid-shaped HTTP server in this process serving pre-built blocks:
`--blocks` (10,000) blocks of `--per-block` (200) TRC-20 `transfer` calls each, with their
transaction infos and `Transfer` logs, in the fake TronGrid's JSON shapes
(`nespay.chains.faketron`: the same keys, hex `41…` addresses, 20-byte log addresses); 1 % of
the transfers (2 a block: 20,000) go to `--invoices` (100,000) watched deposit addresses, open
invoices COPY-loaded on the seeded `tron-local` network. The blocks are rendered once as
byte templates (a block's JSON is ~150 KB) and stamped per request with the block's number,
id, parent, transaction ids and the watched recipients, so the server costs both sides the
same and little.

Timed, alternately:

- thing: `NetworkScanner(runtime, "tron-local", …)` in this process, `step()` until it returns
  0 (batches of `SCANNER_BATCH_BLOCKS`, 100: each block and, for blocks with transactions, its
  infos, 8 requests in flight; infos checked against the block's transactions; payments,
  events, invoice states, block hashes and the cursor in one transaction per batch);
- baseline: the same two requests per block (8 in flight), orjson-decoded, every log of the
  token matched against the watched addresses in a dict, and the batch's matching payments
  inserted into `payments` in ONE multi-row INSERT per batch (no events, no invoice states).

Goal: the scanner at least 0.5× the baseline's blocks/s. `--max-seconds` caps each side.

`.venv/bin/python -m bench.bench_catchup_tron [--blocks 10000 --per-block 200 --invoices 100000
 --rounds 1 --max-seconds 300]`
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os

import httpx
import orjson

from bench import catchup_mainnet as mainnet
from bench import chain, harness
from bench.catchup_mainnet import Side
from bench.chain import AMOUNT
from bench.harness import ScratchDatabase
from nespay.chains import faketron
from nespay.kit.addresses import tron_from_hex, tron_to_hex

NETWORK = "tron-local"
TOPIC = faketron.TRANSFER_TOPIC
SELECTOR = faketron.TRANSFER_SELECTOR
WATCHED_PER_BLOCK = 2
CONCURRENCY = 8


def block_id(number: int) -> str:
    if number == 0:
        return faketron.genesis_id()
    return format(number, "016x") + hashlib.sha256(f"bench {number}".encode()).hexdigest()[16:]


class Templates:
    """Block `n` (1…blocks) and its infos as bytes: placeholders stamped per request."""

    def __init__(self, token: str, per_block: int, watched_hex: list[str], blocks: int) -> None:
        self.blocks = blocks
        self.watched_hex = watched_hex
        token_hex = tron_to_hex(token)
        payer = "41" + "ab" * 20
        others = [os.urandom(20).hex() for _ in range(per_block)]
        txs, infos = [], []
        for slot in range(per_block):
            recipient = f"@W{slot}@" if slot < WATCHED_PER_BLOCK else others[slot]
            tx_id = "@N16@" + hashlib.sha256(f"slot {slot}".encode()).hexdigest()[16:]
            value = {
                "data": SELECTOR + "0" * 24 + recipient + format(AMOUNT, "064x"),
                "owner_address": payer,
                "contract_address": token_hex,
            }
            txs.append(
                {
                    "ret": [{"contractRet": "SUCCESS"}],
                    "signature": ["00" * 65],
                    "txID": tx_id,
                    "raw_data": {
                        "contract": [faketron._contract("TriggerSmartContract", value)],
                        "ref_block_bytes": "0000",
                        "ref_block_hash": "00" * 8,
                        "expiration": 1,
                        "timestamp": 1,
                    },
                    "raw_data_hex": "0a",
                    "visible": False,
                }
            )
            infos.append(
                {
                    "id": tx_id,
                    "blockNumber": "@NUM@",
                    "blockTimeStamp": "@TS@",
                    "contractResult": [""],
                    "contract_address": token_hex,
                    "receipt": {
                        "energy_usage_total": 64285,
                        "net_usage": 345,
                        "result": "SUCCESS",
                    },
                    "log": [
                        {
                            "address": token_hex[2:],
                            "topics": [TOPIC, "0" * 24 + payer[2:], "0" * 24 + recipient],
                            "data": format(AMOUNT, "064x"),
                        }
                    ],
                }
            )
        block = {
            "blockID": "@BID@",
            "block_header": {
                "raw_data": {
                    "number": "@NUM@",
                    "txTrieRoot": "00" * 32,
                    "witness_address": faketron.WITNESS,
                    "parentHash": "@PARENT@",
                    "version": 30,
                    "timestamp": "@TS@",
                },
                "witness_signature": "00" * 65,
            },
            "transactions": txs,
        }
        # Numbers are JSON numbers: the quoted placeholders are replaced with the quotes.
        self.block = json.dumps(block).encode()
        self.infos = json.dumps(infos).encode()

    def stamp(self, template: bytes, number: int) -> bytes:
        out = template.replace(b'"@NUM@"', str(number).encode())
        out = out.replace(b'"@TS@"', str(1_700_000_000_000 + number * 3000).encode())
        out = out.replace(b"@N16@", format(number, "016x").encode())
        out = out.replace(b"@BID@", block_id(number).encode())
        out = out.replace(b"@PARENT@", block_id(number - 1).encode())
        for slot in range(WATCHED_PER_BLOCK):
            index = ((number - 1) * WATCHED_PER_BLOCK + slot) % len(self.watched_hex)
            out = out.replace(f"@W{slot}@".encode(), self.watched_hex[index].encode())
        return out

    def genesis(self) -> bytes:
        return json.dumps(
            {
                "blockID": block_id(0),
                "block_header": {
                    "raw_data": {"parentHash": "00" * 32, "timestamp": 1_700_000_000_000}
                },
            }
        ).encode()

    def answer(self, path: str, body: dict) -> bytes:
        name = path.rsplit("/", 1)[-1]
        if name == "getnowblock":
            return self.stamp(self.block, self.blocks)
        number = int(body.get("num", -1))
        if not 0 <= number <= self.blocks:
            return b"{}" if name == "getblockbynum" else b"[]"
        if name == "getblockbynum":
            return self.genesis() if number == 0 else self.stamp(self.block, number)
        if name == "gettransactioninfobyblocknum":
            return b"[]" if number == 0 else self.stamp(self.infos, number)
        return b'{"Error": "unknown path"}'


async def scan_raw(
    url: str, db: ScratchDatabase, blocks: int, token: str, side: Side, max_s: float
) -> None:
    options = await mainnet.options(db, NETWORK, lambda address: tron_to_hex(address)[2:])
    token_hex = tron_to_hex(token)[2:]
    gate = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(timeout=60) as http:

        async def post(path: str, number: int) -> object:
            async with gate:
                response = await http.post(url + path, content=orjson.dumps({"num": number}))
                return orjson.loads(response.content)

        async def payments_of(first: int, last: int) -> list[tuple]:
            numbers = range(first, last + 1)
            fetched = await asyncio.gather(
                *(post("/wallet/getblockbynum", n) for n in numbers),
                *(post("/wallet/gettransactioninfobyblocknum", n) for n in numbers),
            )
            rows = []
            for block, infos in zip(fetched[: len(numbers)], fetched[len(numbers) :], strict=True):
                number, block_hash = block["block_header"]["raw_data"]["number"], block["blockID"]
                for info in infos:
                    for index, entry in enumerate(info.get("log") or ()):
                        topics = entry["topics"]
                        if entry["address"] != token_hex or len(topics) != 3 or topics[0] != TOPIC:
                            continue
                        if (option := options.get(topics[2][-40:])) is not None:
                            sender = tron_from_hex(topics[1][-40:])
                            amount = int(entry["data"], 16)
                            rows.append(
                                option.payment(
                                    NETWORK, info["id"], index, number, block_hash, sender, amount
                                )
                            )
            return rows

        await mainnet.scan_raw(db, blocks, side, max_s, payments_of)


def run(args: argparse.Namespace) -> str:
    from bench.bench_detection_tron import enable_tron_local, tron_addresses

    raw = Side("raw loop (fetch, decode, one INSERT per batch)")
    nespay = Side("Nespay scanner")
    token = tron_from_hex(hashlib.sha256(b"bench token").digest()[:20].hex())
    with harness.scratch_database("_catchup_tron") as db:
        harness.create_merchant(db, "Bench Tron Catchup")
        addresses = tron_addresses(args.invoices)
        templates = Templates(
            token, args.per_block, [tron_to_hex(a)[2:] for a in addresses], args.blocks
        )
        server, url = mainnet.serve(
            lambda path, raw_body: templates.answer(
                path, orjson.loads(raw_body) if raw_body.strip() else {}
            )
        )
        enable_tron_local(db, token, url)
        asyncio.run(chain.bulk_invoices(db, addresses, network=NETWORK, chain_family="tron"))
        mainnet.rounds(
            db,
            args.rounds,
            lambda: scan_raw(url, db, args.blocks, token, raw, args.max_seconds),
            lambda: mainnet.scan_nespay(db, NETWORK, block_id(0), nespay, args.max_seconds),
        )
        server.shutdown()
    return mainnet.report(
        "Tron catch-up, mainnet-shaped",
        f"{args.blocks} blocks × {args.per_block} TRC-20 transfers, {WATCHED_PER_BLOCK} a block"
        f" to {args.invoices} watched addresses; rounds {args.rounds}, cap {args.max_seconds} s",
        raw,
        nespay,
    )


def argument_parser() -> argparse.ArgumentParser:
    return mainnet.argument_parser(__doc__.split("\n\n")[0])


def main() -> None:
    print(run(argument_parser().parse_args()))


if __name__ == "__main__":
    main()
