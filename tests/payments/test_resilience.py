"""The scanner survives what production does to it, proven with REAL jobs processes
(`nespay serve jobs`) against a fresh anvil per test: a dead or rate-limited first RPC
endpoint, SIGKILL in the middle of scanning, two replicas competing for one network, a long
downtime to catch up on, and garbage in a node's answers. Every test ends with the same
bookkeeping check: each transfer counted exactly once, each option's amount_paid the sum of
its payments, one `payment.detected` per payment and one `invoice.paid` per invoice.

Waits are "eventually, within a deadline" (a process's log is attached when one expires);
nothing asserts speed. Each test has a database of its own: a jobs process scans every
enabled network it finds there."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from nespay.apps import api
from nespay.chains.evm import TRANSFER_TOPIC
from nespay.db import Database
from tests.fixtures.anvil import Anvil, run_anvil
from tests.fixtures.app import app_client
from tests.fixtures.factories import MerchantWithKey, merchant_with_key, register_network
from tests.fixtures.processes import RunningProcess, base_env, free_port, nespay_process
from tests.payments import fake_rpc
from tests.payments.conftest import CONFIRMATIONS, units

pytestmark = pytest.mark.own_database

LEASE_S = 5
WAIT_S = 45.0
PAID = ("paid", "confirmed")  # later blocks may confirm a paid invoice: both count as paid


# --- a chain, a network on it, a merchant, and jobs processes ------------------------------


@dataclass
class Rig:
    node: Anvil
    token: str
    network: str
    db: Database
    client: httpx.AsyncClient
    merchant: MerchantWithKey
    database_url: str
    tmp_path: Path
    processes: list[RunningProcess] = field(default_factory=list)

    # processes

    @contextmanager
    def jobs(self, **extra: str) -> Iterator[RunningProcess]:
        """A real `nespay serve jobs` scanning (among others) this rig's network."""
        env = base_env(
            self.database_url,
            SCANNER_POLL_INTERVAL_MS="100",
            RPC_HEALTH_JOB_ENABLED="false",
            RATES_JOB_ENABLED="false",
            LOG_LEVEL="info",
            SCANNER_LEASE_S=str(LEASE_S),
            **extra,
        )
        with nespay_process("jobs", env, self.tmp_path) as running:
            self.processes.append(running)
            yield running

    def log_events(self, running: RunningProcess, event: str) -> list[dict[str, Any]]:
        """`event` lines of a process's JSON log about this network (or about no network)."""
        found = []
        for line in running.log().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") == event and entry.get("network") in (None, self.network):
                found.append(entry)
        return found

    # invoices and payments

    async def invoices(self, count: int, amount: str = "10") -> list[dict[str, Any]]:
        created = []
        for _ in range(count):
            response = await self.client.post(
                "/api/v1/invoices",
                json={"amount": amount, "currency": "USDT", "network": self.network},
                headers=self.merchant.headers,
            )
            assert response.status_code == 201, response.text
            created.append(response.json())
        return created

    def pay(self, invoice: dict[str, Any], amount: int) -> str:
        return self.node.transfer(self.token, address(invoice), amount)

    def counted_logs(self, tx_hashes: list[str], invoices: list[dict[str, Any]]) -> set[Any]:
        """(tx hash, log index) of every token Transfer to one of `invoices` in `tx_hashes`,
        from the node's receipts: what the scanner must have counted."""
        ours = {address(invoice) for invoice in invoices}
        found = set()
        for tx_hash in tx_hashes:
            for entry in self.node.receipt(tx_hash)["logs"]:
                topics = entry["topics"]
                if (
                    entry["address"].lower() == self.token.lower()
                    and topics[0] == TRANSFER_TOPIC
                    and "0x" + topics[2][-40:].lower() in ours
                ):
                    found.add((tx_hash, int(entry["logIndex"], 16)))
        return found

    # the database

    async def one(self, sql: str, **params: Any) -> Any:
        async with self.db.engine.connect() as conn:
            return (await conn.execute(text(sql), {"n": self.network, **params})).one_or_none()

    async def value(self, sql: str, **params: Any) -> Any:
        async with self.db.engine.connect() as conn:
            return await conn.scalar(text(sql), {"n": self.network, **params})

    async def cursor(self) -> Any:
        return await self.one(
            "SELECT block_number, lease_owner, lease_token, lease_expires_at > now() AS live"
            " FROM chain_cursors WHERE network_code = :n"
        )

    async def payments(self) -> int:
        return await self.value("SELECT count(*) FROM payments WHERE network_code = :n")

    async def paid(self, invoices: list[dict[str, Any]]) -> int:
        return await self.value(
            "SELECT count(*) FROM invoices WHERE id = ANY(:ids) AND status = ANY(:paid)",
            ids=[invoice["id"] for invoice in invoices],
            paid=list(PAID),
        )

    async def eventually(
        self, check: Callable[[], Awaitable[Any]], what: str, timeout_s: float = WAIT_S
    ) -> Any:
        """Poll `check` until it gives something truthy; fail with the processes' logs."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = await check()
            if result:
                return result
            if time.monotonic() > deadline:
                logs = "\n".join(
                    f"--- {p.log_path.name}\n{p.log()[-6000:]}" for p in self.processes
                )
                raise AssertionError(f"not within {timeout_s}s: {what}\n{logs}")
            await asyncio.sleep(0.05)

    async def at_head(self) -> Any:
        """Wait until a live lease's cursor has caught up with the node."""

        async def caught_up() -> Any:
            cursor = await self.cursor()
            if cursor and cursor.live and cursor.block_number >= self.node.head():
                return cursor
            return None

        return await self.eventually(caught_up, "the scanner reaches the head")

    async def all_paid(self, invoices: list[dict[str, Any]], payments: int) -> None:
        async def done() -> bool:
            return await self.payments() == payments and await self.paid(invoices) == len(invoices)

        await self.eventually(done, f"{payments} payments and {len(invoices)} invoices paid")

    async def assert_counted_once(self, invoices: list[dict[str, Any]], expected: set[Any]) -> None:
        """Each transfer exactly once; options, invoices and events agree with the payments."""
        ids = [invoice["id"] for invoice in invoices]
        async with self.db.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT id, tx_hash, log_index, status FROM payments"
                        " WHERE network_code = :n"
                    ),
                    {"n": self.network},
                )
            ).all()
            keys = [(row.tx_hash, row.log_index) for row in rows]
            assert len(keys) == len(set(keys)) == len(expected), "a transfer counted twice"
            assert set(keys) == expected
            assert {row.status for row in rows} <= {"pending", "confirmed"}
            wrong_sums = (
                await conn.execute(
                    text(
                        "SELECT o.id, o.amount_paid, s.total FROM invoice_options o,"
                        " LATERAL (SELECT COALESCE(sum(p.amount), 0) AS total FROM payments p"
                        "          WHERE p.option_id = o.id) s"
                        " WHERE o.invoice_id = ANY(:ids) AND o.amount_paid <> s.total"
                    ),
                    {"ids": ids},
                )
            ).all()
            assert wrong_sums == []
            statuses = await conn.execute(
                text("SELECT status, count(*) FROM invoices WHERE id = ANY(:ids) GROUP BY 1"),
                {"ids": ids},
            )
            assert set(dict(statuses.all())) <= set(PAID)
            detected = await conn.execute(
                text(
                    "SELECT data->>'id', count(*) FROM events"
                    " WHERE type = 'payment.detected' AND subject_id = ANY(:ids) GROUP BY 1"
                ),
                {"ids": ids},
            )
            assert dict(detected.all()) == {row.id: 1 for row in rows}
            paid_events = await conn.execute(
                text(
                    "SELECT subject_id, count(*) FROM events"
                    " WHERE type = 'invoice.paid' AND subject_id = ANY(:ids) GROUP BY 1"
                ),
                {"ids": ids},
            )
            timeline = await conn.execute(
                text(
                    "SELECT subject_id, string_agg(type, ' ' ORDER BY seq) FROM events"
                    " WHERE subject_id = ANY(:ids) GROUP BY 1"
                ),
                {"ids": ids},
            )
            assert dict(paid_events.all()) == dict.fromkeys(ids, 1), dict(timeline.all())
            confirmed_twice = await conn.scalar(
                text(
                    "SELECT count(*) FROM (SELECT data->>'id' FROM events"
                    " WHERE type = 'payment.confirmed' AND subject_id = ANY(:ids)"
                    " GROUP BY 1 HAVING count(*) > 1) twice"
                ),
                {"ids": ids},
            )
            assert confirmed_twice == 0


