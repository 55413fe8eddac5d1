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
