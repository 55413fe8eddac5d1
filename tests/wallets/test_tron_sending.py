"""The Tron sender (nespay.wallets.tron_sender) against the fake TronGrid: TRC-20 and TRX
payouts signed offline, broadcast, confirmed once solidified, with the fee the chain burnt;
energy and bandwidth estimated before anything is signed (the fee limit, the TRX it needs);
an expired transaction rebuilt only once it can never be mined, and never sent twice."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from nespay.chains import faketron
from nespay.wallets import tron_sender, trontx
from nespay.wallets.tasks import send_transactions
from nespay.wallets.tron_sender import REBUILD_MARGIN_MS
from tests.wallets.sending import Outcomes
from tests.wallets.tron_sending import PAYEE, TRX, USDT, import_tron_key, tron_rig

# The sender works every network with queued transfers (other tests' networks have no node).
pytestmark = pytest.mark.own_database


async def test_a_usdt_payout_is_signed_here_broadcast_and_confirmed_once_solidified(
    fake_tron, settings, database
):
    async with tron_rig(fake_tron, settings, database) as r:
        outcomes = Outcomes()
        outcomes.register()
        tx_id = await r.usdt(amount=25 * USDT)
        trx_before = fake_tron.trx_balance(r.address)
        await r.run()
        row = await r.tx(tx_id)
        assert row["status"] == "broadcast" and row["nonce"] is None
        assert row["gas_limit"] == faketron.TRC20_ENERGY_NEW  # estimated: PAYEE holds none
        assert int(row["max_fee_per_gas"]) == tron_sender.DEFAULT_FEE_LIMIT_SUN
        (candidate,) = await r.candidates(tx_id)
        signed = trontx.parse_signed(candidate["raw_transaction"])
        asked = trontx.decode_raw(signed.raw_data)
        assert (asked.owner, asked.to, asked.token, asked.amount) == (
            r.address,
            PAYEE,
            r.token,
            25 * USDT,
        )
        assert candidate["tx_hash"] == signed.tx_id and candidate["expiration_ms"] > 0
        fake_tron.mine()  # mined, not yet solidified (the fake solidifies 2 behind)
        await r.run()
        assert (await r.tx(tx_id))["status"] == "mined"
        done = await r.run_until(tx_id, "confirmed")
        assert fake_tron.token_balance(r.token, PAYEE) == 25 * USDT
        burnt = trx_before - fake_tron.trx_balance(r.address)
        assert burnt > 0 and int(done["fee_paid"]) == burnt  # energy (and bandwidth) burnt
        assert done["gas_used"] == faketron.TRC20_ENERGY_NEW
        assert outcomes.kinds(tx_id) == ["broadcast", "mined", "confirmed"]
        await send_transactions(r.runtime)
        fake_tron.mine(3)
        await send_transactions(r.runtime)
        assert len(r.transfers()) == 1 and fake_tron.broadcasts[signed.tx_id] == 1


async def test_trx_to_a_new_account_pays_its_creation_and_arrives(fake_tron, settings, database):
    async with tron_rig(fake_tron, settings, database) as r:
        fresh = trontx.address_of("0x" + "77" * 32)
        tx_id = await r.enqueue(fresh, 3 * TRX)
        before = fake_tron.trx_balance(r.address)
        done = await r.run_until(tx_id, "confirmed")
        assert fake_tron.trx_balance(fresh) == 3 * TRX
        assert int(done["fee_paid"]) == faketron.CREATE_ACCOUNT_FEE
        assert before - fake_tron.trx_balance(r.address) == 3 * TRX + faketron.CREATE_ACCOUNT_FEE


async def test_energy_above_the_fee_limit_is_never_signed_and_waits_for_the_limit(
    fake_tron, settings, database
):
    async with tron_rig(fake_tron, settings, database) as r:
        await r.sql("UPDATE networks SET tron_fee_limit_sun = 5000000 WHERE code = :n")
        tx_id = await r.usdt()
        for _ in range(2):
            await r.run()
            fake_tron.mine()
        row = await r.tx(tx_id)
        assert row["status"] == "queued" and not await r.candidates(tx_id)
        assert "fee limit reached" in row["last_error"] and "5000000 sun" in row["last_error"]
        assert r.transfers() == [] and not fake_tron.broadcasts
        await r.sql("UPDATE networks SET tron_fee_limit_sun = 30000000 WHERE code = :n")
        await r.run_until(tx_id, "confirmed")
        (candidate,) = await r.candidates(tx_id)
        asked = trontx.decode_raw(trontx.parse_signed(candidate["raw_transaction"]).raw_data)
        assert asked.fee_limit == 30_000_000


async def test_a_wallet_without_the_trx_for_energy_waits_and_says_what_it_needs(
    fake_tron, settings, database
):
    async with tron_rig(fake_tron, settings, database) as r:
        _, poor = await import_tron_key(settings, database, r.network)  # the new payouts key
        fake_tron.fund(poor.address, 2 * TRX)  # enough for bandwidth, not ~13 TRX of energy
        fake_tron.mint(r.token, poor.address, 50 * USDT)
        fake_tron.mine()
        tx_id = await r.usdt()
        await r.run()
        row = await r.tx(tx_id)
        assert row["status"] == "queued" and "not enough TRX" in row["last_error"]
        assert "holds 2000000" in row["last_error"] and "energy 130285" in row["last_error"]
        # A transfer of tokens the wallet does not hold is not estimated, not signed.
        big = await r.usdt(amount=51 * USDT)
        fake_tron.fund(poor.address, 50 * TRX)
        fake_tron.mine()
        await r.run_until(tx_id, "confirmed")
        row = await r.tx(big)
        assert row["status"] == "queued" and "energy estimate failed" in row["last_error"]
        assert len(r.transfers(poor.address)) == 1


async def _pass_steps(r, *steps: str) -> None:
    """Some steps of one pass of the Tron sender, as a pass cut short by a crash would."""
    import httpx

    from nespay.chains import cursors
    from nespay.chains.tron_adapter import TronAdapter
    from nespay.wallets import txstore
    from nespay.wallets.privy_signer import PrivySender
    from nespay.wallets.sender import Report

    async with r.db.engine.connect() as conn:
        (network,) = [n for n in await txstore.busy_networks(conn) if n.code == r.network]
        endpoints = await cursors.endpoints(conn, r.network)
    async with httpx.AsyncClient() as http:
        tron = TronAdapter(http)
        tron.set_endpoints(endpoints)
        sender = tron_sender.TronNetworkSender(
            r.runtime, network, tron, PrivySender(r.settings, http), Report()
        )
        sender.head, sender.head_ms = await tron.now()
        sender.solid, sender.solid_ms = await tron.now(solid=True)
        for step in steps:
            await getattr(sender, step)()


def _expire(fake, candidate: dict) -> None:
    """Chain time past the candidate's expiration and the margin, solidified."""
    fake.skip_time(candidate["expiration_ms"] - fake.now_ms() + REBUILD_MARGIN_MS + 3_000)
    fake.mine()
    fake.solidify()