def address(invoice: dict[str, Any]) -> str:
    return invoice["payment_options"][0]["address"].lower()


def replica(running: RunningProcess) -> str:
    """The lease owner a jobs process writes (`jobs.runner.replica_id`)."""
    return f"{socket.gethostname()}:{running.process.pid}"


@pytest.fixture
def rig_on(settings, database, database_url, tmp_path):
    """`rig_on(node, urls)`: a fresh network on `node` reached through `urls` (by priority;
    default the node itself), a merchant, and the api app in-process to create invoices."""

    @asynccontextmanager
    async def open_rig(node: Anvil, urls: list[str] | None = None) -> AsyncIterator[Rig]:
        token = node.deploy_token("Tether Test", "USDT", 6)
        node.mint(token, node.accounts[0], 10**15)
        network = await register_network(database, urls or [node.url], token, CONFIRMATIONS)
        merchant = await merchant_with_key(database)
        async with app_client(api.create_app, settings) as (app, client):
            app.state.runtime.catalog.invalidate()
            yield Rig(node, token, network, database, client, merchant, database_url, tmp_path)

    return open_rig


# --- 1. failover --------------------------------------------------------------------------


@pytest.mark.parametrize("first", ["closed_port", "rate_limited"])
async def test_a_dead_or_rate_limited_first_endpoint_fails_over_to_the_second(rig_on, first):
    with run_anvil() as node, fake_rpc.serve(fake_rpc.rate_limited) as limited:
        bad = f"http://127.0.0.1:{free_port()}" if first == "closed_port" else limited.url
        async with rig_on(node, [bad, node.url]) as rig:
            invoices = await rig.invoices(3)
            with rig.jobs() as running:
                await rig.at_head()
                hashes = [rig.pay(invoice, units("10")) for invoice in invoices]
                await rig.all_paid(invoices, 3)
            await rig.assert_counted_once(invoices, rig.counted_logs(hashes, invoices))
            first_id = await rig.value(
                "SELECT id FROM rpc_endpoints WHERE network_code = :n AND priority = 0"
            )
            failed = rig.log_events(running, "rpc_endpoint_failed")
            assert any(entry["endpoint_id"] == first_id for entry in failed), running.log()
            if first == "rate_limited":
                assert limited.requests > 0


