"""Withdrawal requests through the real API against a FastAPI + asyncpg endpoint that does one
INSERT.

- thing: `POST /api/v1/withdrawals` on `nespay serve api`, an API key of a merchant made with
  `nespay merchants create`, a unique `Idempotency-Key` per request, body `{"network":"local",
  "currency":"USDT","amount":"0.01","address":…}`: the key check, rate-limit counters, the
  currency and address checks (EIP-55), the own-address check, the USD threshold (the USDT
  peg), the withdrawal row with its idempotency claim, the ledger hold (one conditional
  UPDATE of the merchant's one hot account: every request holds on the same row), the
  `withdrawal.requested` event and the audit entry, in one transaction.
- baseline: `app_fastapi_insert`: FastAPI parses the same body with a pydantic model and does
  one `INSERT … RETURNING id` through an asyncpg pool.

Goals: at least 0.5x the baseline's requests/s; p99 at most 100 ms at 64 connections.
The merchant's balance is funded in the ledger before the run (far more than a run spends).

`.venv/bin/python -m bench.bench_withdrawals [--duration 10 --rounds 2 ...]`
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg

from bench import harness
from bench.bench_invoices import UNLIMITED, USDT_CONTRACT, lua_for
from bench.harness import Load, Row, ScratchDatabase, Target

PATH = "/api/v1/withdrawals"
NESPAY = "nespay api POST /api/v1/withdrawals"
RAW = "FastAPI + asyncpg INSERT"
PAYEE = "0x8ba1f109551bD432803012645Ac136ddd64DBA72"
BODY = '{"network":"local","currency":"USDT","amount":"0.01","address":"' + PAYEE + '"}'


def prepare(db: ScratchDatabase) -> str:
    """`local` with USDT, a merchant and its key, its balance funded."""
    harness.enable_usdt_on_local(db, USDT_CONTRACT)
    key = harness.create_merchant(db, "Bench Withdrawals")
    import_hot_key(db)
    asyncio.run(fund(db))
    return key


def import_hot_key(db: ScratchDatabase) -> None:
    """`nespay wallets import-hot-key --network local`, the key on standard input."""
    import secrets
    import subprocess

    subprocess.run(
        [harness.PYTHON, "-m", "nespay.cli", "wallets", "import-hot-key", "--network", "local"],
        input=secrets.token_hex(32) + "\n",
        env=db.nespay_env(),
        capture_output=True,
        text=True,
        check=True,
    )


async def fund(db: ScratchDatabase) -> None:
    from nespay.ledger import accounts
    from nespay.ledger.service import Transfer, record

    conn = await asyncpg.connect(db.dsn)
    try:
        merchant = await conn.fetchval("SELECT id FROM merchants ORDER BY id LIMIT 1")
        currency = await conn.fetchval(
            "SELECT id FROM currencies WHERE network_code = 'local' AND code = 'USDT'"
        )
        async with conn.transaction():
            await record(
                conn,
                [
                    Transfer(
                        "bench/fund",
                        "payment",
                        accounts.platform("custody", currency),
                        accounts.merchant(merchant, currency),
                        10**15,
                        merchant_id=merchant,
                    )
                ],
            )
    finally:
        await conn.close()


def run(db: ScratchDatabase, load: Load) -> list[Row]:
    print(f"withdrawal requests: {NESPAY} vs {RAW}")
    key = prepare(db)
    lua = lua_for({"X-Api-Key": key}, BODY)
    with (
        harness.redis_env(load.redis) as redis,
        harness.running(
            [
                harness.baseline_server(
                    RAW, "app_fastapi_insert", "/withdrawals", db, ready_path="/ready"
                ),
                harness.nespay_server(
                    "nespay api", "api", PATH, db, {**UNLIMITED, **redis}, "/api/v1/health"
                ),
            ]
        ) as started,
    ):
        raw, nespay = started
        measured = harness.measure_targets(
            [Target(RAW, raw, lua=lua), Target(NESPAY, nespay, lua=lua)], load
        )
    return rows(measured, load)


def rows(measured: dict[str, harness.Measured], load: Load) -> Sequence[Row]:
    return [
        Row(
            f"withdrawal request, {load.connections} conns (goal ≥ 0.5×, p99 ≤ 100 ms)",
            measured[NESPAY],
            measured[RAW],
        )
    ]


def main() -> None:
    args = harness.argument_parser(__doc__.splitlines()[0]).parse_args()
    harness.require_wrk()
    load = harness.load_from(args)
    with harness.scratch_database() as db:
        harness.print_results("withdrawal requests", load, run(db, load))


if __name__ == "__main__":
    main()