async def test_an_expired_transaction_that_never_went_out_is_rebuilt_and_sent_once(
    fake_tron, settings, database
):
    async with tron_rig(fake_tron, settings, database) as r:
        tx_id = await r.usdt()
        await _pass_steps(r, "sign_queued")  # signed and stored; the crash came before sending
        (first,) = await r.candidates(tx_id)
        fake_tron.skip_time(first["expiration_ms"] - fake_tron.now_ms() + 3_000)
        fake_tron.mine()
        await r.run()  # expired: not broadcast, and not rebuilt yet (not past the margin)
        row = await r.tx(tx_id)
        assert row["status"] == "signed" and "expired before it went out" in row["last_error"]
        assert len(await r.candidates(tx_id)) == 1 and not fake_tron.broadcasts
        _expire(fake_tron, first)
        await r.run_until(tx_id, "confirmed")
        first_again, second = await r.candidates(tx_id)
        assert second["expiration_ms"] > first["expiration_ms"]
        assert second["tx_hash"] != first["tx_hash"]
        assert fake_tron.included(first["tx_hash"]) == 0
        assert fake_tron.included(second["tx_hash"]) == 1
        assert len(r.transfers()) == 1 and fake_tron.token_balance(r.token, PAYEE) == 10 * USDT


async def test_a_sent_transaction_the_node_lost_is_rebuilt_only_once_it_can_never_be_mined(
    fake_tron, settings, database
):
    async with tron_rig(fake_tron, settings, database) as r:
        fake_tron.lose_broadcasts = 1  # accepted ("result": true), then dropped by the node
        tx_id = await r.usdt()
        await r.run()
        (first,) = await r.candidates(tx_id)
        assert (await r.tx(tx_id))["status"] == "broadcast"
        # Not mined, expired, but the solidified chain is not yet past the margin: no rebuild.
        fake_tron.skip_time(first["expiration_ms"] - fake_tron.now_ms() + 3_000)
        fake_tron.mine(4)
        await r.run()
        assert len(await r.candidates(tx_id)) == 1
        _expire(fake_tron, first)
        await r.run_until(tx_id, "confirmed")
        assert len(await r.candidates(tx_id)) == 2
        assert fake_tron.included(first["tx_hash"]) == 0
        assert len(r.transfers()) == 1 and fake_tron.token_balance(r.token, PAYEE) == 10 * USDT