# --- 2. SIGKILL while scanning ------------------------------------------------------------


async def test_sigkill_while_scanning_loses_and_doubles_nothing(rig_on):
    """50 invoices: 20 paid in one transfer each, 10 in two halves, 20 by batch transfers
    (several logs per transaction): 60 payments over ~45 blocks. The jobs process is
    SIGKILLed twice while payments arrive (small batches keep it busy), restarted each time."""
    with run_anvil() as node:
        async with rig_on(node) as rig:
            invoices = await rig.invoices(50)
            single, halves, batched = invoices[:20], invoices[20:30], invoices[30:]
            assert node.batch_sender  # deployed before the payments start
            sent: list[str] = []

            def pay_everything() -> None:
                for invoice in single:
                    sent.append(rig.pay(invoice, units("10")))
                    time.sleep(0.03)
                for invoice in halves:
                    sent.append(rig.pay(invoice, units("4")))
                    time.sleep(0.03)
                    sent.append(rig.pay(invoice, units("6")))
                    time.sleep(0.03)
                sent.extend(
                    node.batch_transfer_many(
                        rig.token, [address(i) for i in batched], [units("10")] * 20, chunk=4
                    )
                )

            extra = {"SCANNER_BATCH_BLOCKS": "2"}
            with rig.jobs(**extra) as first:
                await rig.at_head()
                paying = asyncio.create_task(asyncio.to_thread(pay_everything))
                await rig.eventually(lambda: _at_least(rig, 1), "the first payment")
                first.process.send_signal(signal.SIGKILL)
                first.process.wait()
                counted_at_kill = await rig.payments()
            assert counted_at_kill < 60, "killed too late to be mid-scan"
            with rig.jobs(**extra) as second:
                more = min(counted_at_kill + 10, 60)
                await rig.eventually(lambda: _at_least(rig, more), "10 more payments")
                second.process.send_signal(signal.SIGKILL)
                second.process.wait()
            await paying
            with rig.jobs(**extra) as third:
                await rig.all_paid(invoices, 60)
                cursor = await rig.cursor()
                assert cursor.lease_owner == replica(third)
            await rig.assert_counted_once(invoices, rig.counted_logs(sent, invoices))
            assert len(sent) == 20 + 20 + 5


async def _at_least(rig: Rig, count: int) -> bool:
    return await rig.payments() >= count


# --- 3. two replicas --------------------------------------------------------------------


