"""Provider webhook intake through the real webhook process against a raw ASGI + asyncpg
endpoint that verifies the same HMAC and does one INSERT … ON CONFLICT DO NOTHING.

- thing: `POST /api/v1/webhooks/rain` on `nespay serve webhook` as an intake-only replica
  (`WEBHOOK_HANDLING_ENABLED=false`) with a RabbitMQ node of the benchmark's own: the source
  address against `WEBHOOK_RAIN_ALLOWED_IPS`, the body read under its 256 KiB cap, the
  `signature` header (HMAC-SHA256 of the raw body under `RAIN_API_KEY`, constant-time), the
  JSON parsed, the raw row stored (`INSERT … ON CONFLICT DO NOTHING` on the driver pool), its
  id handed to the batching publisher (one confirmed message per batch to
  `nespay.provider-webhooks`). Handling runs elsewhere in production's split (docs/webhooks.md);
  here, after the rounds, a handling replica (handling on, no HTTP traffic) is started on the
  backlog and timed until no row is pending; every row must end `ignored` (no handler yet).
- baseline: `app_inbox_insert`: the same HMAC check, JSON parse and one INSERT into a table
  with the same unique (provider, external_id), in a bare ASGI app.

Every request is a new event: each wrk run (warm-ups too) loads a fresh file of signed bodies
at `init`, more than it can send, so no request of the benchmark repeats one, on either side.
Besides each server's CPU, the PostgreSQL backends' CPU per request of each side and the
RabbitMQ node's per stored row. Goals: at least 0.5× the baseline's requests/s; p99 at most
50 ms at 64 connections.

`.venv/bin/python -m bench.bench_inbox [--duration 10 --rounds 2 ...]`
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import asyncpg
import orjson

from bench import harness
from bench.bench_callbacks import rabbit_node, ticks
from bench.harness import Load, Row, ScratchDatabase, Target

PATH = "/api/v1/webhooks/rain"
NESPAY = "nespay webhook POST /api/v1/webhooks/rain"
RAW = "raw ASGI + asyncpg HMAC + INSERT"
KEY = "bench-rain-key-" + secrets.token_hex(8)
# Signed bodies per second of a wrk run: above what either side answers on this machine
# (about 3× the baseline's rate), so no run reuses one.
BODIES_PER_SECOND = 40_000
SIGNATURE_HEX = 64
HEALTH = "/api/v1/health"


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


def lua_signed(load: Load, path: Path) -> Callable[[], str]:
    """A wrk script factory. Each call (each wrk run, warm-ups included) writes a fresh file of
    signed Rain events (a new nonce in every id) for the script to load at `init`: embedded as
    literals they overflow LuaJIT's 65,536 constants per function, the script fails to load
    and wrk silently sends bare GETs instead. Each thread takes every `threads`-th line, so no
    request of the whole benchmark repeats an event, on either side; a run that outgrows the
    file sends unsigned bodies (401s: errors, so not a result) rather than duplicates."""

    count = BODIES_PER_SECOND * max(load.duration_s, load.warmup_s)

    def script() -> str:
        write_bodies(path, count)
        lines = [
            'wrk.method = "POST"',
            'wrk.headers["Content-Type"] = "application/json"',
            "local threads = 0",
            "function setup(thread)",
            "  threads = threads + 1",
            "  thread:set('tid', threads)",
            "end",
            "local events, n = {}, 0",
            "function init(args)",
            f"  local i, step, mine = 0, {load.threads}, (tid or 1) - 1",
            f'  for line in io.lines("{path}") do',
            "    if i % step == mine then events[#events + 1] = line end",
            "    i = i + 1",
            "  end",
            "end",
            "function request()",
            "  n = n + 1",
            "  local line = events[n]",
            "  if line == nil then",
            '    return wrk.format(nil, nil, {["signature"] = "exhausted"}, "{}")',
            "  end",
            f"  local signature = string.sub(line, 1, {SIGNATURE_HEX})",
            f"  local body = string.sub(line, {SIGNATURE_HEX + 2})",
            '  return wrk.format(nil, nil, {["signature"] = signature}, body)',
            "end",
        ]
        return "\n".join(lines) + "\n"

    return script


def write_bodies(path: Path, count: int) -> None:
    """`count` lines of `<hex HMAC-SHA256 under KEY> <JSON body>`, every id new."""
    nonce = secrets.token_hex(6)
    key = KEY.encode()
    with path.open("wb") as out:
        for n in range(count):
            body = orjson.dumps(
                {
                    "id": f"evt-{nonce}-{n}",
                    "resource": "card",
                    "action": "updated",
                    "body": {"card": {"id": f"card-{n}", "status": "active"}},
                }
            )
            out.write(hmac.new(key, body, hashlib.sha256).hexdigest().encode())
            out.write(b" " + body + b"\n")


def run(db: ScratchDatabase, load: Load) -> list[Row]:
    print(f"provider webhook intake: {NESPAY} vs {RAW}")
    prepare(db)
    os.environ["BENCH_RAIN_KEY"] = KEY  # the baseline server inherits it
    bodies = Path(tempfile.gettempdir()) / f"bench-inbox-{os.getpid()}.bodies"
    lua = lua_signed(load, bodies)
    with rabbit_node() as node:
        env = {
            "RAIN_API_KEY": KEY,
            "WEBHOOK_RAIN_ALLOWED_IPS": "127.0.0.1",
            "RABBITMQ_URL": node.url,
            "WEBHOOK_SWEEP_INTERVAL_S": "1",
        }
        intake = {**env, "WEBHOOK_HANDLING_ENABLED": "false"}
        servers = [
            harness.baseline_server(RAW, "app_inbox_insert", "/webhooks/rain", db),
            harness.nespay_server("nespay webhook", "webhook", PATH, db, intake, HEALTH),
        ]
        beam_before = node.cpu_ticks()
        try:
            with harness.running(servers) as (raw, nespay):
                measured = harness.measure_targets(
                    [Target(RAW, raw, lua=lua), Target(NESPAY, nespay, lua=lua)],
                    load,
                    probe=lambda: asyncio.run(_backends_cpu_us(db)),
                )
        finally:
            bodies.unlink(missing_ok=True)
        beam_ticks = node.cpu_ticks() - beam_before
        for label in (RAW, NESPAY):
            backends = statistics.median(measured[label].probe_us)
            print(f"  PostgreSQL backends' CPU, {label}: {backends:.0f} µs per request (median)")
        print(handling_report(db, env, beam_ticks))
    return rows(measured, load)


async def _backends_cpu_us(db: ScratchDatabase) -> float:
    """utime+stime of the scratch database's backends (this connection's own excluded): only
    the side being loaded is busy during its run."""
    for attempt in range(20):  # the machine's PostgreSQL is shared: it may be full a moment
        try:
            conn = await asyncpg.connect(db.dsn)
            break
        except asyncpg.TooManyConnectionsError:
            if attempt == 19:
                raise
            await asyncio.sleep(0.25)
    try:
        pids = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            db.name,
        )
    finally:
        await conn.close()
    return sum(ticks(row["pid"]) for row in pids) * harness.TICK_US


def handling_report(db: ScratchDatabase, env: dict[str, str], beam: int) -> str:
    """After the rounds: a handling replica (`nespay serve webhook`, handling on, no HTTP
    traffic) started on the backlog the intake left (every stored row pending, its messages
    queued); timed until no row is pending. Every row must end `ignored` (no handler)."""
    stored = asyncio.run(_count(db, "true"))
    handler = harness.nespay_server("nespay webhook (handling)", "webhook", HEALTH, db, env)
    started = time.monotonic()
    with harness.running([handler]):
        before = handler.cpu_ticks()
        while asyncio.run(_count(db, "status = 'pending'")) and time.monotonic() - started < 600:
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        cpu_us = (handler.cpu_ticks() - before) * harness.TICK_US
    left = asyncio.run(_count(db, "status <> 'ignored'"))
    return (
        f"  intake stored {stored:,} rows (warm-ups included); RabbitMQ node CPU during the "
        f"intake {beam * harness.TICK_US / max(stored, 1):.0f} µs per stored row\n"
        f"  handling replica afterwards: {stored - left:,} handled in {elapsed:.1f} s "
        f"(start-up included) = {(stored - left) / elapsed:,.0f}/s, "
        f"CPU {cpu_us / max(stored - left, 1):.0f} µs per handling; "
        f"{left} not ignored{' (LOST OR STUCK: not a result)' if left else ''}"
    )


async def _count(db: ScratchDatabase, where: str) -> int:
    conn = await asyncpg.connect(db.dsn)
    try:
        return await conn.fetchval(f"SELECT count(*) FROM provider_webhooks WHERE {where}")  # noqa: S608
    finally:
        await conn.close()


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
