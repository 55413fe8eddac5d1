"""Tron detection latency: from a block's arrival to its payment's invoice being `paid` in the
database, for Nespay's jobs process scanning the fake TronGrid at mainnet's 3 s block time.

Setup: the fake TronGrid (`nespay.chains.faketron`) served by this process, a test TRC-20
token registered as USDT on the seeded `tron-local` network (`nespay currencies add`,
`nespay networks set-rpc`, `nespay networks enable`), N open invoices COPY-loaded with Tron
deposit addresses (as bench_catchup loads EVM ones), and `nespay serve jobs` (its scanner on,
`SCANNER_POLL_INTERVAL_MS` 250 by default: the shipped value).

Timed: a producer thread makes a block every 3 s; right after each block it sends one exact
10 USDT transfer to the next invoice, which the next block carries. A block's arrival is the
moment the fake made it (this process's clock); `paid` is the invoice's `paid_at` (the
database's clock at the start of the scanner's transaction that recorded the payment). Same
machine, same clock. Goal: Nespay's p95 at most 500 ms at 3 s blocks.

`.venv/bin/python -m bench.bench_detection_tron [--invoices 40 --poll-ms 250]`
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time

import asyncpg

from bench import chain, harness
from bench.chain import AMOUNT
from bench.harness import ScratchDatabase
from nespay.chains.faketron import FakeTron
from nespay.kit.addresses import tron_from_hex

NETWORK = "tron-local"
PAYER = "TPX6HK2NRN4XKRX1JAhbC827bm7gMmy5w1"
HEALTH = "/api/v1/health"
BLOCK_S = 3.0


def enable_tron_local(db: ScratchDatabase, token: str, url: str) -> None:
    harness.nespay_cli(db, "currencies", "add", "--network", NETWORK, "--code", "USDT",
                       "--contract", token, "--decimals", "6")  # fmt: skip
    harness.nespay_cli(db, "networks", "set-rpc", NETWORK, url, "--priority", "1")
    asyncio.run(
        harness._execute_args(
            db.dsn,
            "UPDATE rpc_endpoints SET enabled = (url = $1) WHERE network_code = $2",
            url,
            NETWORK,
        )
    )
    harness.nespay_cli(db, "networks", "enable", NETWORK)


def tron_addresses(count: int) -> list[str]:
    seen: set[str] = set()
    while len(seen) < count:
        seen.update(tron_from_hex(os.urandom(20).hex()) for _ in range(count - len(seen)))
    return sorted(seen)


async def paid_at(db: ScratchDatabase, addresses: list[str]) -> dict[str, float]:
    conn = await asyncpg.connect(db.dsn)
    try:
        rows = await conn.fetch(
            "SELECT o.address, extract(epoch FROM i.paid_at) AS at FROM invoice_options o"
            " JOIN invoices i ON i.id = o.invoice_id WHERE o.address = ANY($1::text[])"
            " AND i.paid_at IS NOT NULL",
            addresses,
        )
        return {row["address"]: float(row["at"]) for row in rows}
    finally:
        await conn.close()


async def _cursor(db: ScratchDatabase) -> object:
    conn = await asyncpg.connect(db.dsn)
    try:
        return await conn.fetch("SELECT network_code, block_number FROM chain_cursors")
    finally:
        await conn.close()


def run(args: argparse.Namespace) -> str:
    fake = FakeTron(solid_lag=19)
    url = fake.serve()
    token = fake.new_token("USDT")
    fake.mine(3)
    arrived: dict[str, float] = {}  # address → its block's arrival (epoch s)
    with harness.scratch_database("_detect_tron") as db:
        harness.create_merchant(db, "Bench Tron Detection")
        enable_tron_local(db, token, url)
        addresses = tron_addresses(args.invoices)
        asyncio.run(chain.bulk_invoices(db, addresses, network=NETWORK, chain_family="tron"))
        env = {"SCANNER_ENABLED": "true", "SCANNER_POLL_INTERVAL_MS": str(args.poll_ms),
               "RATES_JOB_ENABLED": "false", "WALLET_SEND_JOB_ENABLED": "false"}  # fmt: skip
        jobs = harness.nespay_server("nespay jobs", "jobs", HEALTH, db, env)
        with harness.running([jobs]):
            time.sleep(2 * BLOCK_S)  # the scanner at the head before the first payment
            stop = threading.Event()

            def produce() -> None:
                pending: str | None = None
                queue = list(addresses)
                while not stop.wait(BLOCK_S):
                    fake.mine()
                    if pending is not None:
                        arrived[pending] = time.time()
                    pending = queue.pop(0) if queue else None
                    if pending is None and not queue and len(arrived) == len(addresses):
                        return
                    if pending is not None:
                        fake.send_trc20(token, PAYER, pending, AMOUNT)

            producer = threading.Thread(target=produce, daemon=True)
            producer.start()
            deadline = time.monotonic() + BLOCK_S * (len(addresses) + 10)
            while time.monotonic() < deadline:
                found = asyncio.run(paid_at(db, addresses))
                if len(found) == len(addresses) and len(arrived) == len(addresses):
                    break
                time.sleep(1.0)
            stop.set()
            producer.join(timeout=10)
            found = asyncio.run(paid_at(db, addresses))
            if len(found) < len(addresses):
                print(f"found {len(found)}, arrived {len(arrived)}, head {fake.head}")
                print(asyncio.run(_cursor(db)))
                print(harness._tail(jobs, 40))
    fake.stop()
    latencies = sorted(
        (found[a] - arrived[a]) * 1000 for a in addresses if a in found and a in arrived
    )
    missing = len(addresses) - len(latencies)
    if not latencies:
        return f"nothing detected ({missing} invoices): see the jobs log above"
    p50, p95 = chain.percentile(latencies, 50), chain.percentile(latencies, 95)
    verdict = "met" if p95 <= 500 and not missing else "missed"
    return "\n".join(
        [
            "### Tron detection latency (block arrival → invoice paid), 3 s blocks",
            "",
            chain.machine_line(),
            "",
            "| poll ms | invoices | detected | p50 ms | p95 ms | max ms | goal p95 ≤ 500 ms |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            f"| {args.poll_ms} | {len(addresses)} | {len(latencies)} | {p50:.0f} | {p95:.0f} "
            f"| {max(latencies) if latencies else float('nan'):.0f} | **{verdict}** |",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invoices", type=int, default=40)
    parser.add_argument("--poll-ms", type=int, default=250)
    print(run(parser.parse_args()))


if __name__ == "__main__":
    main()
