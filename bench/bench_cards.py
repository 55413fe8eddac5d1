"""Card authorisation decisions (`transaction.requested`) at a fixed request rate, through the
real webhook process, beside a raw ASGI + asyncpg endpoint running the same decision.

- thing: `POST /api/v1/webhooks/rain` on `nespay serve webhook`: the source address, the body
  under its cap, the `signature` HMAC, the JSON, then `nespay.cards.authorisations.decide` —
  one statement that stores the webhook (handled), finds the card, its card user and
  merchant, holds the amount on the card user's account with the balance check in the
  UPDATE's WHERE, records the pending ledger transfer and the authorisation — and the answer
  (200 `{"code":"ok"}` or 402 with a `rejectionCode`).
- baseline: `app_card_decide`: the same HMAC check and JSON parse, then the very same
  statement (`nespay.cards.repository.DECIDE`), in a bare ASGI app.

Load is open-loop at a fixed rate (a raw HTTP/1.1 keep-alive generator on asyncio streams,
32 connections: request k is due at start + k/rate and its latency counts from then, so a
slow answer cannot hide the requests queued behind it — no coordinated omission), every
request a new authorisation (its own event and transaction id) on one of `--users` funded
card users; one in ten goes to a locked card (declined NOT_PERMITTED).
Goal: p99 ≤ 50 ms at 200 requests/s.

`.venv/bin/python -m bench.bench_cards [--rates 200,400 --duration 20 --rounds 2 --users 50]`
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import os
import random
import secrets
import statistics
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import asyncpg
import orjson
import uvloop

from bench import harness

PATH = "/api/v1/webhooks/rain"
NESPAY = "nespay webhook POST /api/v1/webhooks/rain (transaction.requested)"
RAW = "raw ASGI + asyncpg HMAC + the same decision statement"
KEY = "bench-rain-key-" + secrets.token_hex(8)
TOKEN = "0x" + "ab" * 20
LOCKED = "bench-card-locked"
CONNECTIONS = 32  # keep-alive connections of the load generator


async def _setup(dsn: str, users: int) -> None:
    """A merchant, `users` approved card users each funded with 100,000 USDT (a card each),
    and one card user with a locked card — the funding through the ledger's own `record`."""
    from nespay.ledger import accounts
    from nespay.ledger import repository as ledger_repository
    from nespay.ledger.service import Transfer, record

    conn = await asyncpg.connect(dsn)
    try:
        currency = await conn.fetchval(
            "SELECT id FROM currencies WHERE network_code = 'local' AND code = 'USDT'"
        )
        merchant = "mer_benchcards"
        await conn.execute(
            "INSERT INTO merchants (id, name, email, country)"
            " VALUES ($1, $1, 'b@example.com', 'ID')",
            merchant,
        )
        per_user = 100_000 * 10**6
        async with conn.transaction():
            await record(
                conn,
                [
                    Transfer(
                        "bench/capital",
                        "payment",
                        accounts.platform("custody", currency),
                        accounts.merchant(merchant, currency),
                        per_user * (users + 1),
                        merchant_id=merchant,
                    )
                ],
            )
        for n in range(users + 1):
            user_id = f"cu_bench{n:05d}"
            card = f"bench-card-{n}" if n < users else LOCKED
            await conn.execute(
                "INSERT INTO card_users (id, merchant_id, rain_user_id, application_status,"
                " currency_id, cent_units) VALUES ($1, $2, $3, 'approved', $4, 10000)",
                user_id,
                merchant,
                f"bench-user-{n}",
                currency,
            )
            await conn.execute(
                "INSERT INTO cards (id, merchant_id, card_user_id, rain_card_id, type, status)"
                " VALUES ($1, $2, $3, $4, 'virtual', $5)",
                f"card_bench{n:05d}",
                merchant,
                user_id,
                card,
                "locked" if card == LOCKED else "active",
            )
            available = accounts.card_user(merchant, user_id, currency)
            spend = accounts.card_spend(merchant, user_id, currency)
            async with conn.transaction():
                await ledger_repository.create_accounts(
                    conn, [(spend.id, merchant, spend.kind, currency, spend.limited)]
                )
                await record(
                    conn,
                    [
                        Transfer(
                            f"bench/fund/{n}",
                            "card_funding",
                            accounts.merchant(merchant, currency),
                            available,
                            per_user,
                            merchant_id=merchant,
                        )
                    ],
                )
    finally:
        await conn.close()


