"""The ledger against a pure-Python model of it, on the real database: a Hypothesis state
machine drives scanner batches (payments seen, confirmed with a fee, reorged before or after
confirming and counted again), withdrawal holds (posted in full or in part, voided, refused),
retries of earlier operations, second resolutions of a hold, and crashes (a batch rolled
back before commit). After every step one SQL statement reads every account of the run's
currencies and what their transfers project, and the test checks:

1. per currency, Σ debits = Σ credits for the pending and for the posted counters;
2. every account's four counters equal the projection recomputed from `ledger_transfers`;
3. a limited account is short (debits > posted credits) only if a transfer flagged
   `overdrew` debited it, and the model says it is short; the flags are the model's;
4. no pending transfer is resolved twice, nor by more than it held;
5. the counters are the model's.

Each example gets two currencies of its own (a fresh network) and three merchants, so the
projection reads only that example's transfers. Seeded (`derandomize`): CI runs the same
operations (about 4,500-5,400 here, in about a minute: Hypothesis ends an example when
its choice buffer fills, a few hundred steps here); at least `MIN_OPERATIONS` of them (1,000:
a floor that catches a harness that stopped driving the ledger; the count moves with what
else the database holds: 5,430 alone, 4,485 in the full suite).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from nespay.db import plain_dsn
from nespay.kit.ids import new_id
from nespay.ledger import accounts, postings
from nespay.ledger.service import (
    InsufficientBalance,
    PendingTransferNotResolvable,
    Recorded,
    Transfer,
    record,
)

EXAMPLES = int(os.environ.get("LEDGER_PROP_EXAMPLES", "25"))
STEPS = int(os.environ.get("LEDGER_PROP_STEPS", "450"))
MIN_OPERATIONS = int(os.environ.get("LEDGER_PROP_MIN", "1000"))
MERCHANTS = 3
BPS = 10_000
# LEDGER_PROP_SHRINK=0 reports the first failure as found (shrinking replays on the database).
PHASES = [
    p for p in Phase if p is not Phase.shrink or os.environ.get("LEDGER_PROP_SHRINK", "1") == "1"
]

AMOUNTS = st.one_of(st.integers(1, 1_000), st.integers(1, 10**9), st.integers(10**20, 10**24))
FEE_RATES = st.one_of(st.sampled_from([0, 1, 150, 9_999, BPS]), st.integers(0, BPS))


class Crash(Exception):
    """Raised inside a batch's transaction, before its commit."""


# --- the model --------------------------------------------------------------------------------


@dataclass(eq=False)  # by identity: drawn from lists, kept in sets
class Payment:
    id: str
    merchant_id: str
    currency_id: str
    amount: int
    generation: int = 0
    status: str = "pending"  # pending | confirmed | orphaned
    fee: int = 0  # the fee charged at this generation's confirmation

    def row(self, **extra: Any) -> dict[str, Any]:
        return {
            "id": self.id,
            "merchant_id": self.merchant_id,
            "currency_id": self.currency_id,
            "amount": self.amount,
            "status": self.status,
            "ledger_generation": self.generation,
            **extra,
        }

    def key(self, step: str) -> str:
        return f"{self.id}/{self.generation}/{step}"


@dataclass(eq=False)
class Hold:
    transfer: Transfer
    resolved: bool = False


@dataclass
class Model:
    """What every account should hold: [debits_pending, debits_posted, credits_pending,
    credits_posted] by account id, and the reversals that should be flagged `overdrew`."""

    counters: dict[str, list[int]] = field(default_factory=dict)
    overdrew: set[str] = field(default_factory=set)

    def balance(self, account_id: str) -> int:
        dp, dpo, _, cpo = self.counters.get(account_id, [0, 0, 0, 0])
        return cpo - dpo - dp

    def moved(self, changes: Sequence[tuple[str, int, int, int, int]]) -> dict[str, list[int]]:
        """The counters after `changes` (account, Δdebits_pending, Δdebits_posted,
        Δcredits_pending, Δcredits_posted), without keeping them."""
        after = {k: list(v) for k, v in self.counters.items()}
        for account_id, *deltas in changes:
            row = after.setdefault(account_id, [0, 0, 0, 0])
            for n, delta in enumerate(deltas):
                row[n] += delta
        return after


def pending(debit: str, credit: str, amount: int) -> list[tuple[str, int, int, int, int]]:
    return [(debit, amount, 0, 0, 0), (credit, 0, 0, amount, 0)]