async def test_two_jobs_processes_one_lease_and_a_takeover_when_the_holder_dies(rig_on):
    with run_anvil() as node:
        async with rig_on(node) as rig:
            invoices = await rig.invoices(30)
            with rig.jobs() as a, rig.jobs() as b:
                holder_row = await rig.at_head()
                by_owner = {replica(a): a, replica(b): b}
                holder = by_owner[holder_row.lease_owner]
                other = b if holder is a else a
                leases: set[tuple[str, int]] = set()
                hashes = await _pay_while_watching(rig, invoices[:15], leases)
                await rig.all_paid(invoices[:15], 15)
                assert leases == {(replica(holder), holder_row.lease_token)}
                assert rig.log_events(other, "scanner_leased") == []

                holder.process.send_signal(signal.SIGKILL)
                holder.process.wait()

                async def taken_over() -> Any:
                    cursor = await rig.cursor()
                    return cursor if cursor.lease_owner == replica(other) else None

                # The dead holder's lease runs out at most LEASE_S after the kill and the other
                # replica tries every LEASE_S / 2: a takeover within the lease time (the
                # deadline leaves slack for a loaded machine).
                row = await rig.eventually(
                    taken_over, "the other replica takes the lease", timeout_s=LEASE_S * 4
                )
                assert row.lease_token == holder_row.lease_token + 1
                leases.clear()
                hashes += await _pay_while_watching(rig, invoices[15:], leases)
                await rig.all_paid(invoices, 30)
                assert leases == {(replica(other), row.lease_token)}
                assert len(rig.log_events(other, "scanner_leased")) == 1
            await rig.assert_counted_once(invoices, rig.counted_logs(hashes, invoices))


async def _pay_while_watching(
    rig: Rig, invoices: list[dict[str, Any]], leases: set[tuple[str, int]]
) -> list[str]:
    """Pay each invoice (a block apart, a little time apart) while sampling who holds the
    lease; returns the transaction hashes."""

    def pay() -> list[str]:
        hashes = []
        for invoice in invoices:
            hashes.append(rig.pay(invoice, units("10")))
            time.sleep(0.1)
        return hashes

    paying = asyncio.create_task(asyncio.to_thread(pay))
    while not paying.done():
        cursor = await rig.cursor()
        leases.add((cursor.lease_owner, cursor.lease_token))
        await asyncio.sleep(0.05)
    return await paying


# --- 4. catching up after downtime ------------------------------------------------------


OFFSETS = [1, 100, 250, 499, 500, 501, 900, 1000, 1001, 1500, 1999, 2000, 2001, 2500]
OFFSETS += [3000, 3333, 3500, 3999, 4000, 4200, 4500, 4750, 4990, 5000]


# anvil 1.7.1 mines ever slower as its chain grows (5,000 blocks: ~30 s under the default
# prague, with persisted states); cancun without persisted states mines them in a few seconds.
FAST_MINING = ("--hardfork", "cancun", "--max-persisted-states", "0")


async def test_after_downtime_it_catches_up_batch_by_batch_and_finds_every_payment(rig_on):
    with run_anvil(31337, *FAST_MINING) as node:
        async with rig_on(node) as rig:
            invoices = await rig.invoices(len(OFFSETS))
            with rig.jobs(SCANNER_BATCH_BLOCKS="500"):
                start = (await rig.at_head()).block_number
            assert (await rig.cursor()).lease_owner is None  # released on a clean stop

            history = f"cursor_history_{rig.network}"
            await _record_cursor_moves(rig, history)
            try:
                hashes, head = [], node.head()
                for offset, invoice in zip(OFFSETS, invoices, strict=True):
                    if start + offset - 1 > head:
                        node.mine(start + offset - 1 - head)
                    hashes.append(rig.pay(invoice, units("10")))
                    head = node.head()
                    assert head == start + offset
                assert head == start + 5000

                with rig.jobs(SCANNER_BATCH_BLOCKS="500"):
                    await rig.all_paid(invoices, len(OFFSETS))
                    await rig.at_head()
                async with rig.db.engine.connect() as conn:
                    moves = (
                        await conn.scalars(
                            text(f"SELECT block_number FROM {history} ORDER BY id")  # noqa: S608
                        )
                    ).all()
            finally:
                async with rig.db.engine.begin() as conn:
                    await conn.execute(text(f"DROP TRIGGER IF EXISTS {history} ON chain_cursors"))
                    await conn.execute(text(f"DROP FUNCTION IF EXISTS {history}()"))
                    await conn.execute(text(f"DROP TABLE IF EXISTS {history}"))

            steps = [start]
            for number in moves:
                if number != steps[-1]:
                    steps.append(number)
            jumps = [later - earlier for earlier, later in zip(steps, steps[1:], strict=False)]
            assert steps[-1] == start + 5000
            assert all(0 < jump <= 500 for jump in jumps), jumps
            await rig.assert_counted_once(invoices, rig.counted_logs(hashes, invoices))


