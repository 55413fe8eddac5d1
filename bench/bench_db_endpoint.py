"""A database-backed read: the jobs process's `GET /api/v1/jobs` against a raw asyncpg app
that runs the same two queries (job_schedules; the networks/rpc_endpoints aggregate) on one
pooled connection and writes the same JSON with orjson.

The ratio is what FastAPI, the middleware, SQLAlchemy (text() queries, its transaction
handling) and the response encoding cost on a typical small read.

`.venv/bin/python -m bench.bench_db_endpoint [--duration 10 --rounds 2 ...]`
"""

from __future__ import annotations

from collections.abc import Sequence

from bench import harness
from bench.harness import Load, Row, ScratchDatabase, Server

PATH = "/api/v1/jobs"
NESPAY = "nespay jobs /api/v1/jobs"
RAW = "asyncpg same 2 queries"


def servers(db: ScratchDatabase) -> list[Server]:
    return [
        harness.baseline_server(RAW, "app_jobs_read", PATH, db),
        harness.nespay_server(NESPAY, "jobs", PATH, db),
    ]


def run(db: ScratchDatabase, load: Load) -> list[Row]:
    print(f"db endpoint: {NESPAY} vs {RAW}")
    with harness.running(servers(db)) as started:
        measured = harness.measure_alternating(started, load)
    return rows(measured)


def rows(measured: dict[str, harness.Measured]) -> Sequence[Row]:
    return [Row("jobs listing (2 reads)", measured[NESPAY], measured[RAW])]


def main() -> None:
    args = harness.argument_parser(__doc__.splitlines()[0]).parse_args()
    harness.require_wrk()
    load = harness.load_from(args)
    with harness.scratch_database() as db:
        harness.print_results("database-backed endpoint", load, run(db, load))


if __name__ == "__main__":
    main()
