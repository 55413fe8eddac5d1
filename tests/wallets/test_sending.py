"""The sender on a real anvil node, pass by pass (`send_transactions`, the job's inner
function): sends confirm with the balances on chain, handlers run in the transaction that
records the outcome, enqueue is idempotent, wallets have their own nonces, a stuck
transaction is replaced at its nonce with higher fees and only one candidate is mined, the
fee cap stops it and says so, and a reorg re-broadcasts the same signed bytes."""

from __future__ import annotations

import pytest

from nespay.errors import NespayError
from nespay.wallets import outgoing
from tests.wallets.sending import ETH, Outcomes, import_key, rig

pytestmark = pytest.mark.own_database

RECIPIENT = "0x" + "ab" * 20


async def test_token_and_native_sends_confirm_and_arrive_on_chain(fresh_anvil, settings, database):
    outcomes = Outcomes()
    outcomes.register()
    async with rig(fresh_anvil, settings, database, confirmations=2) as r:
        to = "0x" + "cd" * 20
        token_tx = await r.enqueue(to, 1_500_000, token=r.token)
        native_tx = await r.enqueue(to, ETH // 4)
        await r.run()  # signed and broadcast (anvil mines each at once)
        token_row, native_row = await r.tx(token_tx), await r.tx(native_tx)
        assert {token_row["nonce"], native_row["nonce"]} == {0, 1}
        await r.run_until(token_tx, "confirmed")
        await r.run_until(native_tx, "confirmed")

        assert fresh_anvil.balance(r.token, to) == 1_500_000
        assert fresh_anvil.native_balance(to) == ETH // 4
        assert r.nonce() == 2
        for tx_id in (token_tx, native_tx):
            row = await r.tx(tx_id)
            receipt = fresh_anvil.receipt(row["mined_hash"])
            assert receipt["status"] == "0x1"
            assert int(receipt["blockNumber"], 16) == row["mined_block_number"]
            assert row["confirmations"] >= 2 and row["gas_used"] > 0
            assert outcomes.kinds(tx_id) == ["broadcast", "mined", "confirmed"]
        # The confirmed handler ran inside the transaction that set the status.
        assert ("confirmed", token_tx, "confirmed") in outcomes.seen


async def test_enqueue_is_idempotent_on_purpose_and_source(fresh_anvil, settings, database):
    async with rig(fresh_anvil, settings, database) as r:
        first = await r.enqueue(RECIPIENT, 5, token=r.token, source_id="wd_1")
        assert await r.enqueue(RECIPIENT, 5, token=r.token, source_id="wd_1") == first
        with pytest.raises(outgoing.OutgoingConflict):
            await r.enqueue(RECIPIENT, 6, token=r.token, source_id="wd_1")
        with pytest.raises(outgoing.InvalidOutgoing):
            await r.enqueue(RECIPIENT, 0, source_id="wd_2")
        with pytest.raises(NespayError, match="No active gas hot wallet"):
            await r.enqueue(RECIPIENT, 5, role="gas", source_id="wd_3")


async def test_each_wallet_has_its_own_nonce_sequence(fresh_anvil, settings, database):
    async with rig(fresh_anvil, settings, database, confirmations=1) as r:
        _, gas_wallet = await import_key(settings, database, r.network, role="gas")
        fresh_anvil.send_native(gas_wallet.address, ETH)
        payout = await r.enqueue(RECIPIENT, 1000)
        gas = await r.enqueue(RECIPIENT, 1000, role="gas", purpose="test.sweep_gas")
        await r.run()
        assert (await r.tx(payout))["nonce"] == 0
        assert (await r.tx(gas))["nonce"] == 0
        assert (await r.tx(gas))["from_address"] == gas_wallet.address
        await r.run_until(payout, "confirmed")
        await r.run_until(gas, "confirmed")


async def _stuck(r) -> tuple[str, dict]:
    """A token transfer broadcast with mining stopped, made older than the replace wait."""
    r.node.set_automine(False)
    r.node.rpc("evm_setIntervalMining", 0)
    tx_id = await r.enqueue(RECIPIENT, 7_000_000, token=r.token)
    await r.run()
    row = await r.tx(tx_id)
    row_hash = (await r.candidates(tx_id))[0]["tx_hash"]
    assert row["status"] == "broadcast" and r.node.receipt(row_hash) is None
    await r.sql(
        "UPDATE outgoing_transactions SET broadcast_at = now() - interval '1 hour' WHERE id = :id",
        id=tx_id,
    )
    return tx_id, {"hash": row_hash, **row}


def _base_fee(node) -> int:
    return int(node.block()["baseFeePerGas"], 16)


async def test_stuck_transaction_is_replaced_at_its_nonce_and_mined_once(
    fresh_anvil, settings, database
):
    async with rig(fresh_anvil, settings, database, confirmations=1) as r:
        tx_id, first = await _stuck(r)
        spike = 10 * _base_fee(fresh_anvil)
        fresh_anvil.rpc("anvil_setNextBlockBaseFeePerGas", hex(spike))
        summary = await r.run()
        assert "replaced" in summary, summary
        old, new = await r.candidates(tx_id)
        assert new["max_fee_per_gas"] * 8 >= old["max_fee_per_gas"] * 9
        assert new["max_priority_fee_per_gas"] * 8 >= old["max_priority_fee_per_gas"] * 9
        assert new["max_fee_per_gas"] >= spike  # at least the market's new base fee
        assert new["tx_hash"] != old["tx_hash"] and new["broadcast_at"] is not None
        assert (await r.tx(tx_id))["nonce"] == first["nonce"] == 0

        fresh_anvil.mine(1)
        row = await r.run_until(tx_id, "confirmed")
        assert row["mined_hash"] == new["tx_hash"]
        assert fresh_anvil.receipt(old["tx_hash"]) is None  # kept, never mined
        assert [c["tx_hash"] for c in await r.candidates(tx_id)] == [old["tx_hash"], new["tx_hash"]]
        assert fresh_anvil.balance(r.token, RECIPIENT) == 7_000_000
        assert r.nonce() == 1


async def test_fee_cap_stops_sending_and_replacing_and_says_why(fresh_anvil, settings, database):
    async with rig(fresh_anvil, settings, database, confirmations=1) as r:
        tx_id, first = await _stuck(r)
        cap = int(first["max_fee_per_gas"])
        await r.sql("UPDATE networks SET max_fee_per_gas_cap = :cap WHERE code = :n", cap=cap)
        fresh_anvil.rpc("anvil_setNextBlockBaseFeePerGas", hex(10 * _base_fee(fresh_anvil)))
        await r.run()
        row = await r.tx(tx_id)
        assert row["status"] == "broadcast"
        assert len(await r.candidates(tx_id)) == 1
        error = row["last_error"]
        assert "fee cap reached" in error and f"max_fee_per_gas_cap of {cap} wei/gas" in error
        needed = int(error.split("at least ")[1].split(" ")[0])
        assert needed * 8 >= cap * 9  # what a replacement needs: 12.5 % over the last one

        # A new transfer is held back before any nonce is taken.
        await r.sql("UPDATE networks SET max_fee_per_gas_cap = 1 WHERE code = :n")
        held = await r.enqueue(RECIPIENT, 1, token=r.token)
        await r.run()
        held_row = await r.tx(held)
        assert held_row["status"] == "queued" and held_row["nonce"] is None
        assert "sending now needs maxFeePerGas of at least" in held_row["last_error"]

        # Lifting the cap lets the replacement through.
        await r.sql("UPDATE networks SET max_fee_per_gas_cap = NULL WHERE code = :n")
        await r.run()
        assert len(await r.candidates(tx_id)) == 2


async def test_reorged_transaction_is_broadcast_again_with_the_same_signed_bytes(
    fresh_anvil, settings, database
):
    outcomes = Outcomes()
    outcomes.register()
    async with rig(fresh_anvil, settings, database, confirmations=3) as r:
        before = fresh_anvil.snapshot()
        tx_id = await r.enqueue(RECIPIENT, 2_500_000, token=r.token)
        await r.run()
        await r.run()
        mined = await r.tx(tx_id)
        assert mined["status"] == "mined"
        (candidate,) = await r.candidates(tx_id)
        assert mined["mined_hash"] == candidate["tx_hash"]

        fresh_anvil.revert(before)  # the block is gone, and the transaction with it
        assert fresh_anvil.receipt(candidate["tx_hash"]) is None
        summary = await r.run()
        assert "reorged" in summary, summary
        row = await r.tx(tx_id)
        assert row["status"] == "broadcast" and "reorged away" in row["last_error"]
        # Re-broadcast, not re-signed: the same hash is back on chain (automine), one candidate.
        assert fresh_anvil.receipt(candidate["tx_hash"])["status"] == "0x1"
        row = await r.run_until(tx_id, "confirmed")
        assert row["mined_hash"] == candidate["tx_hash"]
        assert len(await r.candidates(tx_id)) == 1
        assert fresh_anvil.balance(r.token, RECIPIENT) == 2_500_000
        assert outcomes.kinds(tx_id) == ["broadcast", "mined", "mined", "confirmed"]


async def test_a_nonce_taken_by_a_transaction_signed_elsewhere_fails_the_transfer(
    fresh_anvil, settings, database
):
    from eth_account import Account

    from nespay.wallets import evmtx

    outcomes = Outcomes()
    outcomes.register()
    async with rig(fresh_anvil, settings, database, confirmations=2) as r:
        tx_id, first = await _stuck(r)
        # The same key, used outside Nespay, spends nonce 0 with a higher fee.
        foreign = Account.sign_transaction(
            evmtx.transaction_fields(
                evmtx.transfer_call(r.address, None, 1),
                chain_id=31337,
                nonce=0,
                gas=21_000,
                fees=evmtx.Fees(50 * int(first["max_fee_per_gas"]), 10**9),
            )
            | {"to": Account.from_key(r.key).address},
            r.key,
        )
        fresh_anvil.send_raw(bytes(foreign.raw_transaction), wait=False)  # automine is off
        fresh_anvil.mine(1)
        await r.run()
        assert (await r.tx(tx_id))["status"] == "broadcast"  # not yet as deep as 2 blocks
        fresh_anvil.mine(1)
        await r.run()
        row = await r.tx(tx_id)
        assert row["status"] == "failed" and row["mined_hash"] is None
        assert "was used on chain" in row["last_error"]
        assert outcomes.kinds(tx_id) == ["broadcast", "failed"]
        assert fresh_anvil.balance(r.token, RECIPIENT) == 0


async def test_a_handler_that_raises_rolls_its_status_change_back_and_is_retried(
    fresh_anvil, settings, database
):
    calls = []

    async def confirmed(session, tx):
        calls.append(tx.status)
        if len(calls) == 1:
            raise RuntimeError("the ledger is down")

    async def failed(session, tx):
        raise AssertionError("not a failure")

    outgoing.on_outcome("test.flaky", confirmed=confirmed, failed=failed)
    async with rig(fresh_anvil, settings, database, confirmations=1) as r:
        tx_id = await r.enqueue(RECIPIENT, 10, purpose="test.flaky")
        other = await r.enqueue(RECIPIENT, 20)
        await r.run()  # signed and broadcast, both mined at once
        summary = await r.run()  # the first handler raises; the other transaction goes on
        assert "stalled" in summary, summary
        # Mined and confirmed are one transaction here (1 confirmation): both rolled back.
        assert (await r.tx(tx_id))["status"] == "broadcast"
        assert (await r.tx(other))["status"] == "confirmed"
        await r.run()
        assert (await r.tx(tx_id))["status"] == "confirmed"
        assert calls == ["confirmed", "confirmed"]


async def test_jobs_overview_shows_unfinished_outgoing_transactions(
    fresh_anvil, settings, database, database_url
):
    from nespay.apps import jobs
    from tests.fixtures.app import app_client
    from tests.fixtures.database import make_settings

    async with rig(fresh_anvil, settings, database) as r:
        await r.sql("UPDATE networks SET max_fee_per_gas_cap = 1 WHERE code = :n")
        await r.enqueue(RECIPIENT, 1)
        await r.run()
    quiet = make_settings(database_url, wallet_send_job_enabled=False)
    async with app_client(jobs.create_app, quiet) as (_, client):
        body = (await client.get("/api/v1/jobs")).json()
    assert "wallets.send" in {job["name"] for job in body["jobs"]}
    (backlog,) = body["outgoing"]
    assert backlog["network"] == r.network and backlog["status"] == "queued"
    assert backlog["count"] == 1 and backlog["with_error"] == 1


async def test_a_transfer_reverted_on_chain_fails_once_confirmed_and_tells_its_purpose(
    fresh_anvil, settings, database
):
    outcomes = Outcomes()
    outcomes.register()
    async with rig(fresh_anvil, settings, database, confirmations=2) as r:
        # Each fits the balance (1000 TUSD) when estimated; together they do not.
        first = await r.enqueue(RECIPIENT, 600_000_000, token=r.token)
        second = await r.enqueue(RECIPIENT, 600_000_000, token=r.token)
        await r.run()
        await r.run()
        row = await r.tx(second)
        assert row["status"] == "mined" and row["receipt_status"] == 0  # not final yet
        row = await r.run_until(second, "failed")
        assert "reverted on chain" in row["last_error"] and row["gas_used"] > 0
        assert (await r.tx(first))["status"] == "confirmed"
        assert outcomes.kinds(second) == ["broadcast", "mined", "failed"]
        assert ("failed", second, "failed") in outcomes.seen
        assert fresh_anvil.balance(r.token, RECIPIENT) == 600_000_000


async def test_a_transaction_the_node_refuses_waits_signed_and_is_replaced_later(
    fresh_anvil, settings, database
):
    async with rig(fresh_anvil, settings, database, confirmations=1) as r:
        _, poor = await import_key(settings, database, r.network, role="gas")
        fresh_anvil.send_native(poor.address, 1_000)  # not enough for any gas
        tx_id = await r.enqueue(RECIPIENT, 1, role="gas", purpose="test.gas")
        await r.run()
        row = await r.tx(tx_id)
        assert row["status"] == "signed" and "broadcast refused" in row["last_error"]
        assert "insufficient funds" in row["last_error"].lower()

        fresh_anvil.send_native(poor.address, ETH)
        await r.sql(
            "UPDATE outgoing_transaction_candidates SET created_at = now() - interval '1 hour'"
            " WHERE outgoing_transaction_id = :id",
            id=tx_id,
        )
        row = await r.run_until(tx_id, "confirmed")
        first, second = await r.candidates(tx_id)
        assert second["max_fee_per_gas"] * 8 >= first["max_fee_per_gas"] * 9
        assert row["mined_hash"] == second["tx_hash"] and row["nonce"] == 0
