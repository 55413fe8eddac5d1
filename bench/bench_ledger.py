"""The ledger's write paths, in-process on a scratch database of their own:

(a) batches of posted transfers across many accounts through `nespay.ledger.service.record`,
    committed per batch, beside a raw baseline doing the same writes with asyncpg (the same
    `ledger_transfers` rows in one multi-row INSERT, the same account counter UPDATEs in one
    statement per batch): transfers/s and the ratio (goal ≥ 0.5×);
(b) posted transfers on ONE hot account, each its own transaction, from many clients
    (goal ≥ 1,000/s); and the same transfers handed to `record` in batches of `--hot-batch`
    (a transaction per batch, as the scanner records a block's payments): transfers/s;
(c) holds (pending debits of one limited merchant account, each its own request-sized
    transaction) from many concurrent clients (goal ≥ 200/s).

Merchants are inserted in SQL on the scratch database (a thousand of them: the CLI makes one
per call, with an API key). Rounds alternate Nespay and the baseline.

`.venv/bin/python -m bench.bench_ledger [--rounds 3 --batches 100 --batch-size 100
 --accounts 1000 --hot 4000 --hot-batch 10 --holds 4000 --clients 16]`
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import asyncpg

from bench import harness

RAW_INSERT = """
INSERT INTO ledger_transfers (id, key, type, code, debit_account_id, credit_account_id,
                              currency_id, amount, merchant_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::numeric[], $9::text[])