def posted(debit: str, credit: str, amount: int) -> list[tuple[str, int, int, int, int]]:
    return [(debit, 0, amount, 0, 0), (credit, 0, 0, 0, amount)]


def resolved(
    debit: str, credit: str, held: int, amount: int
) -> list[tuple[str, int, int, int, int]]:
    return [(debit, -held, amount, 0, 0), (credit, 0, 0, -held, amount)]


# --- the check: one statement per step ---------------------------------------------------------

# Every account of the currencies, its counters and what its transfers project (pending adds to
# *_pending; post removes its pending transfer's amount from *_pending and adds its own to
# *_posted; void removes it; posted adds to *_posted); whether a transfer flagged `overdrew`
# debited it; and, once per row, the flagged keys and the pending transfers resolved twice or
# beyond what they held.
CHECK = """
WITH t AS (
    SELECT t.key, t.type, t.debit_account_id, t.credit_account_id, t.amount, t.overdrew,
           t.pending_id, p.amount AS held
    FROM ledger_transfers t LEFT JOIN ledger_transfers p ON p.id = t.pending_id
    WHERE t.merchant_id = ANY($2::text[]) AND t.currency_id = ANY($1::text[])
), moves AS (
    SELECT debit_account_id AS id,
           CASE type WHEN 'pending' THEN amount WHEN 'posted' THEN 0 ELSE -held END AS dp,
           CASE WHEN type IN ('posted', 'post') THEN amount ELSE 0 END AS dpo,
           0 AS cp, 0 AS cpo, overdrew
    FROM t
    UNION ALL
    SELECT credit_account_id, 0, 0,
           CASE type WHEN 'pending' THEN amount WHEN 'posted' THEN 0 ELSE -held END,
           CASE WHEN type IN ('posted', 'post') THEN amount ELSE 0 END, false
    FROM t
), projected AS (
    SELECT id, sum(dp) AS dp, sum(dpo) AS dpo, sum(cp) AS cp, sum(cpo) AS cpo,
           bool_or(overdrew) AS overdrew
    FROM moves GROUP BY id
)
SELECT a.id, a.currency_id, a.limited,
       a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted,
       coalesce(p.dp, 0) AS p_dp, coalesce(p.dpo, 0) AS p_dpo,
       coalesce(p.cp, 0) AS p_cp, coalesce(p.cpo, 0) AS p_cpo,
       coalesce(p.overdrew, false) AS overdrew,
       (SELECT coalesce(array_agg(key ORDER BY key), '{}') FROM t WHERE overdrew) AS flagged,
       (SELECT count(*) FROM (SELECT pending_id FROM t WHERE pending_id IS NOT NULL
                              GROUP BY pending_id HAVING count(*) > 1) twice) AS twice,
       (SELECT count(*) FROM t WHERE type = 'post' AND amount > held) AS beyond
FROM ledger_accounts a LEFT JOIN projected p ON p.id = a.id
WHERE a.currency_id = ANY($1::text[])
"""


def check(rows: Sequence[Any], model: Model) -> None:
    assert rows or not model.counters
    sums: dict[str, list[int]] = {}
    seen = set()
    for row in rows:
        seen.add(row["id"])
        counters = [int(row[c]) for c in ("debits_pending", "debits_posted", "credits_pending",
                                          "credits_posted")]  # fmt: skip
        projection = [int(row[c]) for c in ("p_dp", "p_dpo", "p_cp", "p_cpo")]
        assert counters == projection, (row["id"], counters, projection)  # 2
        assert counters == model.counters.get(row["id"], [0, 0, 0, 0]), (  # 5
            row["id"],
            counters,
            model.counters.get(row["id"]),
        )
        dp, dpo, cp, cpo = counters
        total = sums.setdefault(row["currency_id"], [0, 0, 0, 0])
        total[0] += dp - cp
        total[1] += dpo - cpo
        if row["limited"]:  # 3
            short = dpo + dp > cpo
            assert short == (model.balance(row["id"]) < 0)
            assert not short or row["overdrew"], f"{row['id']} short with no overdrawing reversal"
    unused = {k for k, v in model.counters.items() if any(v)} - seen
    assert not unused, f"accounts the model moved but the database lacks: {unused}"
    for currency, (pending_diff, posted_diff, *_) in sums.items():  # 1
        assert (pending_diff, posted_diff) == (0, 0), currency
    if rows:
        assert set(rows[0]["flagged"]) == model.overdrew  # 3
        assert rows[0]["twice"] == 0 and rows[0]["beyond"] == 0  # 4


