"""Invoice creation through the real API against the bare asyncpg insert.

- thing: `POST /api/v1/invoices` on `nespay serve api`, an API key of a merchant made with
  `nespay merchants create`, a unique `Idempotency-Key` per request (a counter in the wrk
  script, prefixed by a fresh nonce per run), body `{"amount":"10","currency":"USDT",
  "network":"local"}`: the key check, rate-limit counters, the idempotency claim, an HD
  deposit address (a sequence value and a derivation), the invoice, its option and its
  `invoice.created` event, in one transaction.
- baseline: `app_insert` (bench_insert's floor): the same request bytes, one
  `INSERT … RETURNING id` of the body through an asyncpg pool.

Goals: at least 0.6x the baseline's requests/s; p99 at most 100 ms at 64 connections.
Both are measured at the load's connections (64) and again at 16, below the api process's
database pool (10 + 10 overflow): before `fd74670` (the side pool) 64 concurrent creations
ran the pool dry while the requests holding its connections waited for one more, and the
process stalled until SQLAlchemy's 30 s pool timeout (docs/benchmarks.md, finding 1); the two
sizes are kept so that such a stall shows. Nespay gets a redis-server of its own
for its rate-limit counters (`--no-redis`: counters in PostgreSQL, degraded mode).
The scratch database gets the seeded `local` network enabled with a USDT currency (no node is
needed to create invoices; its RPC endpoints are disabled).

`.venv/bin/python -m bench.bench_invoices [--duration 10 --rounds 2 ...]`
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Sequence

import asyncpg

from bench import harness
from bench.harness import Load, Row, ScratchDatabase, Server, Target

PATH = "/api/v1/invoices"
NESPAY = "nespay api POST /api/v1/invoices"
RAW = "asyncpg INSERT (POST json)"
BELOW_POOL = 16  # concurrent requests under the api's 20 pooled connections
BODY = '{"amount":"10","currency":"USDT","network":"local"}'
# Any 20-byte address: creation never talks to the token.
USDT_CONTRACT = "0x" + "5d" * 20
# Rate limits far above what one run can send (the defaults allow 1,200 a minute per key).
UNLIMITED = {
    "RATE_LIMIT_KEY": "default=100000000/60",
    "RATE_LIMIT_IP": "default=100000000/60,public=100000000/60,backoffice=100000000/60",
}


def lua_for(headers: dict[str, str], body: str | None = None) -> Callable[[], str]:
    """A wrk script factory: each run gets a fresh nonce, each request a new
    `Idempotency-Key` (`<nonce>-<thread>-<n>`), so no request is ever a replay."""

    def script() -> str:
        lines = []
        if body is not None:
            lines += ['wrk.method = "POST"', f"wrk.body = '{body}'"]
            lines.append('wrk.headers["Content-Type"] = "application/json"')
        lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items()]
        lines += [
            f'local prefix = "bench-{secrets.token_hex(6)}-"',
            "local threads = 0",
            "function setup(thread)",
            "  threads = threads + 1",
            "  thread:set('tid', threads)",
            "end",
            "local n = 0",
            "function request()",
            "  n = n + 1",
            '  wrk.headers["Idempotency-Key"] = prefix .. (tid or 0) .. "-" .. n',
            "  return wrk.format()",
            "end",
        ]
        return "\n".join(lines) + "\n"

    return script


def prepare(db: ScratchDatabase) -> str:
    """`local` enabled with USDT; a merchant; its API key."""
    harness.enable_usdt_on_local(db, USDT_CONTRACT)
    return harness.create_merchant(db, "Bench Invoices")


def servers(db: ScratchDatabase, redis: dict[str, str], connections: int) -> list[Server]:
    """The baseline, and two api processes: one for each concurrency, so a stall at 64 cannot
    leak into the 16-connection runs."""
    env = {**UNLIMITED, **redis}
    return [
        harness.baseline_server(RAW, "app_insert", "/invoices", db, ready_path="/ready"),
        harness.nespay_server(
            f"nespay api (for {BELOW_POOL} conns)", "api", PATH, db, env, "/api/v1/health"
        ),
        harness.nespay_server(
            f"nespay api (for {connections} conns)", "api", PATH, db, env, "/api/v1/health"
        ),
    ]


def run(db: ScratchDatabase, load: Load) -> list[Row]:
    print(f"invoice creation: {NESPAY} vs {RAW}")
    key = prepare(db)
    lua = lua_for({"X-Api-Key": key}, BODY)
    low = BELOW_POOL
    with (
        harness.redis_env(load.redis) as redis,
        harness.running(servers(db, redis, load.connections)) as started,
    ):
        raw, nespay_low, nespay_high = started
        targets = [
            Target(f"{RAW} @{low}", raw, lua=lua, connections=low),
            Target(f"{NESPAY} @{low}", nespay_low, lua=lua, connections=low),
            Target(f"{RAW} @{load.connections}", raw, lua=lua),
            Target(f"{NESPAY} @{load.connections}", nespay_high, lua=lua),
        ]
        measured = harness.measure_targets(targets, load)
        print(f"database sessions right after the last {load.connections}-connection run:")
        print(asyncio.run(sessions(db)))
    return rows(measured, load)


async def sessions(db: ScratchDatabase) -> str:
    """What the scratch database's sessions are doing (a stalled api shows here: one session
    idle in its transaction, the others waiting for its row lock, none free in the pool)."""
    conn = await asyncpg.connect(db.dsn)
    try:
        found = await conn.fetch(
            """
            SELECT count(*) AS n, state, wait_event_type, wait_event,
                   left(regexp_replace(query, '\\s+', ' ', 'g'), 60) AS query
            FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()
            GROUP BY 2, 3, 4, 5 ORDER BY 1 DESC
            """,
            db.name,
        )
    finally:
        await conn.close()
    return "\n".join(
        f"  {row['n']:>3} {row['state'] or '-':<20} {row['wait_event_type'] or '-':<6} "
        f"{row['wait_event'] or '-':<14} {row['query']}"
        for row in found
    )


def rows(measured: dict[str, harness.Measured], load: Load) -> Sequence[Row]:
    high, low = load.connections, BELOW_POOL
    return [
        Row(
            f"invoice creation, {high} conns (goal ≥ 0.6×, p99 ≤ 100 ms)",
            measured[f"{NESPAY} @{high}"],
            measured[f"{RAW} @{high}"],
        ),
        Row(
            f"invoice creation, {low} conns (below the pool size)",
            measured[f"{NESPAY} @{low}"],
            measured[f"{RAW} @{low}"],
        ),
    ]


def main() -> None:
    args = harness.argument_parser(__doc__.splitlines()[0]).parse_args()
    harness.require_wrk()
    load = harness.load_from(args)
    with harness.scratch_database() as db:
        harness.print_results("invoice creation", load, run(db, load))


if __name__ == "__main__":
    main()
