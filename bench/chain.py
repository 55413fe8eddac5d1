"""Shared pieces of the chain benchmarks (detection, catch-up, scale): an anvil of their own,
the seeded `local` network pointed at it, open invoices bulk-loaded by COPY, and Nespay's
scanner run in-process against a scratch database.

Everything here talks to 127.0.0.1 only: anvil on a free port, the scratch database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import statistics
import subprocess
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench import harness
from bench.harness import ScratchDatabase

TOKEN_DECIMALS = 6
AMOUNT = 10 * 10**TOKEN_DECIMALS  # every invoice is 10 USDT, paid exactly
NETWORK = "local"


# --- anvil -------------------------------------------------------------------------------------


@dataclass
class Chain:
    url: str
    process: subprocess.Popen[bytes]
    token: str = ""

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1)

    def cpu_ticks(self) -> int:
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])


@contextlib.contextmanager
def anvil(block_time: float | None = None, extra_args: Sequence[str] = ()) -> Iterator[Chain]:
    """A fresh anvil on a free loopback port with a 6-decimal test token (USDT), account 0
    holding plenty of it; stopped afterwards."""
    from nespay.chains import localchain

    port = harness.free_port()
    process = localchain.start_anvil(port, block_time=block_time, extra_args=extra_args)
    chain = Chain(f"http://127.0.0.1:{port}", process)
    try:
        chain.token = localchain.deploy_test_token(chain.url, "Tether Test", "USDT", TOKEN_DECIMALS)
        localchain.mint(chain.url, chain.token, localchain.accounts(chain.url)[0], 10**18)
        yield chain
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def register(db: ScratchDatabase, chain: Chain) -> None:
    """`local` enabled, USDT = the chain's token, the chain as its only enabled endpoint."""
    harness.enable_usdt_on_local(db, chain.token, rpc_url=chain.url)


# --- bulk-loaded open invoices -----------------------------------------------------------------


def random_addresses(count: int) -> list[str]:
    """Distinct random 20-byte addresses, lower case (as Nespay stores EVM addresses)."""
    seen: set[str] = set()
    while len(seen) < count:
        seen.update("0x" + os.urandom(20).hex() for _ in range(count - len(seen)))
    return list(seen)


async def bulk_invoices(
    db: ScratchDatabase,
    addresses: Sequence[str],
    *,
    chunk: int = 250_000,
    network: str | None = None,
    chain_family: str = "evm",
) -> float:
    """One open (pending, expiring in a day) 10 USDT invoice on `local` per address, each with
    its invoice_options row, loaded with COPY; then ANALYZE, as autovacuum would after a load
    this size. Returns the seconds taken.

    The rows are valid for the schema (the API could have made them); the load skips the
    foreign-key triggers (`session_replication_role = replica`, this session only: the rows
    point at the scratch database's one merchant, network and currency) and uses plain
    counters as ids (`inv_b…`), a third faster than with them.
    """
    started = time.perf_counter()
    conn = await asyncpg.connect(db.dsn)
    try:
        await conn.execute("SET session_replication_role = replica")
        merchant = await conn.fetchval("SELECT id FROM merchants ORDER BY created_at LIMIT 1")
        network = network or NETWORK
        currency = await conn.fetchval(
            "SELECT id FROM currencies WHERE network_code = $1 AND code = 'USDT'", network
        )
        now = datetime.now(UTC)
        expires = now + timedelta(days=1)
        price, amount, rate = Decimal(10), Decimal(AMOUNT), Decimal(1)
        run = os.urandom(4).hex()
        offset = await conn.fetchval("SELECT count(*) FROM invoices")
        for start in range(0, len(addresses), chunk):
            part = addresses[start : start + chunk]
            ids = [f"inv_b{run}{offset + start + n:012d}" for n in range(len(part))]
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "invoices",
                    columns=[
                        "id",
                        "merchant_id",
                        "price_amount",
                        "price_currency",
                        "expires_at",
                        "created_at",
                        "updated_at",
                    ],  # fmt: skip
                    records=[(i, merchant, price, "USDT", expires, now, now) for i in ids],
                )
                await conn.copy_records_to_table(
                    "invoice_options",
                    columns=[
                        "id",
                        "invoice_id",
                        "network_code",
                        "currency_id",
                        "chain_family",
                        "address",
                        "amount",
                        "rate",
                    ],  # fmt: skip
                    records=[
                        ("opt" + i[3:], i, network, currency, chain_family, a, amount, rate)
                        for i, a in zip(ids, part, strict=True)
                    ],
                )
        await conn.execute("ANALYZE invoices")
        await conn.execute("ANALYZE invoice_options")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def reset_payments(db: ScratchDatabase) -> None:
    """Back to "nothing paid yet" (for another round over the same blocks): payments, events
    and stored block hashes gone, invoices and options as loaded; then VACUUM ANALYZE."""
    conn = await asyncpg.connect(db.dsn)
    try:
        await conn.execute("DELETE FROM payments")
        await conn.execute("DELETE FROM events")
        await conn.execute("DELETE FROM chain_blocks")
        await conn.execute(
            "UPDATE invoices SET status = 'pending', paid_ppm = 0, overpaid = false,"
            " paid_late = false, paid_at = NULL, confirmed_at = NULL WHERE status <> 'pending'"
        )
        await conn.execute("UPDATE invoice_options SET amount_paid = 0 WHERE amount_paid <> 0")
        for table in ("payments", "events", "chain_blocks", "invoices", "invoice_options"):
            await conn.execute(f"VACUUM ANALYZE {table}")
    finally:
        await conn.close()


