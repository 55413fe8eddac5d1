"""Nespay's `GET /api/v1/health` against two raw baselines.

- `bare ASGI`: no I/O at all. The ratio is the whole cost of the request path, the database
  round trip included; informational.
- `asyncpg SELECT 1`: one pooled `SELECT 1` and the same response bytes. Health does one
  database round trip too (Redis is disabled here and costs nothing), so this is the fair
  comparison: what is left is FastAPI, Nespay's middleware and SQLAlchemy.

`.venv/bin/python -m bench.bench_health [--duration 10 --rounds 2 ...]`
"""

from __future__ import annotations

from collections.abc import Sequence

from bench import harness
from bench.harness import Load, Row, ScratchDatabase, Server

PATH = "/api/v1/health"
NESPAY = "nespay api /api/v1/health"
BARE = "bare ASGI {status:ok}"
SELECT1 = "asyncpg SELECT 1"


def servers(db: ScratchDatabase) -> list[Server]:
    return [
        harness.baseline_server(BARE, "app_bare", PATH, db),
        harness.baseline_server(SELECT1, "app_select1", PATH, db),
        harness.nespay_server(NESPAY, "api", PATH, db),
    ]


def run(db: ScratchDatabase, load: Load) -> list[Row]:
    print(f"health: {NESPAY} vs {BARE} and {SELECT1}")
    with harness.running(servers(db)) as started:
        measured = harness.measure_alternating(started, load)
    return rows(measured)


def rows(measured: dict[str, harness.Measured]) -> Sequence[Row]:
    return [
        Row("health (fair: same DB round trip)", measured[NESPAY], measured[SELECT1]),
        Row("health vs no I/O (informational)", measured[NESPAY], measured[BARE]),
    ]


def main() -> None:
    args = harness.argument_parser(__doc__.splitlines()[0]).parse_args()
    harness.require_wrk()
    load = harness.load_from(args)
    with harness.scratch_database() as db:
        harness.print_results("health", load, run(db, load))


if __name__ == "__main__":
    main()
