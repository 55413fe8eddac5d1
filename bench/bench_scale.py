"""Scale: the scanner's cost per block with 1,000,000 open invoices against 1,000.

Two scratch databases, each with the seeded `local` network pointed at one shared anvil: one
holds 1,000 open invoices, the other 1,000,000 (invoices + invoice_options rows, COPY-loaded,
then ANALYZE). The addresses that get paid are in both; the rest are random. On the chain
(automine), every block carries exactly one 10 USDT transfer to one of those addresses:
a 20-block warm-up segment, then 200 blocks per round.

Each round scans its 200 blocks in both databases, in alternating order, with Nespay's
`NetworkScanner` in-process and `SCANNER_BATCH_BLOCKS=1`, i.e. one `step()` per block, as when
following the head: the RPC batch for the block and its logs, the match, the payment and its
event, confirmations of earlier payments, invoice states, the cursor — one transaction.
Reported: wall µs per block (mean, median, p95) and this process's CPU µs per block, and the
ratio 1,000,000 / 1,000 (goal: within 1.2x).

`.venv/bin/python -m bench.bench_scale [--rounds 2 --blocks 200 --large 1000000 --small 1000]`
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from dataclasses import dataclass, field

from bench import chain, harness
from bench.chain import AMOUNT, Chain
from bench.harness import ScratchDatabase

WARMUP_BLOCKS = 20


@dataclass
class Size:
    invoices: int
    db: ScratchDatabase
    step_us: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)  # per block, per round
    db_cpu_us: list[float] = field(default_factory=list)  # PostgreSQL, per block, per round
    loaded_s: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.invoices:,} open invoices"


def pay_one_per_block(node: Chain, addresses: list[str]) -> tuple[int, int]:
    """One transfer per block (automine); (block before the first, last block)."""
    from nespay.chains import localchain

    start = localchain.block_number(node.url)
    for address in addresses:
        localchain.transfer_token(node.url, node.token, address, AMOUNT)
    end = localchain.block_number(node.url)
    if end - start != len(addresses):
        raise SystemExit(f"expected {len(addresses)} blocks, got {end - start}")
    return start, end


async def scan(size: Size, scanner, node: Chain, start: int, blocks: int, *, record: bool) -> None:  # noqa: ANN001
    await chain.rewind(scanner, size.db, start, chain.block_hash(node.url, start))
    steps = []
    db_cpu = await chain.backend_cpu_s(size.db)
    cpu = time.process_time()
    for _ in range(blocks):
        began = time.perf_counter()
        if await scanner.step() != 1:
            raise SystemExit("a step did not scan exactly one block")
        steps.append((time.perf_counter() - began) * 1e6)
    cpu = time.process_time() - cpu
    if record:
        size.step_us.extend(steps)
        size.cpu_us.append(cpu / blocks * 1e6)
        size.db_cpu_us.append((await chain.backend_cpu_s(size.db) - db_cpu) / blocks * 1e6)


async def measure(sizes: list[Size], node: Chain, segments: list[tuple[int, int]]) -> None:
    async with contextlib.AsyncExitStack() as stack:
        scanners = [
            await stack.enter_async_context(chain.scanner(size.db, scanner_batch_blocks=1))
            for size in sizes
        ]
        warm_start, warm_end = segments[0]
        for size, scanner in zip(sizes, scanners, strict=True):
            await scan(size, scanner, node, warm_start, warm_end - warm_start, record=False)
        for round_no, (start, end) in enumerate(segments[1:], start=1):
            order = list(zip(sizes, scanners, strict=True))
            if round_no % 2 == 0:
                order.reverse()
            for size, scanner in order:
                await scan(size, scanner, node, start, end - start, record=True)
                print(
                    f"  round {round_no}: {size.label:<26} "
                    f"{statistics.mean(size.step_us[-(end - start) :]):>8.0f} µs/block (wall), "
                    f"{size.cpu_us[-1]:>7.0f} µs/block CPU here, "
                    f"{size.db_cpu_us[-1]:>6.0f} µs/block PostgreSQL CPU"
                )


def run(args: argparse.Namespace) -> str:
    blocks, rounds = args.blocks, args.rounds
    hot = WARMUP_BLOCKS + blocks * rounds
    print(
        f"scale: {args.small:,} vs {args.large:,} open invoices, {rounds} round(s) of {blocks} "
        "blocks with one transfer each, one step per block"
    )
    if args.small < hot:
        raise SystemExit(f"--small must be at least the {hot} paid invoices")
    with (
        harness.scratch_database("_scale_small") as small_db,
        harness.scratch_database("_scale_large") as large_db,
        chain.anvil() as node,
    ):
        paid = chain.random_addresses(hot)
        sizes = [Size(args.small, small_db), Size(args.large, large_db)]
        for size in sizes:
            harness.create_merchant(size.db, "Bench Scale")
            chain.register(size.db, node)
            addresses = paid + chain.random_addresses(size.invoices - hot)
            size.loaded_s = asyncio.run(chain.bulk_invoices(size.db, addresses))
            print(f"  loaded {size.label} in {size.loaded_s:.1f}s")
        bounds = [0, WARMUP_BLOCKS, *(WARMUP_BLOCKS + blocks * r for r in range(1, rounds + 1))]
        segments = []
        for lo, hi in zip(bounds, bounds[1:], strict=False):
            segments.append(pay_one_per_block(node, paid[lo:hi]))
        asyncio.run(measure(sizes, node, segments))
    return report(args, sizes)


def report(args: argparse.Namespace, sizes: list[Size]) -> str:
    small, large = sizes
    lines = [
        "\n## scale: per-block scan cost\n",
        f"{args.rounds} round(s) of {args.blocks} blocks, one 10 USDT transfer per block, "
        "SCANNER_BATCH_BLOCKS=1 (one step per block), alternating order",
        chain.machine_line(),
        "",
        "| open invoices | mean µs/block | median µs/block | p95 µs/block | CPU µs/block "
        "(this process) | PostgreSQL CPU µs/block | load s |",
        "|---|---|---|---|---|---|---|",
    ]
    for size in sizes:
        lines.append(
            f"| {size.invoices:,} | {statistics.mean(size.step_us):.0f} "
            f"| {statistics.median(size.step_us):.0f} | {chain.percentile(size.step_us, 95):.0f} "
            f"| {statistics.median(size.cpu_us):.0f} | {statistics.median(size.db_cpu_us):.0f} "
            f"| {size.loaded_s:.0f} |"
        )
    wall = statistics.mean(large.step_us) / statistics.mean(small.step_us)
    median = statistics.median(large.step_us) / statistics.median(small.step_us)
    cpu = statistics.median(large.cpu_us) / statistics.median(small.cpu_us)
    verdict = "met" if wall <= 1.2 else "missed"
    lines.append(
        f"\nratio {large.invoices:,} / {small.invoices:,}: mean {wall:.2f}×, median "
        f"{median:.2f}×, CPU {cpu:.2f}× — goal ≤ 1.2× {verdict}"
    )
    return "\n".join(lines)


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--blocks", type=int, default=200, help="blocks per round")
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=1_000)
    return parser


def main() -> None:
    print(run(argument_parser().parse_args()))


if __name__ == "__main__":
    main()