async def set_cursor(
    db: ScratchDatabase, number: int, block_hash: str, network: str | None = None
) -> None:
    """The scan cursor of `local` at `number` (created if missing), lease free."""
    conn = await asyncpg.connect(db.dsn)
    try:
        await conn.execute(
            """
            INSERT INTO chain_cursors (network_code, block_number, block_hash)
            VALUES ($1, $2, $3)
            ON CONFLICT (network_code) DO UPDATE SET block_number = $2, block_hash = $3,
                lease_owner = NULL, lease_expires_at = NULL
            """,
            network or NETWORK,
            number,
            block_hash,
        )
    finally:
        await conn.close()


# --- Nespay's scanner, in-process --------------------------------------------------------------


def quiet_logs() -> None:
    """The scanner logs a line per batch with transfers at info; keep the bench output clean."""
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


@contextlib.asynccontextmanager
async def scanner(
    db: ScratchDatabase, network: str | None = None, **settings: Any
) -> AsyncIterator[Any]:
    """`NetworkScanner(runtime, "local", owner, httpx.AsyncClient())` with its lease, on a jobs
    runtime built from Nespay's settings for the scratch database (no Redis), as
    tests/payments/conftest.py builds it. `settings` override (e.g. scanner_batch_blocks)."""
    from nespay.chains.scanner import NetworkScanner
    from nespay.config import Settings
    from nespay.runtime import Runtime

    quiet_logs()
    values: dict[str, Any] = {
        "app_env": "test",
        "database_url": db.url,
        "redis_enabled": False,
        "log_level": "warning",
        **settings,
    }
    runtime = Runtime(Settings(_env_file=None, **values), "jobs")  # type: ignore[call-arg]
    await runtime.start()
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            found = NetworkScanner(runtime, network or NETWORK, f"bench-{os.getpid()}", http)
            if not await found.acquire():
                raise RuntimeError("the scanner could not take the lease on local")
            try:
                yield found
            finally:
                await found.release()
    finally:
        await runtime.close()


async def rewind(found: Any, db: ScratchDatabase, number: int, block_hash: str) -> None:
    """Move the scanner's cursor back to `number` and take the lease again."""
    await found.release()
    await set_cursor(db, number, block_hash)
    if not await found.acquire():
        raise RuntimeError("the scanner could not take the lease on local again")


async def backend_cpu_s(db: ScratchDatabase) -> float:
    """CPU seconds (utime + stime) of every PostgreSQL backend now connected to the scratch
    database: the database side of the work (same machine; read from /proc)."""
    conn = await asyncpg.connect(db.dsn)
    try:
        pids = [
            row[0]
            for row in await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                db.name,
            )
        ]
    finally:
        await conn.close()
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total * harness.TICK_US / 1e6


# --- small things ------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def block_hash(url: str, number: int) -> str:
    from nespay.chains import localchain

    return localchain.get_block(url, number)["hash"]


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)


def machine_line() -> str:
    load = ", ".join(f"{n:.2f}" for n in os.getloadavg())
    return f"load average at the end: {load}"
