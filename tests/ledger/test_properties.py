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
projection reads only that example's transfers.

A step is one rule, `step(kind, seed, crash)`: Hypothesis draws what it does (`kind`, by fixed
weights), whether it crashes, and one seed from which a `random.Random` derives the rest
(which payments, amounts, fee rates, which hold). Ten or so bytes of Hypothesis's choice buffer
a step, so every example runs its `STEPS` steps (a step drawing every parameter from
Hypothesis used ~30, and the buffer ended examples after a few hundred steps); one rule with a
drawn kind, so the mix is the same in every example (rules of their own let Hypothesis's swarm
testing leave whole examples of refused holds). Shrinking still removes steps, turns kinds
into scans, crashes off and seeds to 0; a failing case prints each step's derived parameters
(`note`).

An operation, as counted (and printed) here: a transfer the ledger applied and kept (each
transfer of a committed scanner batch; a hold, post or void), a transfer it refused (a hold
beyond the balance, a hold resolved again), a crash (a batch or request rolled back before its
commit, whatever it held: one), or a retry (an earlier batch or request again: one).
Seeded (`derandomize`, from the source of this machine): CI runs the same operations every
time, 15,256 in 4,400 steps, 45-60 s alone on a 2-core machine (the seeds of two other
versions of this class gave 13,927 and 18,761); fewer than `MIN_OPERATIONS` (10,000) fail the
test, and so does a run in which one of `MUST_HAPPEN` never happened (a harness that stopped
driving the ledger somewhere).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, Phase, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
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

EXAMPLES = int(os.environ.get("LEDGER_PROP_EXAMPLES", "20"))
STEPS = int(os.environ.get("LEDGER_PROP_STEPS", "220"))
MIN_OPERATIONS = int(os.environ.get("LEDGER_PROP_MIN", "10000"))
MERCHANTS = 3
BPS = 10_000
# What must happen at least once in a run (else the harness stopped driving the ledger there).
MUST_HAPPEN = (
    "scan", "pending", "post", "void", "refused", "resolved again", "crash", "retry", "deficit",
)  # fmt: skip
# LEDGER_PROP_SHRINK=0 reports the first failure as found (shrinking replays on the database).
PHASES = [
    p for p in Phase if p is not Phase.shrink or os.environ.get("LEDGER_PROP_SHRINK", "1") == "1"
]

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
    """What the whole test shares: its event loop, one connection, what it has done."""

    runner: asyncio.Runner
    conn: asyncpg.Connection  # the ledger's
    checker: asyncpg.Connection  # the check's: it reads what the step committed
    captured: list[list[Recorded]] = field(default_factory=list)
    operations: int = 0
    steps: int = 0
    # How often each kind of thing happened (printed, and each must happen at least once).
    seen: Counter[str] = field(default_factory=Counter)

    def count(self, kind: str, operations: int = 1) -> None:
        self.operations += operations
        self.seen[kind] += 1


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


# --- a step's parameters, from its seed ------------------------------------------------------

# A step draws its kind, whether it crashes and one seed from Hypothesis, and derives the rest
# from the seed: a few bytes of Hypothesis's choice buffer a step instead of dozens, so an
# example runs all its `STEPS` steps before the buffer fills. The values Hypothesis would
# favour (bounds, a balance exactly spent or exceeded by one) are drawn on purpose here.
SEEDS = st.integers(0, 2**32 - 1)
# What a step does, by weight; it shrinks towards the first, a scanner batch.
STEP_KINDS = ["scan"] * 4 + ["hold"] * 3 + ["resolve"] * 3 + ["resolve again", "retry", "retry"]
# A request crashes (rolled back before its commit) one time in four; shrinks to no crash.
CRASHES = st.sampled_from([False, False, False, True])


def amount_of(rng: random.Random) -> int:
    if rng.random() < 0.15:
        return rng.choice([1, 1_000, 10**9, 10**20, 10**24])
    low, high = rng.choice([(1, 1_000), (1, 10**9), (10**20, 10**24)])
    return rng.randint(low, high)


def fee_rate_of(rng: random.Random) -> int:
    return rng.choice([0, 1, 150, 9_999, BPS]) if rng.random() < 0.5 else rng.randint(0, BPS)


