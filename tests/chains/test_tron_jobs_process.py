"""The Tron scanner and sender in REAL jobs processes (`nespay serve jobs`) against the fake
TronGrid (served by the test, making a block every 0.2 s): SIGKILL in the middle of scanning,
two replicas and a lease takeover when the holder dies — each payment counted once; and the
sender SIGKILLed at each of its dangerous points (`NESPAY_FAULT`) — exactly one transfer on
the chain, confirmed, the key in no log line. Waits are "eventually, within a deadline"."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import pytest
from sqlalchemy import text

from nespay.chains.faketron import FakeTron
from tests.chains.tron_rig import address, tron_chain_on
from tests.fixtures.fake_trongrid import PAYER, register_tron_network, serve_fake_tron
from tests.fixtures.processes import base_env, nespay_process
from tests.payments.conftest import units
from tests.payments.test_resilience import replica
from tests.wallets.test_crash_safety import state
from tests.wallets.tron_sending import PAYEE, TRX, USDT, import_tron_key

pytestmark = pytest.mark.own_database
LEASE_S = 5
WAIT_S = 60.0


def jobs_env(database_url: str, **extra: str) -> dict[str, str]:
    return base_env(
        database_url,
        SCANNER_POLL_INTERVAL_MS="100",
        SCANNER_LEASE_S=str(LEASE_S),
        SCANNER_BATCH_BLOCKS="2",
        RPC_HEALTH_JOB_ENABLED="false",
        RATES_JOB_ENABLED="false",
        INVOICE_EXPIRY_JOB_ENABLED="false",
        WALLET_SEND_JOB_SCHEDULE="* * * * * *",
        **extra,
    )


async def eventually(check, what: str, processes=(), timeout_s: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            logs = "\n".join(p.log()[-4000:] for p in processes)
            raise AssertionError(f"not within {timeout_s}s: {what}\n{logs}")
        await asyncio.sleep(0.1)


async def _value(db, sql: str, **params: Any) -> Any:
    async with db.engine.connect() as conn:
        return (await conn.execute(text(sql), params)).one_or_none()


async def _counted_once(chain, invoices: list[dict], expected: set[tuple[str, int]]) -> None:
    async with chain.runtime.db.engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT tx_hash, log_index FROM payments WHERE network_code = :n"),
                {"n": chain.network},
            )
        ).all()
        keys = [(r.tx_hash, r.log_index) for r in rows]
        assert len(keys) == len(set(keys)) and set(keys) == expected, "a payment lost or doubled"
        events = dict(
            (
                await conn.execute(
                    text(
                        "SELECT type, count(*) FROM events WHERE subject_id = ANY(:ids)"
                        " AND type IN ('payment.detected', 'invoice.paid') GROUP BY type"
                    ),
                    {"ids": [i["id"] for i in invoices]},
                )
            ).all()
        )
    assert events == {"payment.detected": len(expected), "invoice.paid": len(invoices)}


async def test_tron_scanning_survives_sigkill_and_a_lease_takeover(
    settings, database, database_url, tmp_path
):
    with serve_fake_tron(solid_lag=2) as fake:
        async with tron_chain_on(settings, database, fake) as chain:
            await chain.scanner.release()  # the jobs processes scan, not this test
            invoices = [await chain.invoice("10") for _ in range(16)]
            sent: set[tuple[str, int]] = set()

            def pay(batch: list[dict]) -> None:
                for invoice in batch:
                    sent.add(
                        (fake.send_trc20(chain.token, PAYER, address(invoice), units("10")), 0)
                    )
                    fake.mine(3)  # payments a few blocks apart: a scan of several steps
                    time.sleep(0.05)

            async def payments() -> int:
                row = await _value(
                    database,
                    "SELECT count(*) FROM payments WHERE network_code = :n",
                    n=chain.network,
                )
                return row[0]

            async def cursor():
                return await _value(
                    database,
                    "SELECT block_number, lease_owner, lease_token, lease_expires_at > now()"
                    " AS live FROM chain_cursors WHERE network_code = :n",
                    n=chain.network,
                )

            with nespay_process("jobs", jobs_env(database_url), tmp_path) as first:
                paying = asyncio.create_task(asyncio.to_thread(pay, invoices[:8]))
                await eventually(lambda: _at_least(payments, 1), "a first payment", [first])
                first.process.send_signal(signal.SIGKILL)
                first.process.wait()
                await paying
            assert await payments() < 8, "killed too late to be mid-scan"

            with (
                nespay_process("jobs", jobs_env(database_url), tmp_path) as a,
                nespay_process("jobs", jobs_env(database_url), tmp_path) as b,
            ):

                async def all_of_first_half():
                    row = await cursor()
                    ok = await payments() == 8 and row and row.live
                    return row if ok and row.block_number >= fake.head else None

                holder_row = await eventually(all_of_first_half, "the first 8 payments", [a, b])
                by_owner = {replica(a): a, replica(b): b}
                holder = by_owner[holder_row.lease_owner]
                other = b if holder is a else a
                holder.process.send_signal(signal.SIGKILL)
                holder.process.wait()

                async def taken_over():
                    row = await cursor()
                    return row if row.lease_owner == replica(other) else None

                row = await eventually(taken_over, "the other replica takes the lease", [other])
                assert row.lease_token > holder_row.lease_token
                await asyncio.to_thread(pay, invoices[8:])
                await eventually(lambda: _at_least(payments, 16), "all 16 payments", [other])
                assert (await cursor()).lease_owner == replica(other)
            await _counted_once(chain, invoices, sent)


async def _at_least(count, wanted: int) -> bool:
    return await count() >= wanted


@pytest.mark.parametrize(
    "fault", ["wallets.after_sign", "wallets.after_signed_commit", "wallets.after_broadcast"]
)
async def test_a_tron_sender_killed_at_each_point_sends_exactly_one_transfer(
    fault, settings, database, database_url, tmp_path
):
    from nespay.wallets import outgoing

    fake: FakeTron
    with serve_fake_tron(solid_lag=2) as fake:
        token = fake.new_token("USDT")
        fake.mine(3)
        network = await register_tron_network(database, [(fake.url, None)], token)
        key, wallet = await import_tron_key(settings, database, network)
        fake.fund(wallet.address, 100 * TRX)
        fake.mint(token, wallet.address, 100 * USDT)
        fake.mine()
        fake.solidify()
        async with database.session() as session:
            tx_id = await outgoing.enqueue(
                session,
                purpose="test.crash",
                source_id=fault,
                network=network,
                to_address=PAYEE,
                token_contract=token,
                amount=7 * USDT,
            )
        fake.produce_every(0.2)
        # The fake's chain clock runs 15 times faster than the wall clock (a 3 s block every
        # 0.2 s): a long expiration keeps the candidate alive across the restart.
        env = jobs_env(
            database_url,
            SCANNER_ENABLED="false",
            LOG_LEVEL="debug",
            WALLET_TRON_EXPIRATION_S="3600",
        )
        with nespay_process("jobs", {**env, "NESPAY_FAULT": fault}, tmp_path, wait=False) as dead:
            deadline = time.monotonic() + WAIT_S
            while dead.process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert dead.process.returncode == -signal.SIGKILL, dead.log()
        row, candidates = await state(database, tx_id)
        if fault == "wallets.after_sign":
            assert row["status"] == "queued" and candidates == [] and not fake.broadcasts
        elif fault == "wallets.after_signed_commit":
            assert row["status"] == "signed" and len(candidates) == 1 and not fake.broadcasts
        else:
            assert row["status"] == "signed" and len(candidates) == 1
            assert fake.broadcasts[candidates[0]["tx_hash"]] == 1
        async with database.engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE job_schedules SET lease_expires_at = now() WHERE name = 'wallets.send'"
                )
            )
            await conn.execute(
                text("UPDATE app_locks SET expires_at = now() WHERE name LIKE 'wallets.send:%'")
            )
        with nespay_process("jobs", env, tmp_path) as restarted:

            async def confirmed():
                found = await state(database, tx_id)
                return found if found[0]["status"] == "confirmed" else None

            row, candidates = await eventually(confirmed, "the transfer confirmed", [restarted])
            logs = dead.log() + restarted.log()
        assert len(candidates) == 1 and row["mined_hash"] == candidates[0]["tx_hash"]
        assert len(fake.signed_from(wallet.address)) == 1
        assert fake.token_balance(token, PAYEE) == 7 * USDT
        assert key.removeprefix("0x") not in logs.lower()
