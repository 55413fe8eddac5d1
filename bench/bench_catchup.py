"""Catch-up: Nespay's scanner working through a backlog of blocks after downtime, against a raw
loop over the same blocks.

Setup (not timed): an anvil of its own; 100,000 open invoices (invoices + invoice_options rows,
COPY-loaded, each with its own random deposit address) on the seeded `local` network pointed at
that anvil; 20,000 of those addresses then receive one 10 USDT transfer each, spread over
10,000 blocks (automine off; 400 BatchSender transactions of 50 transfers, each followed by
`anvil_mine 25`: a block with 50 transfers, then 24 empty ones; every 100-block batch of the
scanner holds 200 transfers).

Timed, alternately, round after round:

- thing: `NetworkScanner(runtime, "local", owner, httpx.AsyncClient())` in this process, cursor
  set to the block before the first transfer, `step()` until it returns 0 (batches of
  `SCANNER_BATCH_BLOCKS`, default 100: blocks with their transactions and the token's logs in
  one JSON-RPC batch, then payments, events, confirmations, invoice states, block hashes and
  the cursor in one transaction per batch);
- baseline (the goal's): `eth_getLogs` over the same blocks in the same batch size, Transfer
  logs decoded by hand and matched against the 100,000 addresses in a Python set; no database;
- informational: the scanner's own JSON-RPC batch (every block with its transactions plus
  the logs) decoded by hand, no database: what the node and JSON cost the scanner.

Between rounds the payments, events and invoice states are reset (then VACUUM ANALYZE).
Goal: the scanner at least 0.5x the baseline's blocks/s.

Building the chain takes ~3 minutes on anvil 1.7.1 (see FAST_MINING) and Nespay's scan is
stopped after `--max-seconds` (80): about 5 minutes in all. Nespay's rate is then over the
blocks it did, the early (faster) part of the range: the table also lists its rate per 1,000
blocks.

`.venv/bin/python -m bench.bench_catchup [--rounds 1] [--max-seconds 80] [--blocks 10000
 --transfers 20000 --invoices 100000]`
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field

import httpx
import orjson

from bench import chain, harness
from bench.chain import AMOUNT, Chain
from bench.harness import ScratchDatabase

# anvil 1.7.1 mines ever slower as the chain grows: it rebuilds its whole state trie for every
# block, Prague's EIP-2935 history contract grows with every block, and kept historical states
# are cloned (fixed upstream after 1.7.1, foundry-rs/foundry#15715). 10,000 empty blocks took
# ~105 s here; Cancun (no EIP-2935) without kept historical states, 0.7 s. Nothing the scanner
# reads changes. What remains grows with the token's storage (one slot per holder): building
# this chain still takes ~3 minutes, which is why Nespay's scan is capped (--max-seconds).
FAST_MINING = ("--hardfork", "cancun", "--prune-history")
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
PER_TX = 50  # transfers per BatchSender transaction, one transaction per mined group


@dataclass
class Side:
    label: str
    seconds: list[float] = field(default_factory=list)
    blocks: list[int] = field(default_factory=list)  # blocks scanned (fewer if cut off)
    cpu_s: list[float] = field(default_factory=list)  # this process's CPU time
    node_cpu_s: list[float] = field(default_factory=list)  # anvil's CPU time
    db_cpu_s: list[float] = field(default_factory=list)  # PostgreSQL backends' CPU time
    found: list[int] = field(default_factory=list)  # transfers matched (a sanity check)
    progress: list[tuple[int, float]] = field(default_factory=list)  # (blocks, s), last round

    def blocks_per_s(self) -> float:
        return chain.median([b / s for b, s in zip(self.blocks, self.seconds, strict=True)])


def build_chain(node: Chain, recipients: list[str], blocks: int) -> tuple[int, int]:
    """The transfers, `len(recipients) / PER_TX` groups spread evenly over `blocks` blocks.
    Returns (start, end): the block before the first group, and the last block."""
    from nespay.chains import localchain

    groups = -(-len(recipients) // PER_TX)
    per_group = blocks // groups
    if per_group < 1 or blocks % groups:
        raise SystemExit(f"{blocks} blocks do not divide into {groups} groups of transfers")
    batch_sender = localchain.deploy_batch_sender(node.url)
    localchain.approve(node.url, node.token, batch_sender, localchain.UINT256_MAX)
    start = localchain.block_number(node.url)
    localchain.set_automine(node.url, False)
    try:
        for first in range(0, len(recipients), PER_TX):
            group = recipients[first : first + PER_TX]
            localchain.batch_transfer(
                node.url, node.token, batch_sender, group, [AMOUNT] * len(group), wait=False
            )
            localchain.rpc(node.url, "anvil_mine", hex(per_group))
    finally:
        localchain.set_automine(node.url, True)
    end = localchain.block_number(node.url)
    if end - start != blocks:
        raise SystemExit(f"expected {blocks} blocks, the chain has {end - start}")
    return start, end


async def scan_nespay(
    db: ScratchDatabase, node: Chain, start: int, batch: int, side: Side, max_s: float
) -> int:
    """Step until at the head, or until `max_s` has passed (the rate is then over the blocks
    scanned so far)."""
    start_hash = chain.block_hash(node.url, start)
    await chain.set_cursor(db, start, start_hash)
    async with chain.scanner(db, scanner_batch_blocks=batch) as scanner:
        db_before = await chain.backend_cpu_s(db)
        cpu, ticks, began = time.process_time(), node.cpu_ticks(), time.perf_counter()
        total, side.progress = 0, []
        while (count := await scanner.step()) > 0:
            total += count
            side.progress.append((total, time.perf_counter() - began))
            if time.perf_counter() - began > max_s:
                break
        side.seconds.append(time.perf_counter() - began)
        side.cpu_s.append(time.process_time() - cpu)
        side.node_cpu_s.append((node.cpu_ticks() - ticks) * harness.TICK_US / 1e6)
        side.db_cpu_s.append(await chain.backend_cpu_s(db) - db_before)
        side.blocks.append(total)
    side.found.append(await _payments(db))
    return total


async def _payments(db: ScratchDatabase) -> int:
    import asyncpg

    conn = await asyncpg.connect(db.dsn)
    try:
        return await conn.fetchval("SELECT count(*) FROM payments")
    finally:
        await conn.close()


async def scan_raw(
    node: Chain, start: int, end: int, batch: int, watched: set[str], side: Side, *, blocks: bool
) -> None:
    """The baseline loop: per batch one JSON-RPC request (eth_getLogs; with `blocks`, the
    scanner's whole batch), logs decoded by hand, recipients matched in a set."""
    log_filter = {"address": [node.token], "topics": [TRANSFER_TOPIC]}
    async with httpx.AsyncClient(timeout=30) as http:
        cpu, ticks, began = time.process_time(), node.cpu_ticks(), time.perf_counter()
        matched = 0
        for first in range(start + 1, end + 1, batch):
            last = min(end, first + batch - 1)
            calls = [
                {"jsonrpc": "2.0", "id": 0, "method": "eth_getLogs",
                 "params": [{**log_filter, "fromBlock": hex(first), "toBlock": hex(last)}]},
            ]  # fmt: skip
            if blocks:
                calls += [
                    {"jsonrpc": "2.0", "id": n + 1, "method": "eth_getBlockByNumber",
                     "params": [hex(number), True]}
                    for n, number in enumerate(range(first, last + 1))
                ]  # fmt: skip
            response = await http.post(
                node.url,
                content=orjson.dumps(calls if blocks else calls[0]),
                headers={"content-type": "application/json"},
            )
            answer = orjson.loads(response.content)
            logs = (answer[0] if blocks else answer)["result"]
            for entry in logs:
                topics = entry["topics"]
                if len(topics) == 3 and topics[0] == TRANSFER_TOPIC:
                    recipient = "0x" + topics[2][-40:]
                    int(entry["data"], 16)  # the amount, decoded as the scanner does
                    matched += recipient in watched
        side.seconds.append(time.perf_counter() - began)
        side.cpu_s.append(time.process_time() - cpu)
        side.node_cpu_s.append((node.cpu_ticks() - ticks) * harness.TICK_US / 1e6)
        side.db_cpu_s.append(0.0)
        side.blocks.append(end - start)
        side.found.append(matched)


def run(args: argparse.Namespace) -> str:
    invoices, transfers, blocks, rounds = args.invoices, args.transfers, args.blocks, args.rounds
    batch = args.batch
    print(
        f"catch-up: {blocks:,} blocks, {transfers:,} transfers to {invoices:,} watched addresses,"
        f" batches of {batch}, {rounds} round(s)"
    )
    with harness.scratch_database("_catchup") as db, chain.anvil(extra_args=FAST_MINING) as node:
        harness.create_merchant(db, "Bench Catchup")
        chain.register(db, node)
        addresses = chain.random_addresses(invoices)
        loaded = asyncio.run(chain.bulk_invoices(db, addresses))
        print(f"  loaded {invoices:,} open invoices in {loaded:.1f}s")
        began = time.perf_counter()
        start, end = build_chain(node, addresses[:transfers], blocks)
        print(f"  mined blocks {start + 1:,}..{end:,} in {time.perf_counter() - began:.1f}s")
        watched = set(addresses)
        raw = Side("raw eth_getLogs + decode, no DB")
        full = Side("raw: scanner's RPC batch + decode, no DB")
        nespay = Side("nespay NetworkScanner.step()")
        for round_no in range(1, rounds + 1):
            if round_no > 1:
                asyncio.run(chain.reset_payments(db))
            asyncio.run(scan_raw(node, start, end, batch, watched, raw, blocks=False))
            asyncio.run(scan_raw(node, start, end, batch, watched, full, blocks=True))
            asyncio.run(scan_nespay(db, node, start, batch, nespay, args.max_seconds))
            for side in (raw, full, nespay):
                print(
                    f"  round {round_no}: {side.label:<42} "
                    f"{side.blocks[-1] / side.seconds[-1]:>8.0f} blocks/s  "
                    f"({side.blocks[-1]:,} blocks in {side.seconds[-1]:.2f}s, CPU here "
                    f"{side.cpu_s[-1]:.2f}s, PostgreSQL {side.db_cpu_s[-1]:.2f}s, anvil "
                    f"{side.node_cpu_s[-1]:.2f}s, {side.found[-1]:,} transfers)"
                )
        for side in (raw, full, nespay):
            expected = [round(transfers * b / blocks) for b in side.blocks]
            if side.found != expected:
                raise SystemExit(f"{side.label} found {side.found} transfers, not {expected}")
    return report(args, raw, full, nespay)


def report(args: argparse.Namespace, raw: Side, full: Side, nespay: Side) -> str:
    blocks = args.blocks
    cut = [b for b in nespay.blocks if b < blocks]
    lines = [
        "\n## catch-up\n",
        f"{blocks:,} blocks, {args.transfers:,} token transfers to {args.invoices:,} watched "
        f"addresses (open invoices), batches of {args.batch} blocks, {args.rounds} round(s); "
        "medians over the rounds"
        + (f"; Nespay cut off after {args.max_seconds:g} s ({cut[0]:,} blocks)" if cut else ""),
        chain.machine_line(),
        "",
        "| side | blocks | blocks/s | seconds | CPU s (this process) | CPU ms / 100 blocks "
        "| PostgreSQL CPU s | anvil CPU s | ratio nespay/side |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for side in (nespay, raw, full):
        ratio = nespay.blocks_per_s() / side.blocks_per_s()
        scanned = chain.median(side.blocks)
        lines.append(
            f"| {side.label} | {scanned:,.0f} | {side.blocks_per_s():.0f} "
            f"| {chain.median(side.seconds):.2f} | {chain.median(side.cpu_s):.2f} "
            f"| {chain.median(side.cpu_s) / scanned * 1e5:.1f} "
            f"| {chain.median(side.db_cpu_s):.2f} | {chain.median(side.node_cpu_s):.2f} | "
            + ("—" if side is nespay else f"**{ratio:.2f}×**" if side is raw else f"{ratio:.2f}×")
            + " |"
        )
    lines.append("\nNespay's rate as the payments pile up (last round, per 1,000 blocks):")
    previous = (0, 0.0)
    for done, seconds in nespay.progress:
        if done - previous[0] >= 1000 or done == nespay.progress[-1][0]:
            rate = (done - previous[0]) / max(seconds - previous[1], 1e-9)
            lines.append(f"  blocks {previous[0] + 1:>6,}–{done:<6,} {rate:>7.0f} blocks/s")
            previous = (done, seconds)
    ratio = nespay.blocks_per_s() / raw.blocks_per_s()
    verdict = "met" if ratio >= 0.5 else "missed"
    lines.append(f"\ngoal ≥ 0.5× the raw eth_getLogs loop: {ratio:.3f}× ({verdict})")
    return "\n".join(lines)


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds")
    parser.add_argument("--blocks", type=int, default=10_000)
    parser.add_argument("--transfers", type=int, default=20_000)
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=100, help="= SCANNER_BATCH_BLOCKS")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=80,
        help="stop Nespay's scan after this long (its rate is then over the blocks done)",
    )
    return parser


def main() -> None:
    print(run(argument_parser().parse_args()))


if __name__ == "__main__":
    main()
