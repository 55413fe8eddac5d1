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
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import asyncpg
import httpx
import orjson

from bench import chain, harness
from bench.chain import AMOUNT
from bench.harness import ScratchDatabase
from nespay.chains import faketron
from nespay.kit.addresses import tron_from_hex, tron_to_hex

NETWORK = "tron-local"
TOPIC = faketron.TRANSFER_TOPIC
SELECTOR = faketron.TRANSFER_SELECTOR
WATCHED_PER_BLOCK = 2
CONCURRENCY = 8


@dataclass
class Side:
    label: str
    seconds: list[float] = field(default_factory=list)
    blocks: list[int] = field(default_factory=list)
    found: list[int] = field(default_factory=list)

    def blocks_per_s(self) -> float:
        return chain.median([b / s for b, s in zip(self.blocks, self.seconds, strict=True)])


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


def serve(templates: Templates) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            payload = templates.answer(self.path, orjson.loads(raw) if raw.strip() else {})
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


async def options_by_hex(db: ScratchDatabase) -> dict[str, tuple]:
    conn = await asyncpg.connect(db.dsn)
    try:
        rows = await conn.fetch(
            "SELECT o.id, o.invoice_id, o.address, o.currency_id, i.merchant_id"
            " FROM invoice_options o JOIN invoices i ON i.id = o.invoice_id"
            " WHERE o.network_code = $1",
            NETWORK,
        )
    finally:
        await conn.close()
    return {tron_to_hex(r["address"])[2:]: tuple(r) for r in rows}


async def scan_raw(
    url: str, db: ScratchDatabase, blocks: int, batch: int, token: str, side: Side, max_s: float
) -> None:
    options = await options_by_hex(db)
    token_hex = tron_to_hex(token)[2:]
    gate = asyncio.Semaphore(CONCURRENCY)
    conn = await asyncpg.connect(db.dsn)
    async with httpx.AsyncClient(timeout=60) as http:

        async def post(path: str, number: int) -> object:
            async with gate:
                response = await http.post(url + path, content=orjson.dumps({"num": number}))
                return orjson.loads(response.content)

        began, done, matched = time.perf_counter(), 0, 0
        for first in range(1, blocks + 1, batch):
            last = min(blocks, first + batch - 1)
            numbers = range(first, last + 1)
            fetched = await asyncio.gather(
                *(post("/wallet/getblockbynum", n) for n in numbers),
                *(post("/wallet/gettransactioninfobyblocknum", n) for n in numbers),
            )
            found_blocks, found_infos = fetched[: len(numbers)], fetched[len(numbers) :]
            rows = []
            for block, infos in zip(found_blocks, found_infos, strict=True):
                number, block_hash = block["block_header"]["raw_data"]["number"], block["blockID"]
                for info in infos:
                    for index, entry in enumerate(info.get("log") or ()):
                        topics = entry["topics"]
                        if entry["address"] != token_hex or len(topics) != 3 or topics[0] != TOPIC:
                            continue
                        option = options.get(topics[2][-40:])
                        if option is None:
                            continue
                        rows.append(
                            (
                                "pay_" + info["id"][:30] + str(index),
                                option[1],
                                option[0],
                                option[4],
                                NETWORK,
                                option[3],
                                info["id"],
                                index,
                                number,
                                block_hash,
                                tron_from_hex(topics[1][-40:]),
                                option[2],
                                int(entry["data"], 16),
                            )
                        )
            if rows:
                await conn.execute(
                    "INSERT INTO payments (id, invoice_id, option_id, merchant_id, network_code,"
                    " currency_id, tx_hash, log_index, block_number, block_hash, from_address,"
                    " to_address, amount) SELECT * FROM unnest($1::text[], $2::text[],"
                    " $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int[],"
                    " $9::bigint[], $10::text[], $11::text[], $12::text[], $13::numeric[])"
                    " ON CONFLICT DO NOTHING",
                    *[list(column) for column in zip(*rows, strict=True)],
                )
            matched += len(rows)
            done = last
            if time.perf_counter() - began > max_s:
                break
        side.seconds.append(time.perf_counter() - began)
    await conn.close()
    side.blocks.append(done)
    side.found.append(matched)


async def scan_nespay(db: ScratchDatabase, batch: int, side: Side, max_s: float) -> None:
    await chain.set_cursor(db, 0, block_id(0), NETWORK)
    async with chain.scanner(db, NETWORK, scanner_batch_blocks=batch) as scanner:
        began, done = time.perf_counter(), 0
        while (count := await scanner.step()) > 0:
            done += count
            if time.perf_counter() - began > max_s:
                break
        side.seconds.append(time.perf_counter() - began)
    side.blocks.append(done)
    conn = await asyncpg.connect(db.dsn)
    try:
        side.found.append(
            await conn.fetchval("SELECT count(*) FROM payments WHERE network_code = $1", NETWORK)
        )
    finally:
        await conn.close()


async def clear(db: ScratchDatabase) -> None:
    await chain.reset_payments(db)


def run(args: argparse.Namespace) -> str:
    from bench.bench_detection_tron import enable_tron_local, tron_addresses

    raw, nespay = Side("raw loop (fetch, decode, one INSERT per batch)"), Side("Nespay scanner")
    token = tron_from_hex(hashlib.sha256(b"bench token").digest()[:20].hex())
    with harness.scratch_database("_catchup_tron") as db:
        harness.create_merchant(db, "Bench Tron Catchup")
        addresses = tron_addresses(args.invoices)
        templates = Templates(
            token, args.per_block, [tron_to_hex(a)[2:] for a in addresses], args.blocks
        )
        server, url = serve(templates)
        enable_tron_local(db, token, url)
        asyncio.run(chain.bulk_invoices(db, addresses, network=NETWORK, chain_family="tron"))
        for _ in range(args.rounds):
            asyncio.run(scan_raw(url, db, args.blocks, 100, token, raw, args.max_seconds))
            asyncio.run(clear(db))
            asyncio.run(scan_nespay(db, 100, nespay, args.max_seconds))
            asyncio.run(clear(db))
        server.shutdown()
    ratio = nespay.blocks_per_s() / raw.blocks_per_s()
    lines = [
        "### Tron catch-up, mainnet-shaped",
        "",
        chain.machine_line(),
        f"{args.blocks} blocks × "
        f"{args.per_block} TRC-20 transfers, {WATCHED_PER_BLOCK} a block to "
        f"{args.invoices} watched addresses; rounds {args.rounds}, cap {args.max_seconds} s",
        "",
        "| side | blocks | s | blocks/s | payments |",
        "| --- | --- | --- | --- | --- |",
    ]
    for side in (raw, nespay):
        lines.append(
            f"| {side.label} | {chain.median(side.blocks):.0f} | {chain.median(side.seconds):.2f}"
            f" | {side.blocks_per_s():.1f} | {chain.median(side.found):.0f} |"
        )
    verdict = "met" if ratio >= 0.5 else "missed"
    lines += ["", f"Nespay / raw: **{ratio:.2f}×** (goal ≥ 0.5×: **{verdict}**)"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=10_000)
    parser.add_argument("--per-block", type=int, default=200)
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    print(run(parser.parse_args()))


if __name__ == "__main__":
    main()
