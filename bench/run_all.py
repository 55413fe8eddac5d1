"""Every benchmark: the wrk ones against one scratch database (one table and the memory check),
then the chain ones, each with its own scratch database and anvil (a section each).

`.venv/bin/python -m bench [--duration 10 --rounds 2 --connections 64 --threads 1]
 [--only health,auth,…]`  (about 23 minutes for everything)
"""

from __future__ import annotations

import platform
from datetime import UTC, datetime

from bench import (
    bench_auth,
    bench_callbacks,
    bench_cards,
    bench_catchup,
    bench_catchup_evm,
    bench_catchup_tron,
    bench_db_endpoint,
    bench_detection,
    bench_health,
    bench_invoices,
    bench_ledger,
    bench_scale,
    bench_withdrawals,
    harness,
)

# bench_invoices carries the insert floor (bench_insert's baseline) as its baseline.
BENCHMARKS = {
    "health": bench_health,
    "db_endpoint": bench_db_endpoint,
    "invoices": bench_invoices,
    "auth": bench_auth,
    "withdrawals": bench_withdrawals,
}
# Their own databases and anvil, their own defaults (`python -m bench.bench_catchup -h`).
CHAIN_BENCHMARKS = {
    "detection": bench_detection,
    "catchup": bench_catchup,
    # Mainnet-shaped, from byte templates served in-process (`-m bench.bench_catchup_evm -h`).
    "catchup_evm": bench_catchup_evm,
    "catchup_tron": bench_catchup_tron,
    "scale": bench_scale,
    # Its own database, RabbitMQ node and receiver (`python -m bench.bench_callbacks -h`).
    "callbacks": bench_callbacks,
    # In-process, its own database (`python -m bench.bench_ledger -h`).
    "ledger": bench_ledger,
    # Fixed-rate load on the webhook process and its raw baseline (`-m bench.bench_cards -h`).
    "cards": bench_cards,
}


def main() -> None:
    parser = harness.argument_parser(__doc__.splitlines()[0])
    names = [*BENCHMARKS, *CHAIN_BENCHMARKS]
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(names)}")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else set(names)
    if unknown := only - set(names):
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    harness.require_wrk()
    load = harness.load_from(args)
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
        f"{harness.invocation()}"
    )
    rows: list[harness.Row] = []
    wrk_benchmarks = [module for name, module in BENCHMARKS.items() if name in only]
    if wrk_benchmarks:
        with harness.scratch_database() as db:
            for benchmark in wrk_benchmarks:
                rows.extend(benchmark.run(db, load))
        harness.print_results("all wrk benchmarks", load, rows)
    for name, module in CHAIN_BENCHMARKS.items():
        if name in only:
            print(module.run(module.argument_parser().parse_args([])))


if __name__ == "__main__":
    main()
