"""Callback delivery: signed deliveries per second end to end, beside a raw aio-pika + httpx
loop, and the lag from an invoice turning `paid` to the merchant's receiver getting
`invoice.paid`.

Setup: a scratch database (`nespay db migrate|seed`), a private RabbitMQ node (the machine's
`rabbitmq-server` run as the `rabbitmq` user on free ports in a temporary directory, as
tests/fixtures/rabbitmq.py does: the shared broker's queues are never touched), a receiver
(`bench/callback_receiver.py`: a bare ASGI callable under uvicorn with uvloop and httptools, a
process of its own, answering `200 ok`), `--merchants` merchants from `nespay merchants create`,
each with one callback endpoint (`["*"]`) on the receiver made through the API (`nespay serve
api` with `CALLBACK_ALLOW_PRIVATE_URLS=true`), and `nespay serve jobs` as operators start it
(`RABBITMQ_URL` = the private node, `CALLBACK_DELIVERY_ENABLED=true`,
`CALLBACK_ALLOW_PRIVATE_URLS=true`, scanner, Redis and every job that calls out off).

Throughput, round after round, the baseline first:

- raw (`bench/raw_callbacks.py`, a process of its own): a queue on the private node pre-filled
  with `--events` persistent messages (bodies shaped like Nespay's); aio-pika consumes them
  (prefetch 1,600) and POSTs each with httpx to the receiver, acks; nothing stored. Timed from
  the consume call to the last ack. Once per `--raw-concurrency` level: 256 in flight (Nespay's
  `CALLBACK_CONCURRENCY`) and 16 (httpx's pool costs more CPU per request the more connections
  it holds, so the smaller level is the faster floor; the goal is judged against the faster).
- Nespay: `--events` `invoice.paid` rows (one invoice each, spread over the merchants) are
  bulk-inserted into `events` in `--chunks` transactions (the table's trigger NOTIFYs the
  relay at each commit); timed from the first insert to the moment every delivery row of the
  round is `succeeded` (relay → RabbitMQ → consumer → signed POST → attempt recorded).

CPU per delivery (utime+stime from /proc over the round): the side's own process (jobs / raw
consumer), the RabbitMQ node (beam.smp), the scratch database's PostgreSQL backends other than
the benchmark's own connection (Nespay only), and the receiver.

Lag: with the jobs process idle, `--lag-events` bulk-loaded open invoices turn `paid` one at
a time, `--lag-gap-ms` apart: in one transaction, the domain's own status UPDATE
(`nespay.invoices.states.apply`: the status and its `invoice.paid` event, with the data
`settle` writes); the clock starts when the commit returns (`time.time()` in
this process) and stops at the receiver's arrival time of that webhook-id (`time.time()` in the
receiver; same machine, same clock). Goals: ≥ 1,000 deliveries/s and ≥ 0.5× the raw loop;
lag p95 ≤ 200 ms.

`.venv/bin/python -m bench.bench_callbacks [--events 20000 --rounds 2 --merchants 4
 --raw-concurrency 256,16 --callback-concurrency 256 --lag-events 200 --lag-gap-ms 20]`
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench import chain, harness
from bench.harness import PYTHON, REPO, ScratchDatabase, Server

HEALTH = "/api/v1/health"
RAW_QUEUE = "bench.raw_callbacks"
PUBLISH_BATCH = 500

INSERT_EVENTS = """
INSERT INTO events (id, merchant_id, type, subject_id, data)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[])
"""


# --- processes -------------------------------------------------------------------------------


def ticks(pid: int) -> int:
    """utime + stime of `pid` in clock ticks (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def seconds(tick_count: int) -> float:
    return tick_count * harness.TICK_US / 1e6


@dataclass
class Rabbit:
    """A RabbitMQ node of the benchmark's own."""

    name: str
    url: str
    home: Path

    @property
    def pid(self) -> int:
        return int((self.home / "pid").read_text().strip())

    def cpu_ticks(self) -> int:
        return ticks(self.pid)


@contextlib.contextmanager
def rabbit_node() -> Iterator[Rabbit]:
    """`rabbitmq-server -detached` (it drops to the `rabbitmq` user) with its config, data,
    logs and pid file in a temporary directory owned by that user; `rabbitmqctl stop` after."""
    if shutil.which("rabbitmq-server") is None:
        raise SystemExit("install rabbitmq-server: apt-get install -y rabbitmq-server")
    home = Path(tempfile.mkdtemp(prefix="bench-rabbit-"))
    amqp, dist = harness.free_port(), harness.free_port()
    name = f"nespaybench{os.getpid()}@localhost"
    files = {
        "plugins": "[].\n",
        "rabbitmq.conf": f"listeners.tcp.local = 127.0.0.1:{amqp}\n",
    }
    for file, content in files.items():
        (home / file).write_text(content)
    for path in (home, *home.iterdir()):
        shutil.chown(path, "rabbitmq", "rabbitmq")
    settings = {
        "RABBITMQ_NODENAME": name,
        "RABBITMQ_NODE_PORT": str(amqp),
        "RABBITMQ_DIST_PORT": str(dist),
        "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "plugins"),
        "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
        "RABBITMQ_LOG_BASE": str(home / "log"),
        "RABBITMQ_PID_FILE": str(home / "pid"),
    }
    subprocess.run(
        ["rabbitmq-server", "-detached"], env={**os.environ, **settings}, check=True, timeout=60
    )
    node = Rabbit(name, f"amqp://guest:guest@127.0.0.1:{amqp}/", home)
    try:
        subprocess.run(
            ["rabbitmqctl", "-n", name, "wait", str(home / "pid"), "--timeout", "60"],
            capture_output=True,
            check=True,
            timeout=90,
        )
        yield node
    finally:
        subprocess.run(["rabbitmqctl", "-n", name, "stop"], capture_output=True, timeout=60)
        shutil.rmtree(home, ignore_errors=True)


def receiver_server() -> Server:
    argv = [
        PYTHON, "-m", "uvicorn", "bench.callback_receiver:create_app", "--factory",
        "--lifespan", "off", "--host", "127.0.0.1", "--port", "{port}", *harness.UVICORN_ARGS,
    ]  # fmt: skip
    return Server("receiver", argv, "/_stats", {**os.environ, "PYTHONPATH": str(REPO)})


def receiver_get(receiver: Server, path: str) -> Any:
    answer = httpx.get(f"http://127.0.0.1:{receiver.port}{path}", timeout=10)
    answer.raise_for_status()
    return answer.json()


def hits(receiver: Server) -> int:
    return receiver_get(receiver, "/_stats")["hits"]


# --- setup -------------------------------------------------------------------------------------


def merchants_with_endpoints(db: ScratchDatabase, receiver: Server, count: int) -> list[str]:
    """`count` merchants (CLI), one `["*"]` endpoint each on the receiver (API); their ids."""
    keys = [harness.create_merchant(db, f"Bench Callbacks {n}") for n in range(count)]
    env = {"CALLBACK_ALLOW_PRIVATE_URLS": "true"}
    api = harness.nespay_server("nespay api", "api", HEALTH, db, env)
    with harness.running([api]), httpx.Client(base_url=api.url.rsplit("/api", 1)[0]) as http:
        for n, key in enumerate(keys):
            url = f"http://127.0.0.1:{receiver.port}/hook/{n}"
            answer = http.post(
                "/api/v1/webhook-endpoints",
                json={"url": url, "events": ["*"]},
                headers={"X-Api-Key": key},
            )
            if answer.status_code != 201:
                raise SystemExit(f"endpoint creation failed: {answer.status_code} {answer.text}")
    return chain.run_async(_merchant_ids(db))


async def _merchant_ids(db: ScratchDatabase) -> list[str]:
    conn = await asyncpg.connect(db.dsn)
    try:
        return [r["id"] for r in await conn.fetch("SELECT id FROM merchants ORDER BY created_at")]
    finally:
        await conn.close()


def event_data(invoice_id: str) -> dict[str, Any]:
    """What `nespay.invoices.states.apply` writes for `invoice.paid`."""
    return {
        "id": invoice_id,
        "status": "paid",
        "previous_status": "pending",
        "paid_share": "1",
        "flags": {"overpaid": False, "paid_late": False},
    }


# --- throughput -------------------------------------------------------------------------------


@dataclass
class Round:
    side: str
    count: int
    seconds: float
    own_cpu_s: float
    rabbit_cpu_s: float
    receiver_cpu_s: float
    pg_cpu_s: float | None = None
    hits: int = 0
    attempts: int | None = None
    errors: int = 0
    note: str = ""

    @property
    def rate(self) -> float:
        return self.count / self.seconds


async def fill_raw_queue(node: Rabbit, count: int) -> None:
    """`count` persistent messages, bodies shaped like Nespay's, with publisher confirms."""
    import aio_pika

    from nespay.kit.ids import new_id

    connection = await aio_pika.connect(node.url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(RAW_QUEUE, durable=True)
        await queue.purge()
        for start in range(0, count, PUBLISH_BATCH):
            messages = []
            for _ in range(min(PUBLISH_BATCH, count - start)):
                event_id, invoice_id = new_id("evt"), new_id("inv")
                body = {
                    "id": event_id,
                    "type": "invoice.paid",
                    "created_at": "2026-11-26T10:00:00.000000Z",
                    "data": event_data(invoice_id),
                }
                messages.append(
                    aio_pika.Message(
                        json.dumps(body).encode(),
                        message_id=event_id,
                        content_type="application/json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    )
                )
            await asyncio.gather(
                *(channel.default_exchange.publish(m, routing_key=RAW_QUEUE) for m in messages)
            )
    finally:
        await connection.close()


def raw_round(node: Rabbit, receiver: Server, count: int, concurrency: int) -> Round:
    chain.run_async(fill_raw_queue(node, count))
    harness.wait_idle([receiver])
    hits_before, rabbit_before = hits(receiver), node.cpu_ticks()
    receiver_before = receiver.cpu_ticks()
    argv = [
        PYTHON, "-m", "bench.raw_callbacks", "--amqp", node.url, "--queue", RAW_QUEUE,
        "--count", str(count), "--url", f"http://127.0.0.1:{receiver.port}/raw",
        "--concurrency", str(concurrency),
    ]  # fmt: skip
    done = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        argv,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the raw consumer failed:\n{done.stdout}{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return Round(
        f"raw: aio-pika consume + httpx POST, nothing stored ({concurrency} in flight)",
        result["count"],
        result["seconds"],
        result["cpu_s"],
        seconds(node.cpu_ticks() - rabbit_before),
        seconds(receiver.cpu_ticks() - receiver_before),
        hits=hits(receiver) - hits_before,
        errors=result["errors"],
    )


async def _pg_cpu_s(conn: asyncpg.Connection, db: ScratchDatabase) -> float:
    """CPU of the scratch database's backends, this connection's own excluded."""
    pids = await conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        db.name,
    )
    return seconds(sum(ticks(row["pid"]) for row in pids))


async def nespay_round(
    db: ScratchDatabase,
    node: Rabbit,
    receiver: Server,
    jobs: Server,
    merchants: Sequence[str],
    count: int,
    chunks: int,
    timeout_s: float,
    concurrency: int,
) -> Round:
    from nespay.kit.ids import new_id

    conn = await asyncpg.connect(db.dsn)
    try:
        seq_before = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM events")
        rows = []
        for n in range(count):
            invoice_id = new_id("inv")
            rows.append(
                (new_id("evt"), merchants[n % len(merchants)], invoice_id,
                 json.dumps(event_data(invoice_id)))
            )  # fmt: skip
        per_chunk = -(-count // chunks)
        hits_before = hits(receiver)
        jobs_before, rabbit_before = jobs.cpu_ticks(), node.cpu_ticks()
        receiver_before, pg_before = receiver.cpu_ticks(), await _pg_cpu_s(conn, db)
        started = time.perf_counter()
        for start in range(0, count, per_chunk):
            part = rows[start : start + per_chunk]
            async with conn.transaction():
                await conn.execute(
                    INSERT_EVENTS,
                    [r[0] for r in part],
                    [r[1] for r in part],
                    ["invoice.paid"] * len(part),
                    [r[2] for r in part],
                    [r[3] for r in part],
                )
        inserted_s = time.perf_counter() - started
        deadline = time.monotonic() + timeout_s
        while await asyncio.to_thread(hits, receiver) - hits_before < count:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        succeeded = 0
        while time.monotonic() <= deadline:
            succeeded = await conn.fetchval(
                "SELECT count(*) FROM webhook_deliveries WHERE event_seq > $1 "
                "AND status = 'succeeded'",
                seq_before,
            )
            if succeeded >= count:
                break
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
        jobs_cpu, rabbit_cpu = jobs.cpu_ticks() - jobs_before, node.cpu_ticks() - rabbit_before
        receiver_cpu, pg_cpu = receiver.cpu_ticks() - receiver_before, await _pg_cpu_s(conn, db)
        if succeeded < count:
            raise SystemExit(f"only {succeeded} of {count} deliveries succeeded in {timeout_s:g}s")
        attempts = await conn.fetchval(
            "SELECT count(*) FROM webhook_attempts a JOIN webhook_deliveries d "
            "ON d.id = a.delivery_id WHERE d.event_seq > $1",
            seq_before,
        )
    finally:
        await conn.close()
    return Round(
        f"nespay serve jobs ({concurrency} in flight): event row → relay → RabbitMQ → signed "
        "POST → attempt recorded",
        count,
        elapsed,
        seconds(jobs_cpu),
        seconds(rabbit_cpu),
        seconds(receiver_cpu),
        pg_cpu_s=pg_cpu - pg_before,
        hits=hits(receiver) - hits_before,
        attempts=attempts,
        note=f"events inserted in {inserted_s:.2f}s ({chunks} transactions)",
    )


# --- lag ---------------------------------------------------------------------------------------


async def lag_run(
    db: ScratchDatabase, receiver: Server, jobs: Server, count: int, gap_s: float
) -> tuple[list[float], float]:
    """(lag in ms per invoice, the jobs process's CPU seconds over the run)."""
    from nespay.config import Settings
    from nespay.db import Database, sql
    from nespay.invoices import states

    await chain.bulk_invoices(db, chain.random_addresses(count))
    conn = await asyncpg.connect(db.dsn)
    try:
        invoices = await conn.fetch(
            "SELECT id, merchant_id FROM invoices WHERE status = 'pending' ORDER BY id LIMIT $1",
            count,
        )
    finally:
        await conn.close()
    chain.quiet_logs()
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, app_env="test", database_url=db.url, redis_enabled=False,
        log_level="warning",
    )  # fmt: skip
    database = Database(settings)
    committed: dict[str, float] = {}
    try:
        async with database.engine.connect() as warm:  # the pool's first connection, untimed
            await warm.rollback()
        await asyncio.to_thread(httpx.post, f"http://127.0.0.1:{receiver.port}/_reset")
        await asyncio.to_thread(harness.wait_idle, [jobs])
        jobs_before = jobs.cpu_ticks()
        for row in invoices:
            async with database.engine.begin() as tx:
                change = states.Change(
                    row["id"],
                    row["merchant_id"],
                    "pending",
                    "paid",
                    states.Share(1, 1),
                    False,
                    False,
                )
                (event_id,) = await states.apply(sql(tx), [change])
            committed[event_id] = time.time()
            await asyncio.sleep(gap_s)
        deadline = time.monotonic() + 30
        arrivals: dict[str, float] = {}
        while time.monotonic() < deadline:
            arrivals = await asyncio.to_thread(receiver_get, receiver, "/_arrivals")
            if all(event_id in arrivals for event_id in committed):
                break
            await asyncio.sleep(0.1)
        jobs_cpu = seconds(jobs.cpu_ticks() - jobs_before)
    finally:
        await database.engine.dispose()
    missing = [e for e in committed if e not in arrivals]
    if missing:
        raise SystemExit(f"{len(missing)} of {len(committed)} invoice.paid never arrived")
    return [(arrivals[e] - at) * 1000 for e, at in committed.items()], jobs_cpu


# --- the run -----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> str:
    raw_levels = [int(c) for c in args.raw_concurrency.split(",")]
    print(
        f"callbacks: {args.events} events per round, {args.rounds} round(s), "
        f"{args.merchants} merchants, raw loop at {raw_levels} in flight, Nespay at "
        f"CALLBACK_CONCURRENCY={args.callback_concurrency}; lag: {args.lag_events} invoices "
        f"{args.lag_gap_ms} ms apart"
    )
    rounds: list[list[Round]] = []
    with harness.scratch_database("_callbacks") as db, rabbit_node() as node:
        # A currency on `local` for the lag phase's bulk-loaded invoices (no node needed).
        harness.enable_usdt_on_local(db, "0x" + "11" * 20)
        receiver = receiver_server()
        with harness.running([receiver]):
            merchants = merchants_with_endpoints(db, receiver, args.merchants)
            env = {
                "RABBITMQ_URL": node.url,
                "CALLBACK_DELIVERY_ENABLED": "true",
                "CALLBACK_ALLOW_PRIVATE_URLS": "true",
                "CALLBACK_CONCURRENCY": str(args.callback_concurrency),
            }
            jobs = harness.nespay_server("nespay jobs", "jobs", HEALTH, db, env)
            with harness.running([jobs]):
                for round_no in range(1, args.rounds + 1):
                    sides = []
                    for level in raw_levels:
                        sides.append(raw_round(node, receiver, args.events, level))
                        print(
                            f"  round {round_no}: raw ({level:>3} in flight) "
                            f"{sides[-1].rate:8.0f} deliveries/s"
                        )
                    harness.wait_idle([jobs, receiver])
                    nespay = chain.run_async(
                        nespay_round(db, node, receiver, jobs, merchants, args.events,
                                     args.chunks, args.timeout, args.callback_concurrency)
                    )  # fmt: skip
                    sides.append(nespay)
                    rounds.append(sides)
                    print(
                        f"  round {round_no}: nespay ({args.callback_concurrency:>3} in flight) "
                        f"{nespay.rate:8.0f} deliveries/s ({nespay.note})"
                    )
                lags, lag_cpu = chain.run_async(
                    lag_run(db, receiver, jobs, args.lag_events, args.lag_gap_ms / 1000)
                )
                print(f"  lag: {len(lags)} invoices")
                jobs_rss = jobs.rss_mb()
    return report(args, raw_levels, rounds, lags, lag_cpu, jobs_rss)


def _us(value: float | None, count: int) -> str:
    return "—" if value is None else f"{value / count * 1e6:.0f}"


def report(
    args: argparse.Namespace,
    raw_levels: Sequence[int],
    rounds: Sequence[Sequence[Round]],
    lags: Sequence[float],
    lag_cpu_s: float,
    jobs_rss_mb: float,
) -> str:
    lines = [
        "\n## callback delivery\n",
        f"{args.events} deliveries per round ({args.merchants} merchants, one endpoint each, "
        f"one `invoice.paid` per invoice), {args.rounds} alternating round(s), raw first; "
        "CPU in µs per delivery (utime+stime over the round)",
        chain.machine_line(),
        "",
        "| round | side | deliveries | seconds | deliveries/s | CPU own process | CPU RabbitMQ "
        "| CPU PostgreSQL | CPU receiver | receiver hits | attempts recorded |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for round_no, sides in enumerate(rounds, start=1):
        for side in sides:
            errors = f" ({side.errors} non-2xx)" if side.errors else ""
            lines.append(
                f"| {round_no} | {side.side} | {side.count} | {side.seconds:.2f} "
                f"| {side.rate:.0f} | {_us(side.own_cpu_s, side.count)} "
                f"| {_us(side.rabbit_cpu_s, side.count)} | {_us(side.pg_cpu_s, side.count)} "
                f"| {_us(side.receiver_cpu_s, side.count)} | {side.hits}{errors} "
                f"| {'—' if side.attempts is None else side.attempts} |"
            )
    nespay = [sides[-1] for sides in rounds]
    nespay_rate = statistics.median(r.rate for r in nespay)
    nespay_cpu = statistics.median(r.own_cpu_s / r.count for r in nespay)
    lines += ["", "| compared with | raw deliveries/s | ratio (rate) | ratio (own CPU) |",
              "|---|---|---|---|"]  # fmt: skip
    ratios = []
    for n, level in enumerate(raw_levels):
        raw = [sides[n] for sides in rounds]
        raw_rate = statistics.median(r.rate for r in raw)
        raw_cpu = statistics.median(r.own_cpu_s / r.count for r in raw)
        ratios.append(nespay_rate / raw_rate)
        lines.append(
            f"| raw loop, {level} in flight | {raw_rate:.0f} | **{nespay_rate / raw_rate:.2f}×** "
            f"| {raw_cpu / nespay_cpu:.2f}× |"
        )
    p50, p95 = chain.percentile(lags, 50), chain.percentile(lags, 95)
    p99 = chain.percentile(lags, 99)
    lines += [
        "",
        f"median over the rounds: Nespay **{nespay_rate:.0f} deliveries/s** "
        f"({nespay_cpu * 1e6:.0f} µs of jobs-process CPU per delivery); jobs process RSS after "
        f"the load {jobs_rss_mb:.0f} MB",
        f"goal ≥ 1,000 deliveries/s: {'met' if nespay_rate >= 1000 else 'missed'}; "
        f"goal ≥ 0.5× the raw loop (the fastest of the raw rows): "
        f"{'met' if min(ratios) >= 0.5 else 'missed'} ({min(ratios):.2f}×)",
        "",
        f"lag, invoice `paid` commit → receiver has `invoice.paid` ({len(lags)} invoices, "
        f"{args.lag_gap_ms} ms apart, jobs process otherwise idle):",
        "",
        "| n | p50 ms | p95 ms | p99 ms | max ms | jobs CPU ms per event |",
        "|---|---|---|---|---|---|",
        f"| {len(lags)} | {p50:.1f} | {p95:.1f} | {p99:.1f} | {max(lags):.1f} "
        f"| {lag_cpu_s / len(lags) * 1000:.2f} |",
        "",
        f"goal p95 ≤ 200 ms: {'met' if p95 <= 200 else 'missed'}",
    ]
    return "\n".join(lines)


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="deliveries per round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds, raw first")
    parser.add_argument("--merchants", type=int, default=4, help="one endpoint each")
    parser.add_argument("--chunks", type=int, default=4, help="insert transactions per round")
    parser.add_argument(
        "--raw-concurrency",
        default="256,16",
        help="POSTs in flight in the raw loop, one raw row each (256: Nespay's default)",
    )
    parser.add_argument(
        "--callback-concurrency",
        type=int,
        default=256,
        help="CALLBACK_CONCURRENCY of the jobs process (256: the default)",
    )
    parser.add_argument("--lag-events", type=int, default=200, help="invoices turned paid")
    parser.add_argument("--lag-gap-ms", type=int, default=20, help="pause after each commit")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per Nespay round")
    return parser


def main() -> None:
    print(run(argument_parser().parse_args()))


if __name__ == "__main__":
    main()