"""
RAW_UPDATE = """
UPDATE ledger_accounts a
SET debits_posted = a.debits_posted + d.debits, credits_posted = a.credits_posted + d.credits
FROM unnest($1::text[], $2::numeric[], $3::numeric[]) AS d(id, debits, credits)
WHERE a.id = d.id
"""


async def _setup(dsn: str, merchants: int) -> tuple[str, list[str]]:
    conn = await asyncpg.connect(dsn)
    try:
        currency = await conn.fetchval(
            "SELECT id FROM currencies ORDER BY network_code, code LIMIT 1"
        )
        ids = [f"mer_bench{n:06d}" for n in range(merchants)]
        await conn.execute(
            "INSERT INTO merchants (id, name, email, country)"
            " SELECT id, id, 'bench@example.com', 'ID' FROM unnest($1::text[]) AS id",
            ids,
        )
    finally:
        await conn.close()
    return currency, ids


def _credits(currency: str, merchants: list[str], tag: str, amount: int = 1_000):
    from nespay.ledger import accounts
    from nespay.ledger.service import Transfer

    custody = accounts.platform("custody", currency)
    return [
        Transfer(
            f"bench/{tag}/{n}",
            "payment",
            custody,
            accounts.merchant(merchant, currency),
            amount,
            merchant_id=merchant,
        )
        for n, merchant in enumerate(merchants)
    ]


async def _nespay_batches(conn, batches) -> float:  # noqa: ANN001
    from nespay.ledger.service import record

    began = time.perf_counter()
    for batch in batches:
        async with conn.transaction():
            await record(conn, batch)
    return time.perf_counter() - began


async def _raw_batches(conn, batches) -> float:  # noqa: ANN001
    from nespay.kit.ids import new_id

    began = time.perf_counter()
    for batch in batches:
        base = new_id("btx")
        deltas: dict[str, list[int]] = {}
        for t in batch:
            deltas.setdefault(t.debit.id, [0, 0])[0] += t.amount
            deltas.setdefault(t.credit.id, [0, 0])[1] += t.amount
        changes = sorted(deltas.items())
        async with conn.transaction():
            await conn.execute(
                RAW_INSERT,
                [f"{base}{n:05d}" for n in range(len(batch))],
                [t.key for t in batch],
                [t.type for t in batch],
                [t.code for t in batch],
                [t.debit.id for t in batch],
                [t.credit.id for t in batch],
                [t.debit.currency_id for t in batch],
                [t.amount for t in batch],
                [t.merchant_id for t in batch],
            )
            await conn.execute(
                RAW_UPDATE,
                [c[0] for c in changes],
                [c[1][0] for c in changes],
                [c[1][1] for c in changes],
            )
    return time.perf_counter() - began


async def _concurrent(pool, transfers, clients: int, batch: int = 1) -> tuple[float, int]:  # noqa: ANN001
    """`batch` transfers a transaction (one `record` call), `clients` at a time; (seconds,
    refused)."""
    from nespay.ledger.service import InsufficientBalance, record

    queue = [transfers[n : n + batch] for n in range(0, len(transfers), batch)][::-1]
    refused = 0

    async def client() -> None:
        nonlocal refused
        async with pool.acquire() as conn:
            while queue:
                chosen = queue.pop()
                try:
                    async with conn.transaction():
                        await record(conn, chosen)
                except InsufficientBalance:
                    refused += 1

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - began, refused


async def measure(db: harness.ScratchDatabase, args: argparse.Namespace) -> dict[str, list]:
    from nespay.ledger import accounts
    from nespay.ledger.service import Transfer, record

    currency, merchants = await _setup(db.dsn, args.accounts)
    results: dict[str, list] = {"nespay": [], "raw": [], "hot": [], "batched": [], "holds": []}
    pool = await asyncpg.create_pool(db.dsn, min_size=args.clients, max_size=args.clients)
    try:
        async with pool.acquire() as conn:
            # Warm-up: every account exists and is known to this process.
            async with conn.transaction():
                await record(conn, _credits(currency, merchants, "warm"))
            n = args.batch_size
            for round_no in range(1, args.rounds + 1):
                for side in ("raw", "nespay"):
                    batches = []
                    for b in range(args.batches):
                        start = (b * n) % len(merchants)
                        chosen = (merchants * 2)[start : start + n]
                        batches.append(_credits(currency, chosen, f"{side}{round_no}/{b}"))
                    run = _raw_batches if side == "raw" else _nespay_batches
                    seconds = await run(conn, batches)
                    rate = args.batches * n / seconds
                    results[side].append(rate)
                    print(
                        f"  round {round_no}: {side:<7} {rate:>9.0f} transfers/s (batches of {n})"
                    )
        hot = merchants[0]
        custody = accounts.platform("custody", currency)
        merchant = accounts.merchant(hot, currency)
        payouts = accounts.platform("payouts", currency)
        for round_no in range(1, args.rounds + 1):
            credits = [
                Transfer(
                    f"bench/hot{round_no}/{i}",
                    "payment",
                    custody,
                    merchant,
                    1_000_000,
                    merchant_id=hot,
                )  # fmt: skip
                for i in range(args.hot)
            ]
            seconds, _ = await _concurrent(pool, credits, args.clients)
            results["hot"].append(args.hot / seconds)
            batched = [
                Transfer(
                    f"bench/hotb{round_no}/{i}",
                    "payment",
                    custody,
                    merchant,
                    1_000_000,
                    merchant_id=hot,
                )  # fmt: skip
                for i in range(args.hot)
            ]
            seconds, _ = await _concurrent(pool, batched, args.clients, args.hot_batch)
            results["batched"].append(args.hot / seconds)
            holds = [
                Transfer(
                    f"bench/hold{round_no}/{i}",
                    "withdrawal",
                    merchant,
                    payouts,
                    1,
                    type="pending",
                    merchant_id=hot,
                )  # fmt: skip
                for i in range(args.holds)
            ]
            seconds, refused = await _concurrent(pool, holds, args.clients)
            if refused:
                raise SystemExit(f"{refused} holds refused: the hot account ran dry")
            results["holds"].append(args.holds / seconds)
            print(
                f"  round {round_no}: hot account {results['hot'][-1]:>7.0f} posted/s, "
                f"{results['batched'][-1]:>7.0f} posted/s in batches of {args.hot_batch}, "
                f"{results['holds'][-1]:>7.0f} holds/s ({args.clients} clients)"
            )
    finally:
        await pool.close()
    return results


def run(args: argparse.Namespace) -> str:
    print(
        f"ledger: {args.rounds} round(s); {args.batches} batches of {args.batch_size} across "
        f"{args.accounts} accounts; {args.hot} posted and {args.holds} holds on one hot "
        f"account from {args.clients} clients"
    )
    with harness.scratch_database("_ledger") as db:
        results = asyncio.run(measure(db, args))
    return report(args, results)


def report(args: argparse.Namespace, results: dict[str, list]) -> str:
    nespay, raw = statistics.median(results["nespay"]), statistics.median(results["raw"])
    hot, holds = statistics.median(results["hot"]), statistics.median(results["holds"])
    batched = statistics.median(results["batched"])
    ratio = nespay / raw

    def verdict(ok: bool) -> str:
        return "met" if ok else "missed"

    return "\n".join(
        [
            "\n## ledger: transfers/s\n",
            f"{args.rounds} round(s), medians; {harness.invocation()}",
            "",
            "| what | rate | goal | |",
            "|---|---|---|---|",
            f"| (a) `record`, batches of {args.batch_size} posted, {args.accounts} accounts "
            f"| {nespay:,.0f} transfers/s | — | |",
            f"| (a) raw asyncpg: one INSERT + one UPDATE per batch | {raw:,.0f} transfers/s "
            "| — | |",
            f"| (a) ratio | **{ratio:.2f}×** | ≥ 0.5× | {verdict(ratio >= 0.5)} |",
            f"| (b) posted, one hot account, a transaction each, {args.clients} clients "
            f"| {hot:,.0f} /s | ≥ 1,000/s | {verdict(hot >= 1_000)} |",
            f"| (b) the same, {args.hot_batch} transfers per `record` call and transaction, "
            f"{args.clients} clients | {batched:,.0f} /s | (≥ 1,000/s if batches count) "
            f"| {verdict(batched >= 1_000)} |",
            f"| (c) holds, one hot limited account, a transaction each, {args.clients} clients "
            f"| {holds:,.0f} /s | ≥ 200/s | {verdict(holds >= 200)} |",
            "",
            "rounds: "
            + "; ".join(f"{k} " + ", ".join(f"{v:.0f}" for v in vs) for k, vs in results.items()),
        ]
    )


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--accounts", type=int, default=1_000)
    parser.add_argument("--hot", type=int, default=4_000, help="posted transfers on one account")
    parser.add_argument(
        "--hot-batch", type=int, default=10, help="transfers per record call in (b) batched"
    )
    parser.add_argument("--holds", type=int, default=4_000, help="holds on one account")
    parser.add_argument("--clients", type=int, default=16)
    return parser


def main() -> None:
    print(run(argument_parser().parse_args()))


if __name__ == "__main__":
    main()