def some(rng: random.Random, items: Sequence[Any], most: int) -> list[Any]:
    return rng.sample(list(items), rng.randint(0, min(most, len(items))))


def below(rng: random.Random, bound: int) -> int:
    """An integer in [0, bound), its ends as likely as the rest together."""
    return rng.choice([0, bound - 1, rng.randrange(bound)]) if bound > 1 else 0


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

    # -- a step ----------------------------------------------------------------------------

    @rule(kind=st.sampled_from(STEP_KINDS), seed=SEEDS, crash=CRASHES)
    def step(self, kind: str, seed: int, crash: bool) -> None:
        """One operation: `kind` (or a scan when nothing is there to resolve or retry yet),
        its parameters from `seed`; `crash`: rolled back before its commit."""
        open_holds = [h for h in self.holds if not h.resolved]
        resolved_holds = [h for h in self.holds if h.resolved]
        rng = random.Random(seed)
        if kind == "hold":
            self.hold(rng, crash)
        elif kind == "resolve" and open_holds:
            self.resolve_hold(rng, rng.choice(open_holds), crash)
        elif kind == "resolve again" and resolved_holds:
            self.resolve_a_hold_again(rng, rng.choice(resolved_holds))
        elif kind == "retry" and self.done:
            self.retry(rng.randrange(len(self.done)))
        else:
            self.scan(rng, crash)

    # -- scanner batches -------------------------------------------------------------------

    def scan(self, rng: random.Random, crash: bool) -> None:
        currency = rng.choice(self.currencies)
        default_bps = fee_rate_of(rng)
        rates = {m: default_bps if bps is None else bps for m, bps in self.rates.items()}
        mine = [p for p in self.payments if p.currency_id == currency]
        live = [p for p in mine if p.status != "orphaned"]
        orphan = some(rng, live, 3)
        revive = some(rng, [p for p in mine if p.status == "orphaned"] + orphan, 2)
        confirm = some(rng, [p for p in live if p.status == "pending" and p not in orphan], 3)
        count = rng.randint(0 if orphan or revive or confirm else 1, 3)  # never an empty batch
        new = [
            Payment(new_id("pay"), rng.choice(self.merchants), currency, amount_of(rng))
            for _ in range(count)
        ]
        deep = {p.id: rng.random() < 0.5 for p in [*revive, *new]}
        note(
            f"  scan {self.currencies.index(currency)}, default fee {default_bps}:"
            f" orphan {self._names(orphan)}, count again {self._names(revive)},"
            f" confirm {self._names(confirm)},"
            f" new {[(self.merchants.index(p.merchant_id), p.amount) for p in new]},"
            f" deep {[deep[p.id] for p in [*revive, *new]]}{', crash' if crash else ''}"
        )
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
            status = "confirmed" if deep[p.id] else "pending"
            recorded_rows.append({**p.row(status=status), "ledger_generation": generation})
            fee = postings.fee_of(p.amount, rates[p.merchant_id]) if deep[p.id] else 0
            if deep[p.id]:
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
        if crash:
            self.run.count("crash")
            return
        assert results and all(r.created for r in results)
        self.run.count("scan", len(results))
        counters = self.model.moved(changes)
        self.model.counters = counters
        for key, merchant in reversals:
            dp, dpo, _, cpo = counters[merchant]
            if cpo - dpo - dp < 0:
                self.model.overdrew.add(key)
                self.run.seen["deficit"] += 1
        for p in [*orphan, *revive, *new, *confirm]:
            p.status, p.generation, p.fee = after[p.id]
        self.payments += new
        self.done.append((operation, results))

    def _names(self, payments: Sequence[Payment]) -> list[int]:
        return [self.payments.index(p) for p in payments]

    # -- withdrawals -----------------------------------------------------------------------

    def hold(self, rng: random.Random, crash: bool) -> None:
        merchant = accounts.merchant(rng.choice(self.merchants), rng.choice(self.currencies))
        balance = self.model.balance(merchant.id)
        any_amount, at_the_edge = amount_of(rng), rng.choice([balance, balance + 1])
        within = rng.randint(1, max(balance, 1))
        amount = rng.choices([any_amount, max(at_the_edge, 1), within], weights=[1, 1, 2])[0]
        note(f"  hold {amount} of balance {balance}{', crash' if crash else ''}")
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

    def resolve_hold(self, rng: random.Random, hold: Hold, crash: bool) -> None:
        held = hold.transfer.amount or 0
        kind = rng.choice(["post", "post_all", "part", "void"])
        amount = {"post": held, "post_all": None, "part": below(rng, held), "void": None}[kind]
        crashing = ", crash" if crash else ""
        note(f"  {kind} {amount} of hold {self.holds.index(hold)} ({held}){crashing}")
        resolution = self._resolution(hold, "void" if kind == "void" else "post", amount)
        moved = 0 if kind == "void" else held if amount is None else amount
        changes = resolved(hold.transfer.debit.id, hold.transfer.credit.id, held, moved)
        if self._record([resolution], changes, crash):
            hold.resolved = True

    def resolve_a_hold_again(self, rng: random.Random, hold: Hold) -> None:
        """Another resolution of a hold already posted or voided is refused, changing nothing."""
        kind = rng.choice(["post", "void"])
        note(f"  {kind} hold {self.holds.index(hold)} again")
        again = self._resolution(hold, kind, None)
        with pytest.raises(PendingTransferNotResolvable):
            self._await(self._in_transaction(lambda: record(self.run.conn, [again])))
        self.run.count("resolved again")

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

        if short:
            with pytest.raises(InsufficientBalance):
                self._await(self._in_transaction(operation, crash=crash))
            self.run.count("refused", len(transfers))
            return False
        results = self._await(self._in_transaction(operation, crash=crash))
        if crash:
            self.run.count("crash")
            return False
        assert [r.created for r in results] == [True] * len(transfers)
        self.run.count(transfers[0].type, len(transfers))
        self.model.counters = after
        self.done.append((operation, results))
        return True

    # -- retries ---------------------------------------------------------------------------

    def retry(self, n: int) -> None:
        """An earlier operation again, same keys: the first results, nothing changed."""
        note(f"  retry operation {n}")
        operation, first = self.done[n]
        again = self._await(self._in_transaction(operation))
        self.run.count("retry")
        assert [(r.id, r.key) for r in again] == [(r.id, r.key) for r in first]
        assert not any(r.created for r in again)

    # -- after every step ------------------------------------------------------------------

    @invariant()
    def books_balance_and_match_the_model(self) -> None:
        if not self.currencies:
            return  # before the books are opened
        self.run.steps += 1
        rows = self._await(self.run.checker.fetch(CHECK, self.currencies, self.merchants))
        check(rows, self.model)


