"""The `ledger.invariants` job on the whole ledger of a database of its own: a healthy ledger
built through `service.record` (a recorded deficit included) passes; then the ledger is
corrupted in SQL (the counters, or a transfer inserted behind `record`'s back) and each of the
four checks fires, naming what it concerns, in the run's outcome, the log, the gauge, `GET
/jobs` and the jobs health check."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from prometheus_client import REGISTRY

from nespay.apps import jobs
from nespay.kit.ids import new_id
from nespay.ledger import accounts
from nespay.ledger.service import Transfer, record
from tests.fixtures.app import app_client
from tests.fixtures.database import make_settings
from tests.fixtures.factories import merchant_with_key
from tests.ledger.conftest import Books

pytestmark = pytest.mark.own_database

JOB = "ledger.invariants"


@dataclass
class Ledger:
    books: Books
    app: object
    client: object
    deficit_account: str  # a second merchant's, short after a forced reversal (recorded)

    @property
    def runner(self):  # noqa: ANN201
        return self.app.state.runner  # type: ignore[attr-defined]

    async def sql(self, statement: str, *args: object) -> None:
        async with self.books.database.driver() as db:
            await db.execute(statement, *args)

    async def insert_transfer(
        self, key: str, type_: str, debit: str, credit: str, amount: int, pending: str | None
    ) -> None:
        """A transfer `record` never made (no counters changed)."""
        await self.sql(
            "INSERT INTO ledger_transfers (id, key, type, code, debit_account_id,"
            " credit_account_id, currency_id, amount, pending_id)"
            " VALUES ($1, $2, $3, 'test', $4, $5, $6, $7,"
            " (SELECT id FROM ledger_transfers WHERE key = $8))",
            new_id("btx"),
            key,
            type_,
            debit,
            credit,
            self.books.currency_id,
            amount,
            pending,
        )

    async def move(self, account: str, **changes: int) -> None:
        sets = ", ".join(f"{column} = {column} + {int(delta)}" for column, delta in changes.items())
        await self.sql(f"UPDATE ledger_accounts SET {sets} WHERE id = $1", account)

    async def run(self, caplog: pytest.LogCaptureFixture) -> tuple[str, dict, list[dict], dict]:
        """(outcome, the job's row in GET /jobs, the violation log lines, the health body)."""
        caplog.clear()
        with caplog.at_level(logging.INFO):
            outcome = await self.runner.run_now(JOB)
        listed = (await self.client.get("/api/v1/jobs")).json()["jobs"]  # type: ignore[attr-defined]
        (row,) = [job for job in listed if job["name"] == JOB]
        handler = next(h for h in logging.getLogger().handlers if getattr(h, "_nespay", False))
        lines = [json.loads(handler.formatter.format(record)) for record in caplog.records]
        health = await self.client.get("/api/v1/health")  # type: ignore[attr-defined]
        assert health.status_code == 200  # reported, never a 503
        violations = [line for line in lines if line["event"] == "ledger.invariant_violated"]
        return outcome, row, violations, health.json()


def gauge(check: str) -> float | None:
    return REGISTRY.get_sample_value("nespay_ledger_invariant_violations", {"check": check})


HOLD_OPEN = "hold/open"


@pytest.fixture
async def ledger(books: Books, database_url: str) -> AsyncIterator[Ledger]:
    merchant, custody, fees = books.merchant, books.platform("custody"), books.platform("fees")
    payouts = books.platform("payouts")
    other = await merchant_with_key(books.database)
    other_merchant = accounts.merchant(other.merchant_id, books.currency_id)

    def t(key: str, debit, credit, amount, **kw) -> Transfer:  # noqa: ANN001
        return Transfer(key, "test", debit, credit, amount, **kw)

    async with books.database.driver() as db, db.transaction():
        # A payment seen, then confirmed with its fee; another voided by a reorg.
        await record(db, [t("pay/1/credit", custody, merchant, 1000, type="pending")])
        await record(
            db,
            [
                t("pay/1/post", custody, merchant, None, type="post",
                  pending_key="pay/1/credit"),
                t("pay/1/fee", merchant, fees, 10, netted=True),
                t("pay/2/credit", custody, merchant, 500, type="pending"),
            ],
        )  # fmt: skip
        await record(
            db,
            [t("pay/2/void", custody, merchant, None, type="void", pending_key="pay/2/credit")],
        )
        # A withdrawal posted in part, one still held.
        await record(db, [t("hold/1", merchant, payouts, 300, type="pending")])
        await record(
            db,
            [
                t("hold/1/post", merchant, payouts, 200, type="post", pending_key="hold/1"),
                t(HOLD_OPEN, merchant, payouts, 100, type="pending"),
            ],
        )
        # The other merchant: a confirmed payment the chain took back after it was spent
        # in part: a deficit, recorded (`overdrew`).
        await record(db, [t("pay/3/credit", custody, other_merchant, 50)])
        await record(db, [t("pay/3/fee", other_merchant, fees, 20, netted=True)])
        await record(db, [t("pay/3/reversal", other_merchant, custody, 50, may_overdraw=True)])
    settings = make_settings(
        database_url,
        log_level="info",
        # Only this job, and only when the test runs it.
        ledger_invariants_job_schedule="0 0 1 1 *",
        rates_job_enabled=False,
        rpc_health_job_enabled=False,
        reconciliation_job_enabled=False,
        wallet_send_job_enabled=False,
        invoice_expiry_job_enabled=False,
    )
    async with app_client(jobs.create_app, settings) as (app, client):
        yield Ledger(books, app, client, other_merchant.id)


async def test_a_healthy_ledger_with_a_recorded_deficit_passes(ledger, caplog):
    assert await ledger.books.counters(ledger.books.merchant) == (100, 210, 0, 1000)
    async with ledger.books.database.driver() as db:
        short = await db.fetchval(
            "SELECT debits_posted + debits_pending > credits_posted FROM ledger_accounts"
            " WHERE id = $1",
            ledger.deficit_account,
        )
    assert short  # excused: the reversal that made it short is flagged `overdrew`
    outcome, row, violations, health = await ledger.run(caplog)
    assert outcome == "ok" and row["last_outcome"] == "ok" and row["last_error"] is None
    assert violations == []
    assert "ledger_invariants" not in health["info"]
    for check in ("balance", "projection", "shortfall", "resolution"):
        assert gauge(check) == 0


async def test_counters_out_of_balance_name_the_currency_and_the_account(ledger, caplog):
    merchant = ledger.books.merchant.id
    await ledger.move(merchant, credits_posted=7)
    outcome, row, violations, health = await ledger.run(caplog)
    assert outcome == "error" and row["last_outcome"] == "error"
    currency = ledger.books.currency_id
    assert row["last_error"].startswith("ledger invariants violated: ")
    assert f"balance 1 ({currency})" in row["last_error"]
    assert f"projection 1 ({merchant})" in row["last_error"]
    by_check = {line["check"]: line for line in violations}
    assert set(by_check) == {"balance", "projection"}
    assert by_check["balance"]["concerned"] == [currency]
    assert by_check["balance"]["detail"] == [{"name": currency, "pending": "0", "posted": "-7"}]
    assert by_check["projection"]["concerned"] == [merchant]
    assert by_check["projection"]["detail"][0]["counters"] == ["100", "210", "0", "1007"]
    assert by_check["projection"]["detail"][0]["projected"] == ["100", "210", "0", "1000"]
    assert (gauge("balance"), gauge("projection"), gauge("shortfall")) == (1, 1, 0)
    reported = health["info"]["ledger_invariants"]
    assert reported["status"] == "violated"
    assert currency in reported["message"] and merchant in reported["message"]


async def test_counters_moved_between_accounts_break_only_the_projection(ledger, caplog):
    merchant, fees = ledger.books.merchant.id, ledger.books.platform("fees").id
    await ledger.move(merchant, credits_posted=-7)
    await ledger.move(fees, credits_posted=7)
    outcome, row, violations, health = await ledger.run(caplog)
    assert outcome == "error"
    assert [line["check"] for line in violations] == ["projection"]
    assert set(violations[0]["concerned"]) == {merchant, fees}
    assert violations[0]["count"] == 2
    assert (gauge("balance"), gauge("projection")) == (0, 2)
    assert merchant in health["info"]["ledger_invariants"]["message"]


async def test_a_limited_account_overdrawn_without_a_recorded_deficit_is_a_shortfall(
    ledger, caplog
):
    merchant, fees = ledger.books.merchant.id, ledger.books.platform("fees").id
    # A spend `record` would have refused (it holds 690), with counters to match: only the
    # shortfall is wrong.
    await ledger.insert_transfer("spend/beyond", "posted", merchant, fees, 1000, None)
    await ledger.move(merchant, debits_posted=1000)
    await ledger.move(fees, credits_posted=1000)
    outcome, row, violations, health = await ledger.run(caplog)
    assert outcome == "error"
    assert [line["check"] for line in violations] == ["shortfall"]
    assert violations[0]["concerned"] == [merchant]  # not the recorded deficit
    assert f"shortfall 1 ({merchant})" in row["last_error"]
    assert (gauge("shortfall"), gauge("projection"), gauge("balance")) == (1, 0, 0)
    assert health["info"]["ledger_invariants"]["status"] == "violated"
    assert merchant in health["info"]["ledger_invariants"]["message"]


async def test_a_hold_posted_beyond_what_it_held_is_a_bad_resolution(ledger, caplog):
    merchant, payouts = ledger.books.merchant.id, ledger.books.platform("payouts").id
    await ledger.insert_transfer("hold/open/post", "post", merchant, payouts, 150, HOLD_OPEN)
    await ledger.move(merchant, debits_pending=-100, debits_posted=150)
    await ledger.move(payouts, credits_pending=-100, credits_posted=150)
    outcome, row, violations, health = await ledger.run(caplog)
    assert outcome == "error"
    assert [line["check"] for line in violations] == ["resolution"]
    (found,) = violations[0]["detail"]
    assert found["name"] == HOLD_OPEN and found["accounts"] == [merchant, payouts]
    assert found["held"] == "100" and found["beyond"]
    assert found["resolved_by"] == ["hold/open/post"]
    assert f"resolution 1 ({HOLD_OPEN} on {merchant} -> {payouts})" in row["last_error"]
    assert gauge("resolution") == 1 and gauge("projection") == 0
    assert merchant in health["info"]["ledger_invariants"]["message"]


async def test_a_hold_resolved_twice_is_a_bad_resolution(ledger, caplog):
    merchant, payouts = ledger.books.merchant.id, ledger.books.platform("payouts").id
    # The unique index refuses a second resolution: this database is the test's own.
    await ledger.sql("DROP INDEX uq_ledger_transfers_pending_id")
    await ledger.insert_transfer("hold/1/void", "void", merchant, payouts, 0, "hold/1")
    outcome, row, violations, health = await ledger.run(caplog)
    assert outcome == "error"
    by_check = {line["check"]: line for line in violations}
    (found,) = by_check["resolution"]["detail"]
    assert found["name"] == "hold/1" and found["twice"] and not found["beyond"]
    assert found["resolved_by"] == ["hold/1/post", "hold/1/void"]
    # The second resolution released the hold again: the counters no longer match.
    assert set(by_check["projection"]["concerned"]) == {merchant, payouts}
    assert gauge("resolution") == 1
    assert health["info"]["ledger_invariants"]["status"] == "violated"