def _requests(count: int, users: int) -> list[tuple[bytes, str]]:
    """`count` signed authorisations, each new (a fresh nonce in every id)."""
    nonce = secrets.token_hex(6)
    made = []
    for n in range(count):
        card = LOCKED if n % 10 == 9 else f"bench-card-{random.randrange(users)}"  # noqa: S311
        cents = random.randrange(100, 5_000)  # noqa: S311
        body = orjson.dumps(
            {
                "id": f"evt-{nonce}-{n}",
                "resource": "transaction",
                "action": "requested",
                "body": {
                    "id": f"tx-{nonce}-{n}",
                    "type": "spend",
                    "spend": {
                        "amount": cents,
                        "currency": "usd",
                        "cardId": card,
                        "cardType": "virtual",
                        "localAmount": cents,
                        "localCurrency": "USD",
                        "merchantName": "Bench Coffee",
                        "merchantCategory": "Restaurants",
                        "merchantCountry": "US",
                        "authorizedAmount": cents,
                        "status": "pending",
                    },
                },
            }
        )
        made.append((body, hmac.new(KEY.encode(), body, hashlib.sha256).hexdigest()))
    return made


@dataclass
class Run:
    label: str
    rate: int
    sent: int
    seconds: float
    latencies_ms: list[float]
    approved: int
    declined: int
    errors: int
    cpu_s: float = 0.0  # the server's CPU (user + system) during the run

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _fixed_rate(url: str, rate: int, seconds: float, label: str, users: int) -> Run:
    """Open-loop load: request k is handed to a free connection at start + k/rate; its
    latency counts from then (queueing for a connection included). The client is raw HTTP/1.1
    keep-alive on asyncio streams, so the generator costs little CPU next to the servers."""
    parts = urlsplit(url)
    requests = [
        (
            f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: application/json\r\nsignature: {signature}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
        for body, signature in _requests(int(rate * seconds), users)
    ]
    latencies: list[float] = []
    outcome = {"approved": 0, "declined": 0, "errors": 0}
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            while (item := await queue.get()) is not None:
                due, request = item
                writer.write(request)
                status = await _read_answer(reader)
                latencies.append((time.perf_counter() - due) * 1000)
                key = {200: "approved", 402: "declined"}.get(status, "errors")
                outcome[key] += 1
        finally:
            writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(CONNECTIONS)]
    await asyncio.sleep(0.2)  # connected
    start = time.perf_counter()
    for k, request in enumerate(requests):
        due = start + k / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((due, request))
    for _ in workers:
        queue.put_nowait(None)
    done = await asyncio.gather(*workers, return_exceptions=True)
    outcome["errors"] += sum(1 for d in done if isinstance(d, BaseException))
    elapsed = time.perf_counter() - start
    return Run(label, rate, len(requests), elapsed, latencies, **outcome)


async def _read_answer(reader: asyncio.StreamReader) -> int:
    """One HTTP/1.1 answer read off the connection (by Content-Length, or chunked); its
    status."""
    head = (await reader.readuntil(b"\r\n\r\n")).lower()
    if b"content-length:" in head:
        await reader.readexactly(int(head.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0]))
    else:  # chunked
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            await reader.readexactly(size + 2)
        await reader.readuntil(b"\r\n")
    return int(head.split(b" ", 2)[1])


def _run_load(url: str, rate: int, seconds: float, label: str, users: int) -> Run:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_fixed_rate(url, rate, seconds, label, users))


