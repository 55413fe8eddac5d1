"""What the two mainnet-shaped catch-up benchmarks (`bench_catchup_evm`, `bench_catchup_tron`)
share: a node-shaped HTTP server in this process answering from byte templates, the two timed
sides (Nespay's scanner; a raw loop that inserts the matching payments in ONE multi-row INSERT
per batch) and the report.

The server runs in this process for both sides alike: what it costs (stamping a block's
template, writing it out) is paid by both, and neither pays a network hop.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

import asyncpg

from bench import chain
from bench.harness import ScratchDatabase

BATCH = 100  # blocks per batch, both sides (Nespay's SCANNER_BATCH_BLOCKS default)

# One INSERT of a batch's payments: the baseline's only write.
INSERT_PAYMENTS = (
    "INSERT INTO payments (id, invoice_id, option_id, merchant_id, network_code,"
    " currency_id, tx_hash, log_index, block_number, block_hash, from_address,"
    " to_address, amount) SELECT * FROM unnest($1::text[], $2::text[],"
    " $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int[],"
    " $9::bigint[], $10::text[], $11::text[], $12::text[], $13::numeric[])"
    " ON CONFLICT DO NOTHING"
)


@dataclass
class Side:
    label: str
    seconds: list[float] = field(default_factory=list)
    blocks: list[int] = field(default_factory=list)
    found: list[int] = field(default_factory=list)

    def blocks_per_s(self) -> float:
        return chain.median([b / s for b, s in zip(self.blocks, self.seconds, strict=True)])


@dataclass(frozen=True)
class Option:
    """An open invoice's deposit option, as the raw loop needs it to write a payment."""

    id: str
    invoice_id: str
    address: str
    currency_id: str
    merchant_id: str

    def payment(
        self,
        network: str,
        tx_hash: str,
        log_index: int,
        number: int,
        block_hash: str,
        sender: str,
        amount: int,
    ) -> tuple:
        return (
            f"pay_{tx_hash[:34]}{log_index}",
            self.invoice_id,
            self.id,
            self.merchant_id,
            network,
            self.currency_id,
            tx_hash,
            log_index,
            number,
            block_hash,
            sender,
            self.address,
            amount,
        )


def serve(answer: Callable[[str, bytes], bytes]) -> tuple[ThreadingHTTPServer, str]:
    """A threading HTTP/1.1 server (keep-alive) answering every POST with `answer(path,
    body)` as JSON."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            payload = answer(self.path, raw)
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


async def options(db: ScratchDatabase, network: str, key: Callable[[str], str]) -> dict:
    """The network's deposit options by `key(address)` (the form the chain's logs carry)."""
    conn = await asyncpg.connect(db.dsn)
    try:
        rows = await conn.fetch(
            "SELECT o.id, o.invoice_id, o.address, o.currency_id, i.merchant_id"
            " FROM invoice_options o JOIN invoices i ON i.id = o.invoice_id"
            " WHERE o.network_code = $1",
            network,
        )
    finally:
        await conn.close()
    return {key(r["address"]): Option(*r) for r in rows}


async def insert_payments(conn: asyncpg.Connection, rows: Sequence[tuple]) -> None:
    if rows:
        await conn.execute(INSERT_PAYMENTS, *[list(column) for column in zip(*rows, strict=True)])


async def scan_raw(
    db: ScratchDatabase,
    blocks: int,
    side: Side,
    max_s: float,
    payments_of: Callable[[int, int], Awaitable[list[tuple]]],
) -> None:
    """The baseline's loop: batch after batch, `payments_of(first, last)` (fetch, decode,
    match), then those payments in one INSERT."""
    conn = await asyncpg.connect(db.dsn)
    try:
        began, done, matched = time.perf_counter(), 0, 0
        for first in range(1, blocks + 1, BATCH):
            last = min(blocks, first + BATCH - 1)
            rows = await payments_of(first, last)
            await insert_payments(conn, rows)
            matched += len(rows)
            done = last
            if time.perf_counter() - began > max_s:
                break
        side.seconds.append(time.perf_counter() - began)
    finally:
        await conn.close()
    side.blocks.append(done)
    side.found.append(matched)


async def scan_nespay(
    db: ScratchDatabase, network: str, genesis: str, side: Side, max_s: float
) -> None:
    """Nespay's `NetworkScanner` from block 0 (`genesis`) to the head, `step()` by `step()`;
    the payments it recorded are counted from the table."""
    await chain.set_cursor(db, 0, genesis, network)
    async with chain.scanner(db, network, scanner_batch_blocks=BATCH) as scanner:
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
            await conn.fetchval("SELECT count(*) FROM payments WHERE network_code = $1", network)
        )
    finally:
        await conn.close()


def rounds(db: ScratchDatabase, rounds: int, raw: Callable, nespay: Callable) -> None:
    """`rounds` times: the raw loop, then Nespay, each from nothing paid."""
    for _ in range(rounds):
        for side in (raw, nespay):
            asyncio.run(side())
            asyncio.run(chain.reset_payments(db))


def report(title: str, shape: str, raw: Side, nespay: Side) -> str:
    ratio = nespay.blocks_per_s() / raw.blocks_per_s()
    lines = [
        f"### {title}",
        "",
        chain.machine_line(),
        shape,
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
    if raw.found != nespay.found:
        lines.append(f"**The sides recorded different payments: {raw.found} vs {nespay.found}**")
    return "\n".join(lines)


def argument_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--blocks", type=int, default=10_000)
    parser.add_argument("--per-block", type=int, default=200)
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    return parser
