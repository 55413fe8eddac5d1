"""The raw floor for a write endpoint: one `INSERT` of a JSON body per `POST`, asyncpg pool,
no framework, alone. `bench_invoices.py` runs this same app as the baseline of
`POST /api/v1/invoices` (goal: at least 0.6× it) and reports the ratio; `python -m bench` runs
that one instead of this.

`.venv/bin/python -m bench.bench_insert [--duration 10 --rounds 2 ...]`
"""

from __future__ import annotations

from collections.abc import Sequence

from bench import harness
from bench.harness import Load, Row, ScratchDatabase, Server

PATH = "/invoices"
RAW = "asyncpg INSERT (POST json)"

# An invoice-sized JSON body, as `POST /api/v1/invoices` will receive.
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"amount":"10.5","currency":"USDT","network":"ethereum","order_id":"bench-0001",' ..
           '"description":"benchmark invoice","metadata":{"customer":"cus_123","cart":[1,2,3]},' ..
           '"expires_in":3600,"redirect_url":"https://shop.example/thanks"}'
"""


def servers(db: ScratchDatabase) -> list[Server]:
    return [harness.baseline_server(RAW, "app_insert", PATH, db, ready_path="/ready")]


def run(db: ScratchDatabase, load: Load) -> list[Row]:
    print(f"insert floor: {RAW}")
    with harness.running(servers(db)) as started:
        measured = harness.measure_alternating(started, load, lua=LUA)
    return rows(measured)


def rows(measured: dict[str, harness.Measured]) -> Sequence[Row]:
    return [
        Row(
            "insert floor (alone)",
            measured[RAW],
            note="bench_invoices.py: POST /invoices against this",
        )
    ]


def main() -> None:
    args = harness.argument_parser(__doc__.splitlines()[0]).parse_args()
    harness.require_wrk()
    load = harness.load_from(args)
    with harness.scratch_database() as db:
        harness.print_results("insert floor", load, run(db, load))


if __name__ == "__main__":
    main()
