"""The `ledger.invariants` check on a big ledger, in-process on a scratch database of its own.

The ledger is built through `nespay.ledger.service.record` (batches committed one by one):
payments seen then confirmed with a fee, a few voided by a reorg, withdrawal holds posted in
part or voided, across `--merchants` merchants and two currencies, until it holds about
`--transfers` transfers. Then `invariants.check` runs `--rounds` times, each in its own
read-only REPEATABLE READ transaction (as the job runs it): the median time, and each
statement's own (EXPLAIN ANALYZE).

`.venv/bin/python -m bench.bench_invariants [--transfers 200000 --merchants 2000 --rounds 5]`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import asyncpg

from bench import harness

BATCH = 50  # payments (or holds) per recorded batch


async def _setup(dsn: str, merchants: int) -> tuple[list[str], list[str]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT id FROM currencies ORDER BY network_code, code LIMIT 2")
        ids = [f"mer_inv{n:06d}" for n in range(merchants)]
        await conn.execute(
            "INSERT INTO merchants (id, name, email, country)"
            " SELECT id, id, 'bench@example.com', 'ID' FROM unnest($1::text[]) AS id",
            ids,
        )
    finally:
        await conn.close()
    return [row["id"] for row in rows], ids


def _round(n: int, currencies: list[str], merchants: list[str]) -> list[list]:
    """One round of batches: payments seen, then confirmed (post + fee) or voided, then
    withdrawal holds, then their posts (in part) or voids. About 8 transfers per payment."""
    from nespay.ledger import accounts
    from nespay.ledger.service import Transfer

    def parties(i: int) -> tuple[accounts.Account, accounts.Account, accounts.Account, str]:
        currency = currencies[i % len(currencies)]
        merchant_id = merchants[(i * 7919) % len(merchants)]
        return (
            accounts.platform("custody", currency),
            accounts.merchant(merchant_id, currency),
            accounts.platform("fees", currency),
            merchant_id,
        )

    seen, settled, holds, resolved = [], [], [], []
    for j in range(BATCH):
        i = n * BATCH + j
        custody, merchant, fees, m = parties(i)
        pay, wd = f"bench/{i}/pay", f"bench/{i}/wd"
        seen.append(
            Transfer(
                f"{pay}/credit",
                "payment",
                custody,
                merchant,
                1_000_000,
                type="pending",
                merchant_id=m,
            )  # fmt: skip
        )
        if j % 20 == 0:  # a reorg before confirming
            settled.append(
                Transfer(
                    f"{pay}/void",
                    "payment",
                    custody,
                    merchant,
                    None,
                    type="void",
                    pending_key=f"{pay}/credit",
                    merchant_id=m,
                )  # fmt: skip
            )
            continue
        settled += [
            Transfer(f"{pay}/post", "payment", custody, merchant, None, type="post",
                     pending_key=f"{pay}/credit", merchant_id=m),
            Transfer(f"{pay}/fee", "payment_fee", merchant, fees, 5_000, netted=True,
                     merchant_id=m),
        ]  # fmt: skip
        payouts = accounts.platform("payouts", merchant.currency_id)
        holds.append(
            Transfer(
                f"{wd}/hold",
                "withdrawal",
                merchant,
                payouts,
                400_000,
                type="pending",
                merchant_id=m,
            )  # fmt: skip
        )
        kind, amount = ("void", None) if j % 3 == 0 else ("post", 390_000)
        resolved.append(
            Transfer(
                f"{wd}/{kind}",
                "withdrawal",
                merchant,
                payouts,
                amount,
                type=kind,
                pending_key=f"{wd}/hold",
                merchant_id=m,
            )  # fmt: skip
        )
    return [seen, settled, holds, resolved]


async def _build(dsn: str, args: argparse.Namespace) -> int:
    from nespay.ledger.service import record

    currencies, merchants = await _setup(dsn, args.merchants)
    conn = await asyncpg.connect(dsn)
    began, n = time.perf_counter(), 0
    try:
        while True:
            count = await conn.fetchval("SELECT count(*) FROM ledger_transfers")
            if count >= args.transfers:
                break
            for _ in range(20):
                for batch in _round(n, currencies, merchants):
                    async with conn.transaction():
                        await record(conn, batch)
                n += 1
        await conn.execute("VACUUM ANALYZE ledger_transfers")
        await conn.execute("VACUUM ANALYZE ledger_accounts")
    finally:
        await conn.close()
    print(f"  built {count:,} transfers in {time.perf_counter() - began:.0f} s")
    return count


async def _explain(conn: asyncpg.Connection) -> dict[str, float]:
    from nespay.ledger import invariants, repository

    timings = {}
    for name, statement, args in (
        ("balance", repository._UNBALANCED, ()),
        ("accounts (projection, shortfall)", repository._ACCOUNTS_OFF, (invariants.LISTED,)),
        ("resolutions", repository._RESOLUTIONS_OFF, (invariants.LISTED,)),
    ):
        plan = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", *args)
        timings[name] = json.loads(plan)[0]["Execution Time"]
    return timings


async def measure(db: harness.ScratchDatabase, args: argparse.Namespace) -> dict:
    from nespay.ledger import invariants

    transfers = await _build(db.dsn, args)
    conn = await asyncpg.connect(db.dsn)
    seconds = []
    try:
        for round_no in range(1, args.rounds + 1):
            began = time.perf_counter()
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                findings = await invariants.check(conn)
            seconds.append(time.perf_counter() - began)
            if not findings.ok:
                raise SystemExit(f"the bench ledger is not healthy: {findings.summary()}")
            print(f"  round {round_no}: {seconds[-1] * 1000:.0f} ms ({findings.summary()})")
        statements = await _explain(conn)
    finally:
        await conn.close()
    return {"transfers": transfers, "seconds": seconds, "statements": statements}


def run(args: argparse.Namespace) -> str:
    print(f"ledger invariants: ~{args.transfers:,} transfers, {args.merchants} merchants")
    with harness.scratch_database("_invariants") as db:
        result = asyncio.run(measure(db, args))
    median = statistics.median(result["seconds"])
    lines = [
        "\n## ledger invariants: the whole-ledger check\n",
        f"{args.rounds} round(s), median; {harness.invocation()}",
        "",
        "| ledger | check (3 statements, one snapshot) |",
        "|---|---|",
        f"| {result['transfers']:,} transfers, {args.merchants} merchants × 2 currencies "
        f"| **{median * 1000:,.0f} ms** |",
        "",
        "statements (EXPLAIN ANALYZE): "
        + "; ".join(f"{name} {ms:,.0f} ms" for name, ms in result["statements"].items()),
    ]
    return "\n".join(lines)


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", type=int, default=200_000)
    parser.add_argument("--merchants", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=5)
    return parser


def main() -> None:
    print(run(argument_parser().parse_args()))


if __name__ == "__main__":
    main()
