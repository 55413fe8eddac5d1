"""Backoffice search and stats on a million rows: latency through the real API beside the same
SQL on a raw asyncpg connection.

A scratch database (`nespay_bench_<pid>_search`, migrated and seeded by the CLI) gets
`--rows` invoices (default 1,000,000), as many invoice options, deposit addresses and
payments (one each per invoice), COPY-loaded with their secondary indexes dropped and then
rebuilt (as the migrations define them), then ANALYZE. `nespay serve api` runs with an admin
pool in a real `moto_server`; each case is asked `--requests` times in a row on one
keep-alive connection (after 5 warm-up requests), then its search SQL — compiled from the
repository's own query builder with the case's values bound — is run as many times on one
asyncpg connection. Reported: p50/p99 of both, and each case's plan (EXPLAIN ANALYZE), with
whether a trigram index served it.

The API's answer costs more than the search SQL: two more queries load the page's options
and payments (invoices), the auth check, and the JSON.

`.venv/bin/python -m bench.bench_search [--rows 1000000 --requests 100]`
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect

from bench import harness
from bench.bench_auth import moto_cognito
from bench.bench_invoices import UNLIMITED
from bench.harness import ScratchDatabase

BO = "/api/backoffice/v1"
HEALTH = "/api/v1/health"
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CHUNK = 50_000
MERCHANTS = 100
WORDS = 1000  # order ids carry one of these: a word matches ~1/1000 of the rows
ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
TABLES = ("invoices", "invoice_options", "deposit_addresses", "payments")


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(ALPHABET[rem])
    return "".join(reversed(chars))


def make_id(prefix: str, millis: int, rng: random.Random) -> str:
    return f"{prefix}_{_encode(millis, 10)}{_encode(rng.getrandbits(80), 16)}"


def hexstr(rng: random.Random, chars: int) -> str:
    return "0x" + format(rng.getrandbits(chars * 4), f"0{chars}x")


@dataclass
class Loaded:
    rows: int
    seconds: float
    index_seconds: float
    sample: dict[str, str] = field(default_factory=dict)  # what the cases look for


def _words(rng: random.Random) -> list[str]:
    return ["".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(6)) for _ in range(WORDS)]


def _chunk(start: int, size: int, total: int, ctx: dict[str, Any]) -> dict[str, list[tuple]]:
    """Rows `start`…`start + size` of each table; ids in time order over the last 90 days."""
    rng: random.Random = ctx["rng"]
    begin_ms, span_ms = ctx["begin_ms"], ctx["span_ms"]
    rows: dict[str, list[tuple]] = {table: [] for table in TABLES}
    for i in range(start, min(start + size, total)):
        millis = begin_ms + span_ms * i // total
        at = datetime.fromtimestamp(millis / 1000, UTC)
        invoice_id = make_id("inv", millis, rng)
        merchant = ctx["merchants"][i % MERCHANTS]
        address = hexstr(rng, 40)
        roll = rng.random()
        status = (
            "expired" if roll < 0.70 else "confirmed" if roll < 0.90 else "pending"
            if roll < 0.95 else "cancelled" if roll < 0.99 else "invalid"
        )  # fmt: skip
        order_id = f"ORD-{i:08d}-{ctx['words'][rng.randrange(WORDS)]}"
        rows["invoices"].append(
            (invoice_id, merchant, status, 10, "USDT", order_id, at + timedelta(minutes=15), at, at)
        )
        option_id = make_id("opt", millis, rng)
        rows["invoice_options"].append(
            (option_id, invoice_id, "local", ctx["currency"], "evm", address, 10_000_000, 1)
        )
        rows["deposit_addresses"].append(
            (make_id("dep", millis, rng), "evm", address, "hd", i, invoice_id, merchant, at)
        )
        # Payments confirm within minutes: only the newest 0.1% are still pending.
        pending = i >= total - total // 1000
        rows["payments"].append(
            (make_id("pay", millis + 1, rng), invoice_id, option_id, merchant, "local",
             ctx["currency"], hexstr(rng, 64), 0, i, hexstr(rng, 64), hexstr(rng, 40), address,
             10_000_000 if status == "confirmed" else 5_000_000,
             "pending" if pending else "confirmed", 0 if pending else 12,
             None if pending else at + timedelta(minutes=2), at)
        )  # fmt: skip
    return rows


COLUMNS = {
    "invoices": ["id", "merchant_id", "status", "price_amount", "price_currency", "order_id",
                 "expires_at", "created_at", "updated_at"],
    "invoice_options": ["id", "invoice_id", "network_code", "currency_id", "chain_family",
                        "address", "amount", "rate"],
    "deposit_addresses": ["id", "chain_family", "address", "provider", "derivation_index",
                          "invoice_id", "merchant_id", "created_at"],
    "payments": ["id", "invoice_id", "option_id", "merchant_id", "network_code", "currency_id",
                 "tx_hash", "log_index", "block_number", "block_hash", "from_address",
                 "to_address", "amount", "status", "confirmations", "confirmed_at",
                 "detected_at"],
}  # fmt: skip


async def load(dsn: str, total: int) -> Loaded:
    """COPY `total` rows into each table, secondary indexes dropped first and rebuilt after."""
    conn = await asyncpg.connect(dsn)
    try:
        currency = await conn.fetchval(
            "SELECT id FROM currencies WHERE network_code = 'local' AND code = 'USDT'"
        )
        merchant = await conn.fetchrow("SELECT * FROM merchants LIMIT 1")
        merchants = [merchant["id"]]
        for n in range(1, MERCHANTS):
            merchants.append(f"mer_bench{n:05d}")
            await conn.execute(
                "INSERT INTO merchants (id, name, email, country) VALUES ($1, $2, $3, 'ID')",
                merchants[-1], f"Bench {n}", f"bench{n}@example.com",
            )  # fmt: skip
        indexes = await conn.fetch(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i"
            " JOIN pg_class c ON c.relname = i.indexname"
            " JOIN pg_index x ON x.indexrelid = c.oid"
            " WHERE i.schemaname = 'public' AND i.tablename = ANY($1::text[])"
            " AND NOT x.indisprimary",
            list(TABLES),
        )
        for index in indexes:
            await conn.execute(f'DROP INDEX "{index["indexname"]}"')
        await conn.execute("SET session_replication_role = replica")  # no FK checks, triggers
        rng = random.Random(13)
        now_ms = int(time.time() * 1000)
        ctx = {
            "rng": rng, "currency": currency, "merchants": merchants, "words": _words(rng),
            "begin_ms": now_ms - 90 * 86_400_000, "span_ms": 90 * 86_400_000 - 60_000,
        }  # fmt: skip
        began = time.monotonic()
        sample_at = total * 3 // 4 + 7
        sample: dict[str, str] = {"word": ctx["words"][5]}
        for start in range(0, total, CHUNK):
            rows = _chunk(start, CHUNK, total, ctx)
            if start <= sample_at < start + CHUNK:
                sample.update(_sample(rows, sample_at - start))
            for table in TABLES:
                await conn.copy_records_to_table(table, records=rows[table], columns=COLUMNS[table])
            print(f"  loaded {min(start + CHUNK, total):,} of {total:,}", flush=True)
        loaded_s = time.monotonic() - began
        await conn.execute("SET maintenance_work_mem = '256MB'")
        began = time.monotonic()
        for index in indexes:
            await conn.execute(index["indexdef"])
        index_s = time.monotonic() - began
        for table in TABLES:
            await conn.execute(f"VACUUM ANALYZE {table}")
        return Loaded(total, loaded_s, index_s, sample)
    finally:
        await conn.close()


def _sample(rows: dict[str, list[tuple]], at: int) -> dict[str, str]:
    invoice, payment = rows["invoices"][at], rows["payments"][at]
    return {
        "invoice_id": invoice[0],
        "order_number": invoice[5].split("-")[1],
        "address": rows["deposit_addresses"][at][2],
        "tx_hash": payment[6],
        "payment_id": payment[0],
        "sender": payment[10],
    }


# --- the cases ---------------------------------------------------------------------------------


@dataclass
class Case:
    label: str
    path: str
    params: dict[str, Any]
    raw: list[tuple[str, list[Any]]]  # the same SQL statements, with their arguments
    api_ms: list[float] = field(default_factory=list)
    raw_ms: list[float] = field(default_factory=list)
    plan: str = ""


def _compiled(query: Any) -> str:
    return str(
        query.compile(dialect=asyncpg_dialect.dialect(), compile_kwargs={"literal_binds": True})
    )


def cases(sample: dict[str, str], limit: int = 20) -> list[Case]:
    from nespay.backoffice import repository

    def invoices(q: str | None, **filters: Any) -> list[tuple[str, list[Any]]]:
        query = repository.invoices_query(
            q, status=filters.get("status"), merchant_id=None, limit=limit + 1,
            starting_after=None,
        )  # fmt: skip
        return [(_compiled(query), [])]

    def payments(q: str) -> list[tuple[str, list[Any]]]:
        query = repository.payments_query(
            q, status=None, merchant_id=None, network=None, limit=limit + 1, starting_after=None
        )
        return [(_compiled(query), [])]

    def addresses(q: str) -> list[tuple[str, list[Any]]]:
        query = repository.addresses_query(
            q, chain_family=None, merchant_id=None, limit=limit + 1, starting_after=None
        )
        return [(_compiled(query), [])]

    found = [
        ("invoices: order id fragment, 1 match", sample["order_number"]),
        ("invoices: id fragment, 1 match", sample["invoice_id"][-12:]),
        ("invoices: tx hash fragment, 1 match", sample["tx_hash"][20:36]),
        ("invoices: address fragment, 1 match", sample["address"][8:22].upper()),
        ("invoices: word, ~0.1% of rows", sample["word"]),
        ("invoices: `ord`, every row", "ord"),
    ]
    listed = [Case(label, f"{BO}/invoices", {"q": q}, invoices(q)) for label, q in found]
    listed.append(
        Case("invoices: status=invalid, no q (1%)", f"{BO}/invoices", {"status": "invalid"},
             invoices(None, status="invalid"))
    )  # fmt: skip
    for label, q in (
        ("payments: sender fragment, 1 match", sample["sender"][10:24]),
        ("payments: id fragment, 1 match", sample["payment_id"][-12:]),
        ("payments: `0x`-less hash head, 1 match", sample["tx_hash"][2:14]),
    ):
        listed.append(Case(label, f"{BO}/payments", {"q": q}, payments(q)))
    q = sample["address"][-14:]
    listed.append(
        Case("addresses: address fragment, 1 match", f"{BO}/addresses", {"q": q}, addresses(q))
    )
    for days in (30, 366):
        listed.append(Case(f"stats: days={days}", f"{BO}/stats", {"days": days}, _stats_sql(days)))
    return listed


def _stats_sql(days: int) -> list[tuple[str, list[Any]]]:
    from nespay.backoffice import repository
    from nespay.chains import cursors
    from nespay.chains.catalog import SCANNED_FAMILIES
    from nespay.kit.ids import id_floor
    from nespay.models.invoices import INVOICE_STATUSES

    now = datetime.now(UTC)
    since = datetime.combine(now.date() - timedelta(days=days - 1), datetime.min.time(), UTC)
    floor_ms = int(since.timestamp() * 1000)

    def positional(clause: Any, name: str) -> str:
        return str(clause).replace(f":{name}", "$1")

    return [
        (positional(repository._VOLUME, "since"), [since]),
        (
            positional(repository._INVOICES, "floor").replace(":statuses", "$2"),
            [id_floor("inv", floor_ms), list(INVOICE_STATUSES)],
        ),
        (str(repository._OPEN), []),
        (positional(repository._DELIVERIES, "floor"), [id_floor("whd", floor_ms)]),
        (str(repository._PENDING_DELIVERIES), []),
        (str(repository._ENDPOINTS), []),
        ("SELECT status, count(*) FROM merchants GROUP BY status", []),
        (positional(cursors._WANTED, "families"), [list(SCANNED_FAMILIES)]),
        (positional(cursors._STATES, "networks"), [["local"]]),
    ]


# --- measuring ---------------------------------------------------------------------------------


def measure_api(base: str, token: str, case: Case, requests: int) -> None:
    headers = {"authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        for index in range(5 + requests):
            began = time.perf_counter()
            answer = client.get(case.path, params=case.params)
            elapsed = (time.perf_counter() - began) * 1000
            if answer.status_code != 200:
                raise SystemExit(f"{case.label}: {answer.status_code} {answer.text[:300]}")
            if index >= 5:
                case.api_ms.append(elapsed)


async def measure_raw(dsn: str, all_cases: list[Case], requests: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for case in all_cases:
            for index in range(5 + requests):
                began = time.perf_counter()
                async with conn.transaction(readonly=True):
                    for statement, args in case.raw:
                        await conn.fetch(statement, *args)
                if index >= 5:
                    case.raw_ms.append((time.perf_counter() - began) * 1000)
            statement, args = case.raw[0]
            plan = await conn.fetch(
                f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) {statement}", *args
            )
            case.plan = "\n".join(row[0] for row in plan)
    finally:
        await conn.close()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def report(all_cases: list[Case], loaded: Loaded, requests: int) -> Iterator[str]:
    yield (
        f"{loaded.rows:,} rows per table, COPY {loaded.seconds:.0f} s, "
        f"index rebuild {loaded.index_seconds:.0f} s; {requests} sequential requests per case"
    )
    yield ""
    yield "| case | API p50 ms | API p99 ms | raw SQL p50 ms | raw SQL p99 ms | trigram index |"
    yield "|---|---:|---:|---:|---:|---|"
    for case in all_cases:
        used = sorted({w.strip('"') for w in case.plan.split() if w.endswith("_trgm")})
        yield (
            f"| {case.label} | {statistics.median(case.api_ms):.1f} | "
            f"{percentile(case.api_ms, 0.99):.1f} | {statistics.median(case.raw_ms):.2f} | "
            f"{percentile(case.raw_ms, 0.99):.2f} | {', '.join(used) or '—'} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--plans", action="store_true", help="print every case's plan")
    parser.add_argument("--no-redis", action="store_true", help="the api without Redis")
    args = parser.parse_args()
    print(f"# {harness.invocation()}  ({os.cpu_count()} cores, load {os.getloadavg()[0]:.2f})")
    with harness.scratch_database("_search") as db:
        harness.nespay_cli(db, "merchants", "create", "--name", "Bench", "--email", "b@example.com")
        harness.nespay_cli(db, "currencies", "add", "--network", "local", "--code", "USDT",
                           "--contract", CONTRACT, "--decimals", "6")  # fmt: skip
        loaded = asyncio.run(load(db.dsn, args.rows))
        all_cases = cases(loaded.sample)
        run(db, all_cases, args.requests, not args.no_redis)
    print()
    print("\n".join(report(all_cases, loaded, args.requests)))
    for case in all_cases:
        if args.plans or case.label.startswith(("invoices: order", "invoices: `ord`")):
            print(f"\n{case.label}:\n{case.plan}")


def run(db: ScratchDatabase, all_cases: list[Case], requests: int, redis: bool) -> None:
    with moto_cognito(groups=("finance",)) as cognito, harness.redis_env(redis) as redis_settings:
        env = {**UNLIMITED, **redis_settings, **cognito.admin_env()}
        server = harness.nespay_server("nespay api", "api", HEALTH, db, env)
        with harness.running([server]):
            base = f"http://127.0.0.1:{server.port}"
            for case in all_cases:
                measure_api(base, cognito.id_token, case, requests)
    asyncio.run(measure_raw(db.dsn, all_cases, requests))


if __name__ == "__main__":
    main()