# Passing takes about a minute; a failure is shrunk by replaying steps on the database (up to
# Hypothesis's five minutes), which the suite's 120 s would cut off before the minimal case.
@pytest.mark.timeout(600)
def test_the_ledger_matches_its_model_through_thousands_of_random_operations(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    global RUN
    with asyncio.Runner() as runner:
        # Commits need not wait for the disk here: nothing is measured across a crash.
        conn = runner.run(
            asyncpg.connect(plain_dsn(database_url), server_settings={"synchronous_commit": "off"})
        )
        # The check on a connection of its own (it reads what each step committed), planned for
        # its arguments: the generic plan PostgreSQL switches a prepared statement to after five
        # runs does not know it reads one example's merchants, and slows as the table grows
        # (7-20 ms a check late in the run, against under 1 ms for a small example).
        checker = runner.run(
            asyncpg.connect(
                plain_dsn(database_url), server_settings={"plan_cache_mode": "force_custom_plan"}
            )
        )
        RUN = Run(runner, conn, checker)

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
            runner.run(checker.close())
            run, RUN = RUN, None
    print(f"ledger property test: {run.operations} operations in {run.steps} checked steps")
    print("  times each happened: " + ", ".join(f"{k} {n}" for k, n in sorted(run.seen.items())))
    assert run.operations >= MIN_OPERATIONS, run.operations
    missing = set(MUST_HAPPEN) - set(run.seen)
    assert not missing, f"never happened: {missing}"