async def test_a_broadcast_lost_by_a_crash_is_sent_again_as_the_same_bytes(
    fake_tron, settings, database
):
    async with tron_rig(fake_tron, settings, database) as r:
        tx_id = await r.usdt()
        await _pass_steps(r, "sign_queued")
        (candidate,) = await r.candidates(tx_id)
        # The node got it, then the process died before recording the broadcast.
        assert fake_tron.broadcast(candidate["raw_transaction"])["result"] is True
        await r.run()  # the same bytes again: DUP_TRANSACTION_ERROR, read as "already sent"
        row = await r.tx(tx_id)
        assert row["status"] == "broadcast" and "DUP_TRANSACTION_ERROR" in (row["last_error"] or "")
        assert ("DUP_TRANSACTION_ERROR", candidate["tx_hash"]) in fake_tron.refusals
        await r.run_until(tx_id, "confirmed")
        assert len(r.transfers()) == 1 and len(await r.candidates(tx_id)) == 1


async def test_a_fork_before_solidification_sends_the_same_transaction_again(
    fake_tron, settings, database
):
    async with tron_rig(fake_tron, settings, database) as r:
        tx_id = await r.usdt()
        await r.run()
        fake_tron.mine()
        await r.run()
        assert (await r.tx(tx_id))["status"] == "mined"
        fake_tron.reorg(1, keep=False)  # the block holding it is replaced, without it
        await r.run()
        row = await r.tx(tx_id)
        assert row["status"] == "broadcast" and "replaced" in row["last_error"]
        await r.run_until(tx_id, "confirmed")
        (candidate,) = await r.candidates(tx_id)
        assert fake_tron.included(candidate["tx_hash"]) == 1 and len(r.transfers()) == 1


async def test_the_fake_node_refuses_what_java_tron_refuses(fake_tron, settings, database):
    """The checks the crash-safety tests rely on: a signature by another key, an expired
    transaction, a duplicate, an unknown reference block."""
    async with tron_rig(fake_tron, settings, database) as r:
        solid, _ = (fake_tron.blocks[fake_tron.solid], None)
        head = fake_tron.blocks[-1]

        def build(**change):
            fields = {
                "owner": r.address,
                "to": PAYEE,
                "token": r.token,
                "amount": USDT,
                "ref": trontx.RefBlock(solid.number, solid.id),
                "expiration": head.timestamp + 60_000,
                "timestamp": head.timestamp,
                "fee_limit": 30_000_000,
            } | change
            return trontx.build_raw(**fields)

        forged = trontx.sign("0x" + "99" * 32, build())
        assert fake_tron.broadcast(forged.transaction_hex)["code"] == "SIGERROR"
        expired = trontx.sign(r.key, build(expiration=head.timestamp))
        assert fake_tron.broadcast(expired.transaction_hex)["code"] == (
            "TRANSACTION_EXPIRATION_ERROR"
        )
        unknown = trontx.sign(r.key, build(ref=trontx.RefBlock(1, "ab" * 32)))
        assert fake_tron.broadcast(unknown.transaction_hex)["code"] == "TAPOS_ERROR"
        good = trontx.sign(r.key, build())
        assert fake_tron.broadcast(good.transaction_hex)["result"] is True
        assert fake_tron.broadcast(good.transaction_hex)["code"] == "DUP_TRANSACTION_ERROR"
        fake_tron.mine()
        assert fake_tron.broadcast(good.transaction_hex)["code"] == "DUP_TRANSACTION_ERROR"
        assert fake_tron.included(good.tx_id) == 1
        async with r.db.engine.connect() as conn:
            assert (
                await conn.scalar(
                    text("SELECT count(*) FROM outgoing_transactions WHERE network_code = :n"),
                    {"n": r.network},
                )
                == 0
            )
