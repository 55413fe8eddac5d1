"""Every benchmark against one scratch database, then one table and the memory check.

`.venv/bin/python -m bench [--duration 10 --rounds 2 --connections 64 --threads 1]`
"""

from __future__ import annotations

import platform
from datetime import UTC, datetime

from bench import bench_db_endpoint, bench_health, bench_insert, harness

BENCHMARKS = (bench_health, bench_db_endpoint, bench_insert)


def main() -> None:
    args = harness.argument_parser(__doc__.splitlines()[0]).parse_args()
    harness.require_wrk()
    load = harness.load_from(args)
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
        f"{harness.invocation()}"
    )
    rows: list[harness.Row] = []
    with harness.scratch_database() as db:
        for benchmark in BENCHMARKS:
            rows.extend(benchmark.run(db, load))
    harness.print_results("all benchmarks", load, rows)


if __name__ == "__main__":
    main()