async def _record_cursor_moves(rig: Rig, table: str) -> None:
    """Every committed write of the network's cursor row, in order, into `table` (a trigger:
    polling could miss a step)."""
    async with rig.db.engine.begin() as conn:
        await conn.execute(
            text(f"CREATE TABLE {table} (id bigserial PRIMARY KEY, block_number bigint)")
        )
        await conn.execute(
            text(
                f"CREATE FUNCTION {table}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                f" INSERT INTO {table} (block_number) VALUES (NEW.block_number);"
                " RETURN NEW; END $$"
            )
        )
        await conn.execute(
            text(
                f"CREATE TRIGGER {table} AFTER UPDATE ON chain_cursors FOR EACH ROW"
                f" WHEN (NEW.network_code = '{rig.network}') EXECUTE FUNCTION {table}()"
            )
        )


# --- 5. garbage from the node -----------------------------------------------------------


async def test_garbage_answers_are_retried_and_no_payment_is_lost(rig_on):
    """The only endpoint is a proxy that spoils one answer at a time: a batch answer cut in
    half (not JSON), a payment's log with non-hex data, a log list holding a string. Each time
    the scanner logs, retries, and finds that payment; a later payment is found as well."""
    garblings = [fake_rpc.truncated_json, fake_rpc.garbled_log_data, fake_rpc.non_object_log]
    with run_anvil() as node:
        proxy = fake_rpc.GarblingProxy(node.url)
        with fake_rpc.serve(proxy) as fake:
            async with rig_on(node, [fake.url]) as rig:
                invoices = await rig.invoices(len(garblings) + 1)
                hashes = []
                with rig.jobs() as running:
                    await rig.at_head()
                    for garbling, invoice in zip(garblings, invoices, strict=False):
                        proxy.arm(garbling)
                        hashes.append(rig.pay(invoice, units("10")))
                        await rig.all_paid([invoice], len(hashes))
                        assert proxy.fired[-1] == garbling.__name__
                    hashes.append(rig.pay(invoices[-1], units("10")))
                    await rig.all_paid(invoices, len(hashes))
                    assert running.process.poll() is None
                assert len(rig.log_events(running, "scan_failed")) >= len(garblings)
                assert rig.log_events(running, "scanner_crashed") == []
                assert rig.log_events(running, "log_skipped") == []
                await rig.assert_counted_once(invoices, rig.counted_logs(hashes, invoices))


# --- 6. the node's chain gets shorter than ours ------------------------------------------


async def test_a_head_below_the_cursor_is_waited_out_and_then_reverses_the_payment(rig_on):
    """The payment's block is rolled back (the node's head falls below the cursor): the
    scanner waits — no crash, no endpoint blamed — and once the chain grows again it orphans
    the payment and reverts the invoice; a new payment is found."""
    with run_anvil() as node:
        async with rig_on(node) as rig:
            invoice, other = await rig.invoices(2)
            with rig.jobs() as running:
                await rig.at_head()
                rig.pay(invoice, units("10"))
                await rig.all_paid([invoice], 1)
                node.rollback(1)

                async def waiting() -> bool:
                    failures = rig.log_events(running, "scan_failed")
                    return any("below our cursor" in entry["error"] for entry in failures)

                await rig.eventually(waiting, "the scanner notices the shorter chain")
                node.mine(2)

                async def reverted() -> Any:
                    return await rig.value(
                        "SELECT count(*) FROM payments WHERE network_code = :n"
                        " AND status = 'orphaned' AND invoice_id = :i",
                        i=invoice["id"],
                    )

                await rig.eventually(reverted, "the rolled-back payment is orphaned")
                rig.pay(other, units("10"))
                await rig.eventually(lambda: rig.paid([other]), "a later payment is found")
                assert running.process.poll() is None
            status = await rig.value("SELECT status FROM invoices WHERE id = :i", i=invoice["id"])
            assert status == "pending"
            endpoint = await rig.value("SELECT id FROM rpc_endpoints WHERE network_code = :n")
            failed = rig.log_events(running, "rpc_endpoint_failed")
            assert [e for e in failed if e["endpoint_id"] == endpoint] == []
            assert rig.log_events(running, "scanner_crashed") == []
            async with rig.db.engine.connect() as conn:
                events = await conn.execute(
                    text("SELECT type FROM events WHERE subject_id = :i ORDER BY seq"),
                    {"i": invoice["id"]},
                )
                assert [row[0] for row in events] == [
                    "invoice.created",
                    "payment.detected",
                    "invoice.paid",
                    "payment.reversed",
                    "invoice.reverted",
                ]
