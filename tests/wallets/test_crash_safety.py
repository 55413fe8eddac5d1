"""The sender survives SIGKILL at its three dangerous points, proven with REAL jobs
processes (`nespay serve jobs`) on a fresh anvil: `NESPAY_FAULT` makes the process kill
itself exactly there, then a second process (no fault) takes over. Each ends with exactly
one transaction on chain for the transfer's nonce, the transfer confirmed, and the hot key
in no log line.

- wallets.after_sign: signed in memory, the `signed` record not committed → nothing was
  claimed or sent; the restart signs afresh at the same nonce.
- wallets.after_signed_commit: the raw transaction committed, not broadcast → the restart
  broadcasts the stored bytes (same hash).
- wallets.after_broadcast: broadcast (anvil mines it at once), not recorded → the restart
  finds the stored candidate's receipt; nothing is sent twice."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
from sqlalchemy import text

from tests.fixtures.factories import register_network
from tests.fixtures.processes import base_env, nespay_process
from tests.wallets.sending import ETH, import_key

pytestmark = pytest.mark.own_database
RECIPIENT = "0x" + "9a" * 20
AMOUNT = 4_200_000
WAIT_S = 45.0


def jobs_env(database_url: str, **extra: str) -> dict[str, str]:
    return base_env(
        database_url,
        WALLET_SEND_JOB_SCHEDULE="* * * * * *",
        RPC_HEALTH_JOB_ENABLED="false",
        RATES_JOB_ENABLED="false",
        INVOICE_EXPIRY_JOB_ENABLED="false",
        SCANNER_ENABLED="false",
        LOG_LEVEL="debug",
        **extra,
    )


async def state(database, tx_id: str) -> tuple[dict, list[dict]]:
    async with database.engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT * FROM outgoing_transactions WHERE id = :id"), {"id": tx_id}
            )
        ).one()
        candidates = await conn.execute(
            text(
                "SELECT * FROM outgoing_transaction_candidates"
                " WHERE outgoing_transaction_id = :id ORDER BY number"
            ),
            {"id": tx_id},
        )
        return dict(row._mapping), [dict(c._mapping) for c in candidates]


@pytest.mark.parametrize(
    "fault", ["wallets.after_sign", "wallets.after_signed_commit", "wallets.after_broadcast"]
)
async def test_a_crash_at_each_point_ends_with_one_transaction_confirmed(
    fault, fresh_anvil, settings, database, database_url, tmp_path
):
    from nespay.wallets import outgoing

    node = fresh_anvil
    token = node.deploy_token("Test USD", "TUSD", 6)
    network = await register_network(database, [node.url], token, confirmations=1)
    key, wallet = await import_key(settings, database, network)
    node.send_native(wallet.address, ETH)
    node.mint(token, wallet.address, 10 * AMOUNT)
    async with database.session() as session:
        tx_id = await outgoing.enqueue(
            session,
            purpose="test.crash",
            source_id=fault,
            network=network,
            to_address=RECIPIENT,
            token_contract=token,
            amount=AMOUNT,
        )

    with nespay_process(
        "jobs", jobs_env(database_url, NESPAY_FAULT=fault), tmp_path, wait=False
    ) as crashing:
        deadline = time.monotonic() + WAIT_S
        while crashing.process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert crashing.process.returncode == -signal.SIGKILL, crashing.log()
        assert f"NESPAY_FAULT: killing the process at {fault}" in crashing.log()

    row, candidates = await state(database, tx_id)
    sent_count = int(node.rpc("eth_getTransactionCount", wallet.address, "pending"), 16)
    if fault == "wallets.after_sign":
        assert row["status"] == "queued" and row["nonce"] is None and candidates == []
        assert sent_count == 0
    elif fault == "wallets.after_signed_commit":
        assert row["status"] == "signed" and row["nonce"] == 0 and len(candidates) == 1
        assert candidates[0]["broadcast_at"] is None and sent_count == 0
    else:
        assert row["status"] == "signed" and len(candidates) == 1
        assert node.receipt(candidates[0]["tx_hash"]) is not None and sent_count == 1
    before_crash = [c["tx_hash"] for c in candidates]
    # The dead process's leases (the job's, the network's) would expire after their TTL;
    # expire them now rather than wait (lease expiry is the job runner's, tested there).
    async with database.engine.begin() as conn:
        await conn.execute(
            text("UPDATE job_schedules SET lease_expires_at = now() WHERE name = 'wallets.send'")
        )
        await conn.execute(
            text("UPDATE app_locks SET expires_at = now() WHERE name LIKE 'wallets.send:%'")
        )

    with nespay_process("jobs", jobs_env(database_url), tmp_path) as restarted:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            row, candidates = await state(database, tx_id)
            if row["status"] == "confirmed":
                break
            await asyncio.sleep(0.2)
        assert row["status"] == "confirmed", restarted.log()
        logs = crashing.log() + restarted.log()

    assert [c["tx_hash"] for c in candidates][: len(before_crash)] == before_crash
    assert len(candidates) == 1 and row["mined_hash"] == candidates[0]["tx_hash"]
    assert int(node.rpc("eth_getTransactionCount", wallet.address, "latest"), 16) == 1
    assert node.balance(token, RECIPIENT) == AMOUNT
    assert key.removeprefix("0x") not in logs.lower()


async def test_two_replicas_send_each_transfer_once_with_distinct_nonces(
    fresh_anvil, settings, database, database_url, tmp_path
):
    from nespay.wallets import outgoing

    node = fresh_anvil
    token = node.deploy_token("Test USD", "TUSD", 6)
    network = await register_network(database, [node.url], token, confirmations=1)
    _, wallet = await import_key(settings, database, network)
    node.send_native(wallet.address, ETH)
    node.mint(token, wallet.address, 10 * AMOUNT)
    ids = []
    async with database.session() as session:
        for number in range(6):
            ids.append(
                await outgoing.enqueue(
                    session,
                    purpose="test.replicas",
                    source_id=f"r{number}",
                    network=network,
                    to_address=RECIPIENT,
                    token_contract=token if number % 2 else None,
                    amount=AMOUNT,
                )
            )
    env = jobs_env(database_url)
    with nespay_process("jobs", env, tmp_path) as one, nespay_process("jobs", env, tmp_path) as two:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            rows = [(await state(database, tx_id))[0] for tx_id in ids]
            if all(row["status"] == "confirmed" for row in rows):
                break
            await asyncio.sleep(0.2)
        assert all(row["status"] == "confirmed" for row in rows), one.log() + two.log()
    assert sorted(row["nonce"] for row in rows) == list(range(6))
    assert int(node.rpc("eth_getTransactionCount", wallet.address, "latest"), 16) == 6
    assert node.balance(token, RECIPIENT) == 3 * AMOUNT
    assert node.native_balance(RECIPIENT) == 3 * AMOUNT