def measure(servers: dict[str, harness.Server], args: argparse.Namespace) -> list[Run]:
    runs: list[Run] = []
    for rate in args.rates:
        for label, server in servers.items():  # warm-up, not counted
            _run_load(server.url, rate, args.warmup, label, args.users)
        for round_ in range(args.rounds):
            order = list(servers.items())
            if round_ % 2:
                order.reverse()
            for label, server in order:
                ticks = server.cpu_ticks()
                run = _run_load(server.url, rate, args.duration, label, args.users)
                run.cpu_s = (server.cpu_ticks() - ticks) / os.sysconf("SC_CLK_TCK")
                print(
                    f"  {label} @ {rate}/s: p50 {run.percentile(0.5):.1f} ms, "
                    f"p99 {run.percentile(0.99):.1f} ms, {run.errors} errors, "
                    f"{run.cpu_s * 1e6 / max(run.sent, 1):.0f} µs CPU/request, "
                    f"load average {os.getloadavg()[0]:.1f}"
                )
                runs.append(run)
    return runs


def report(runs: list[Run], args: argparse.Namespace) -> str:
    lines = [
        "| target | rate/s | achieved/s | p50 ms | p90 ms | p99 ms | max ms | CPU µs/req | "
        "approved | declined | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for rate in args.rates:
        for label in (RAW, NESPAY):
            mine = [r for r in runs if r.rate == rate and r.label == label]
            merged = [x for r in mine for x in r.latencies_ms]
            every = Run(label, rate, sum(r.sent for r in mine), sum(r.seconds for r in mine),
                        merged, sum(r.approved for r in mine), sum(r.declined for r in mine),
                        sum(r.errors for r in mine))  # fmt: skip
            lines.append(
                f"| {label} | {rate} | {every.sent / every.seconds:.0f} | "
                f"{every.percentile(0.5):.1f} | {every.percentile(0.9):.1f} | "
                f"{every.percentile(0.99):.1f} | {max(merged, default=float('nan')):.1f} | "
                f"{sum(r.cpu_s for r in mine) * 1e6 / max(every.sent, 1):.0f} | "
                f"{every.approved} | {every.declined} | {every.errors} |"
            )
    nespay = [r for r in runs if r.label == NESPAY and r.rate == args.rates[0]]
    p99 = statistics.median(r.percentile(0.99) for r in nespay) if nespay else float("nan")
    verdict = "met" if p99 <= 50 else "MISSED"
    rounds = ", ".join(f"{r.percentile(0.99):.1f}" for r in nespay)
    lines.append(
        f"\nGoal p99 ≤ 50 ms at {args.rates[0]}/s: {verdict} (median of the rounds' p99: "
        f"{p99:.1f} ms; rounds: {rounds} ms)."
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> str:
    print(
        f"card authorisations: {NESPAY} vs {RAW}, rates {args.rates}/s, {args.duration}s x "
        f"{args.rounds} rounds, {args.users} card users"
    )
    with harness.scratch_database("_cards") as db:
        harness.enable_usdt_on_local(db, TOKEN)
        asyncio.run(_setup(db.dsn, args.users))
        os.environ["BENCH_RAIN_KEY"] = KEY  # the baseline server inherits it
        env = {"RAIN_API_KEY": KEY, "WEBHOOK_RAIN_ALLOWED_IPS": "127.0.0.1"}
        with harness.running(
            [
                harness.baseline_server(RAW, "app_card_decide", "/webhooks/rain", db),
                harness.nespay_server("nespay webhook", "webhook", PATH, db, env, "/api/v1/health"),
            ]
        ) as (raw, nespay):
            runs = measure({RAW: raw, NESPAY: nespay}, args)
    return report(runs, args)


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rates", type=lambda s: [int(x) for x in s.split(",")], default=[200, 400]
    )
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--users", type=int, default=50)
    return parser


def main() -> None:
    print(run(argument_parser().parse_args()))


if __name__ == "__main__":
    main()