# --- the machine ------------------------------------------------------------------------------


@dataclass
class Run:
    """What the whole test shares: its event loop, one connection, the operation count."""

    runner: asyncio.Runner
    conn: asyncpg.Connection
    captured: list[list[Recorded]] = field(default_factory=list)
    operations: int = 0


RUN: Run | None = None


async def _books(conn: asyncpg.Connection, fee_rates: list[int | None]) -> tuple[list, list]:
    """Two fresh currencies (on a network of their own) and a merchant per fee rate."""
    network = f"prop{new_id('n')[-12:]}".lower()
    await conn.execute(
        "INSERT INTO networks (code, name, chain_family, chain_id) VALUES ($1, $1, 'evm', 1)",
        network,
    )
    currencies = []
    for code in ("USDT", "ETH"):
        currency_id = new_id("cur")
        await conn.execute(
            "INSERT INTO currencies (id, network_code, code, name, decimals)"
            " VALUES ($1, $2, $3, $3, 6)",
            currency_id,
            network,
            code,
        )
        currencies.append(currency_id)
    merchants = []
    for bps in fee_rates:
        merchant_id = new_id("mer")
        await conn.execute(
            "INSERT INTO merchants (id, name, email, country, fee_bps)"
            " VALUES ($1, $1, 'prop@example.com', 'ID', $2)",
            merchant_id,
            bps,
        )
        merchants.append(merchant_id)
    return currencies, merchants


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        assert RUN is not None
        self.run = RUN
        self.model = Model()
        self.currencies: list[str] = []
        self.merchants: list[str] = []
        self.payments: list[Payment] = []
        self.holds: list[Hold] = []
        self.rates: dict[str, int | None] = {}
        # Earlier operations that succeeded: a coroutine factory to run again, its results.
        self.done: list[tuple[Any, list[Recorded]]] = []

    def _await(self, coroutine: Any) -> Any:
        return self.run.runner.run(coroutine)

    async def _in_transaction(self, operation: Any, *, crash: bool = False) -> list[Recorded]:
        self.run.captured.clear()
        with contextlib.suppress(Crash):
            async with self.run.conn.transaction():
                results = await operation()
                if crash:
                    raise Crash
                return results
        return []

    # -- setup -----------------------------------------------------------------------------

    @initialize(
        rates=st.lists(st.one_of(st.none(), FEE_RATES), min_size=MERCHANTS, max_size=MERCHANTS)
    )
    def open_books(self, rates: list[int | None]) -> None:
        self.currencies, self.merchants = self._await(_books(self.run.conn, rates))
        self.rates = dict(zip(self.merchants, rates, strict=True))

    def _ready(self) -> bool:
        return bool(self.currencies)

    # -- scanner batches -------------------------------------------------------------------

    @rule(data=st.data())
    def scan(self, data: st.DataObject) -> None:
        self._scan(data, crash=False)

    @rule(data=st.data())
    def scan_then_crash(self, data: st.DataObject) -> None:
        self._scan(data, crash=True)

    def _scan(self, data: st.DataObject, *, crash: bool) -> None:
        if not self._ready():
            return
        currency = data.draw(st.sampled_from(self.currencies))
        default_bps = data.draw(FEE_RATES)
        rates = {m: default_bps if bps is None else bps for m, bps in self.rates.items()}
        mine = [p for p in self.payments if p.currency_id == currency]
        live = [p for p in mine if p.status != "orphaned"]
        orphan = data.draw(st.lists(st.sampled_from(live), unique=True, max_size=3)) if live else []
        waiting = [p for p in mine if p.status == "orphaned"] + orphan
        revive = (
            data.draw(st.lists(st.sampled_from(waiting), unique=True, max_size=2))
            if waiting
            else []
        )
        confirmable = [p for p in live if p.status == "pending" and p not in orphan]
        confirm = (
            data.draw(st.lists(st.sampled_from(confirmable), unique=True, max_size=3))
            if confirmable
            else []
        )
        new = [
            Payment(new_id("pay"), data.draw(st.sampled_from(self.merchants)), currency, amount)
            for amount in data.draw(st.lists(AMOUNTS, max_size=3))
        ]
        # The batch as the payments repository returns it, and what it must do to the model.
        changes: list[tuple[str, int, int, int, int]] = []
        orphaned_rows, recorded_rows, confirmed_rows = [], [], []
        after: dict[str, tuple[str, int, int]] = {}  # payment → (status, generation, fee)
        reversals: list[tuple[str, str]] = []  # (key, merchant account)
        custody = accounts.platform("custody", currency).id
        fees = accounts.platform("fees", currency).id
        for p in orphan:
            merchant = accounts.merchant(p.merchant_id, currency).id
            orphaned_rows.append({**p.row(status="orphaned"), "previous_status": p.status})
            if p.status == "pending":
                changes += resolved(custody, merchant, p.amount, 0)
            else:
                if p.fee:
                    changes += posted(fees, merchant, p.fee)
                changes += posted(merchant, custody, p.amount)
                reversals.append((p.key("reversal"), merchant))
            after[p.id] = ("orphaned", p.generation, 0)
        for p in [*revive, *new]:
            merchant = accounts.merchant(p.merchant_id, currency).id
            generation = p.generation + 1 if p in revive else 0
            deep = data.draw(st.booleans())
            status = "confirmed" if deep else "pending"
            recorded_rows.append({**p.row(status=status), "ledger_generation": generation})
            fee = postings.fee_of(p.amount, rates[p.merchant_id]) if deep else 0
            if deep:
                changes += posted(custody, merchant, p.amount)
                if fee:
                    changes += posted(merchant, fees, fee)
            else:
                changes += pending(custody, merchant, p.amount)
            after[p.id] = (status, generation, fee)
        for p in confirm:
            merchant = accounts.merchant(p.merchant_id, currency).id
            confirmed_rows.append(p.row(status="confirmed"))
            fee = postings.fee_of(p.amount, rates[p.merchant_id])
            changes += resolved(custody, merchant, p.amount, p.amount)
            if fee:
                changes += posted(merchant, fees, fee)
            after[p.id] = ("confirmed", p.generation, fee)

        async def operation() -> list[Recorded]:
            await postings.post_payments(
                self.run.conn,
                orphaned=orphaned_rows,
                recorded=recorded_rows,
                newly_confirmed=confirmed_rows,
                default_fee_bps=default_bps,
            )
            return [r for batch in self.run.captured for r in batch]

        # A scanner batch is never refused: a refusal would stop the scanner on it for good.
        results = self._await(self._in_transaction(operation, crash=crash))
        self.run.operations += 1
        if crash:
            return
        assert all(r.created for r in results)
        counters = self.model.moved(changes)
        self.model.counters = counters
        for key, merchant in reversals:
            dp, dpo, _, cpo = counters[merchant]
            if cpo - dpo - dp < 0:
                self.model.overdrew.add(key)
        for p in [*orphan, *revive, *new, *confirm]:
            p.status, p.generation, p.fee = after[p.id]
        self.payments += new
        self.done.append((operation, results))

    # -- withdrawals -----------------------------------------------------------------------

    @rule(data=st.data(), crash=st.booleans())
    def hold(self, data: st.DataObject, crash: bool) -> None:
        if not self._ready():
            return
        merchant = accounts.merchant(
            data.draw(st.sampled_from(self.merchants)), data.draw(st.sampled_from(self.currencies))
        )
        balance = self.model.balance(merchant.id)
        amount = data.draw(
            st.one_of(
                AMOUNTS,
                st.sampled_from([max(balance, 1), max(balance + 1, 1)]),
                st.integers(1, max(balance, 1)),
            )
        )
        transfer = Transfer(
            f"test/{new_id('h')}/hold",
            "withdrawal",
            merchant,
            accounts.platform("payouts", merchant.currency_id),
            amount,
            type="pending",
            merchant_id=merchant.merchant_id,
        )
        self._record([transfer], pending(transfer.debit.id, transfer.credit.id, amount), crash)
        if not crash and amount <= balance:
            self.holds.append(Hold(transfer))

    @precondition(lambda self: any(not h.resolved for h in self.holds))
    @rule(data=st.data(), crash=st.booleans())
    def resolve_hold(self, data: st.DataObject, crash: bool) -> None:
        open_holds = [h for h in self.holds if not h.resolved]
        if not open_holds:
            return
        hold = data.draw(st.sampled_from(open_holds))
        held = hold.transfer.amount or 0
        kind = data.draw(st.sampled_from(["post", "post_all", "part", "void"]))
        amount = {
            "post": held,
            "post_all": None,
            "part": data.draw(st.integers(0, held - 1)) if held > 1 else 0,
            "void": None,
        }[kind]
        resolution = self._resolution(hold, "void" if kind == "void" else "post", amount)
        moved = 0 if kind == "void" else held if amount is None else amount
        changes = resolved(hold.transfer.debit.id, hold.transfer.credit.id, held, moved)
        if self._record([resolution], changes, crash):
            hold.resolved = True

    @precondition(lambda self: any(h.resolved for h in self.holds))
    @rule(data=st.data())
    def resolve_a_hold_again(self, data: st.DataObject) -> None:
        """Another resolution of a hold already posted or voided is refused, changing nothing."""
        done = [h for h in self.holds if h.resolved]
        if not done:
            return
        hold = data.draw(st.sampled_from(done))
        again = self._resolution(hold, data.draw(st.sampled_from(["post", "void"])), None)
        with pytest.raises(PendingTransferNotResolvable):
            self._await(self._in_transaction(lambda: record(self.run.conn, [again])))
        self.run.operations += 1

    def _resolution(self, hold: Hold, kind: str, amount: int | None) -> Transfer:
        t = hold.transfer
        return Transfer(
            f"{t.key}/{kind}/{new_id('r')}",
            "withdrawal",
            t.debit,
            t.credit,
            amount,
            type=kind,
            pending_key=t.key,
            merchant_id=t.merchant_id,
        )

    def _record(
        self, transfers: list[Transfer], changes: list[tuple[str, int, int, int, int]], crash: bool
    ) -> bool:
        """Record `transfers` as one request would; refused exactly when the model says a
        limited account would end short. Whether it was recorded (and kept)."""
        after = self.model.moved(changes)
        short = [
            t.debit.id
            for t in transfers
            if t.type in ("pending", "posted")  # a resolution only gives back
            and t.debit.limited
            and (lambda c: c[3] - c[1] - c[0])(after[t.debit.id]) < 0
        ]

        async def operation() -> list[Recorded]:
            return await record(self.run.conn, transfers)

        self.run.operations += 1
        if short:
            with pytest.raises(InsufficientBalance):
                self._await(self._in_transaction(operation, crash=crash))
            return False
        results = self._await(self._in_transaction(operation, crash=crash))
        if crash:
            return False
        assert [r.created for r in results] == [True] * len(transfers)
        self.model.counters = after
        self.done.append((operation, results))
        return True

    # -- retries ---------------------------------------------------------------------------

    @precondition(lambda self: bool(self.done))
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        """Any earlier operation again, same keys: the first results, nothing changed."""
        if not self.done:
            return
        operation, first = data.draw(st.sampled_from(self.done))
        again = self._await(self._in_transaction(operation))
        self.run.operations += 1
        assert [(r.id, r.key) for r in again] == [(r.id, r.key) for r in first]
        assert not any(r.created for r in again)

    # -- after every step ------------------------------------------------------------------

    @invariant()
    def books_balance_and_match_the_model(self) -> None:
        if not self._ready():
            return
        rows = self._await(self.run.conn.fetch(CHECK, self.currencies, self.merchants))
        check(rows, self.model)


def test_the_ledger_matches_its_model_through_thousands_of_random_operations(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    global RUN
    with asyncio.Runner() as runner:
        conn = runner.run(asyncpg.connect(plain_dsn(database_url)))
        # Commits need not wait for the disk here: nothing is measured across a crash.
        runner.run(conn.execute("SET synchronous_commit = off"))
        RUN = Run(runner, conn)

        async def capturing(db: Any, transfers: Sequence[Transfer]) -> list[Recorded]:
            results = await record(db, transfers)
            RUN.captured.append(results)  # type: ignore[union-attr]
            return results

        monkeypatch.setattr(postings, "record", capturing)
        try:
            run_state_machine_as_test(
                LedgerMachine,
                settings=settings(
                    max_examples=EXAMPLES,
                    stateful_step_count=STEPS,
                    deadline=None,
                    derandomize=True,
                    database=None,
                    suppress_health_check=list(HealthCheck),
                    phases=PHASES,
                ),
            )
        finally:
            runner.run(conn.close())
            operations, RUN = RUN.operations, None
    print(f"ledger property test: {operations} operations")
    assert operations >= MIN_OPERATIONS, operations
