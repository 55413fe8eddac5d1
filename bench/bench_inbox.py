"""Provider webhook intake through the real webhook process against a raw ASGI + asyncpg
endpoint that verifies the same HMAC and does one INSERT … ON CONFLICT DO NOTHING.

- thing: `POST /api/v1/webhooks/rain` on `nespay serve webhook` with RabbitMQ: the source
  address against `WEBHOOK_RAIN_ALLOWED_IPS`, the body read under its 256 KiB cap, the
  `signature` header (HMAC-SHA256 of the raw body under `RAIN_API_KEY`, constant-time), the
  JSON parsed, the raw row stored (`INSERT … ON CONFLICT DO NOTHING` on the driver pool), a
  message published to `nespay.provider-webhooks` after the insert — and, in the same
  process, the consumer handling each stored row (`ignored`: no handler yet), as deployed.
- baseline: `app_inbox_insert`: the same HMAC check, JSON parse and one INSERT into a table
  with the same unique (provider, external_id), in a bare ASGI app.

Every request is a new event (a pre-signed body per request, a fresh set per run), so no
request is a duplicate. Goals: at least 0.5× the baseline's requests/s; p99 at most 50 ms
at 64 connections.

`.venv/bin/python -m bench.bench_inbox [--duration 10 --rounds 2 ...]`
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable, Sequence

import asyncpg
import orjson

from bench import harness
from bench.harness import Load, Row, ScratchDatabase, Target

PATH = "/api/v1/webhooks/rain"
NESPAY = "nespay webhook POST /api/v1/webhooks/rain"
RAW = "raw ASGI + asyncpg HMAC + INSERT"
KEY = "bench-rain-key-" + secrets.token_hex(8)
# Pre-signed bodies per wrk run: more than a 10 s run at 64 connections sends here.
BODIES_PER_RUN = 120_000
RABBITMQ_URL = os.environ.get("BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")


def prepare(db: ScratchDatabase) -> None:
    asyncio.run(_create_baseline_table(db))


async def _create_baseline_table(db: ScratchDatabase) -> None:
    conn = await asyncpg.connect(db.dsn)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_inbox (id bigserial PRIMARY KEY, "
            "provider varchar(16) NOT NULL, external_id varchar(200) NOT NULL, "
            "body bytea NOT NULL, received_at timestamptz NOT NULL DEFAULT now(), "
            "UNIQUE (provider, external_id))"
        )
    finally:
        await conn.close()


def lua_signed(threads: int) -> Callable[[], str]:
    """A wrk script factory: each run gets its own table of signed Rain events (a fresh nonce
    in every id), each thread takes every `threads`-th entry, so no request repeats."""

    def script() -> str:
        nonce = secrets.token_hex(6)
        entries = []
        for n in range(BODIES_PER_RUN):
            body = orjson.dumps(
                {
                    "id": f"evt-{nonce}-{n}",
                    "resource": "card",
                    "action": "updated",
                    "body": {"card": {"id": f"card-{n}", "status": "active"}},
                }
            ).decode()
            signature = hmac.new(KEY.encode(), body.encode(), hashlib.sha256).hexdigest()
            entries.append(f'{{[[{body}]],"{signature}"}}')
        lines = [
            'wrk.method = "POST"',
            'wrk.headers["Content-Type"] = "application/json"',
            "local events = {" + ",\n".join(entries) + "}",
            "local threads, total = 0, #events",  # noqa: RUF027 - Lua, not an f-string
            "function setup(thread)",
            "  threads = threads + 1",
            "  thread:set('tid', threads)",
            "end",
            "local n = 0",
            "function request()",
            f"  local i = ((n * {threads} + (tid or 1) - 1) % total) + 1",
            "  n = n + 1",
            "  local e = events[i]",
            '  return wrk.format(nil, nil, {["signature"] = e[2]}, e[1])',
            "end",
        ]
        return "\n".join(lines) + "\n"

    return script


def run(db: ScratchDatabase, load: Load) -> list[Row]:
    print(f"provider webhook intake: {NESPAY} vs {RAW}")
    prepare(db)
    os.environ["BENCH_RAIN_KEY"] = KEY  # the baseline server inherits it
    env = {
        "RAIN_API_KEY": KEY,
        "WEBHOOK_RAIN_ALLOWED_IPS": "127.0.0.1",
        "RABBITMQ_URL": RABBITMQ_URL,
    }
    lua = lua_signed(load.threads)
    with harness.running(
        [
            harness.baseline_server(RAW, "app_inbox_insert", "/webhooks/rain", db),
            harness.nespay_server("nespay webhook", "webhook", PATH, db, env, "/api/v1/health"),
        ]
    ) as started:
        raw, nespay = started
        measured = harness.measure_targets(
            [Target(RAW, raw, lua=lua), Target(NESPAY, nespay, lua=lua)], load
        )
    return rows(measured, load)


def rows(measured: dict[str, harness.Measured], load: Load) -> Sequence[Row]:
    return [
        Row(
            f"Rain webhook intake, {load.connections} conns (goal ≥ 0.5×, p99 ≤ 50 ms)",
            measured[NESPAY],
            measured[RAW],
        )
    ]


def main() -> None:
    args = harness.argument_parser(__doc__.splitlines()[0]).parse_args()
    harness.require_wrk()
    load = harness.load_from(args)
    with harness.scratch_database() as db:
        harness.print_results("provider webhook intake", load, run(db, load))


if __name__ == "__main__":
    main()
