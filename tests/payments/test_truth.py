"""Payment truth: what Nespay says about a payment is what happened on chain — dust and zero
transfers, lateness judged by the block, currencies and networks switched off while invoices
are open, reorgs that take a confirmed payment away and bring it back, exact shares across
options, and one invoice's events in the order of its changes. End to end on anvil."""

import asyncio
import time
from decimal import Decimal

import pytest
from sqlalchemy import text

from nespay.chains import cursors
from nespay.chains import service as chains
from nespay.chains.rpcclient import RpcError
from nespay.chains.schemas import CurrencyUpdate, NetworkUpdate
from nespay.invoices import states
from nespay.invoices.tasks import expire_invoices
from nespay.kit.ids import new_id
from nespay.rates.service import set_admin_rate
from tests.fixtures.anvil import run_anvil
from tests.fixtures.factories import TEST_ACTOR
from tests.payments import fake_rpc
from tests.payments.conftest import CONFIRMATIONS, chain_on, units

PAID_THEN_CONFIRMED = [
    "invoice.created",
    "payment.detected",
    "invoice.paid",
    "payment.confirmed",
    "invoice.confirmed",
]


async def payment_rows(chain, invoice_id: str) -> int:
    async with chain.runtime.db.engine.connect() as conn:
        return await conn.scalar(
            text("SELECT count(*) FROM payments WHERE invoice_id = :i"), {"i": invoice_id}
        )


async def usdt_id(chain) -> str:
    async with chain.runtime.db.engine.connect() as conn:
        return await conn.scalar(
            text("SELECT id FROM currencies WHERE network_code = :n AND code = 'USDT'"),
            {"n": chain.network},
        )


# --- 1. zero-value and dust transfers ---------------------------------------------------------


async def test_zero_value_transfers_every_block_neither_count_nor_block_confirmation(chain):
    invoice = await chain.invoice("10")
    chain.pay(invoice, units("10"))
    await chain.scan()
    for _ in range(CONFIRMATIONS):  # an address-poisoning bot, once a block
        chain.pay(invoice, 0)
        await chain.scan()
    after = await chain.get(invoice["id"])
    assert after["status"] == "confirmed"
    assert [p["amount"] for p in after["payments"]] == ["10"]
    assert await chain.events(invoice["id"]) == PAID_THEN_CONFIRMED


async def test_a_zero_value_transfer_to_an_expired_invoice_does_not_flag_it_paid_late(chain):
    invoice = await chain.invoice("10")
    await chain.expire(invoice["id"])
    chain.pay(invoice, 0)
    await chain.scan()
    after = await chain.get(invoice["id"])
    assert after["status"] == "expired" and after["flags"]["paid_late"] is False
    assert after["payments"] == [] and await payment_rows(chain, invoice["id"]) == 0
    assert await chain.events(invoice["id"]) == ["invoice.created", "invoice.expired"]


async def test_transfers_below_the_currencys_dust_threshold_are_not_payments(chain):
    async with chain.runtime.db.session() as session:
        await chains.update_currency(
            session,
            TEST_ACTOR,
            await usdt_id(chain),
            CurrencyUpdate(dust_threshold="0.01"),
            watch_window_s=0,
        )
    chain.reference_changed()
    invoice = await chain.invoice("10")
    chain.pay(invoice, units("0.009999"))  # dust
    await chain.scan()
    assert (await chain.get(invoice["id"]))["status"] == "pending"
    assert await payment_rows(chain, invoice["id"]) == 0
    chain.pay(invoice, units("0.01"))  # at the threshold: a payment
    await chain.scan()
    counted = await chain.get(invoice["id"])
    assert counted["status"] == "partially_paid" and counted["amount_paid"] == "0.01"
    assert await chain.events(invoice["id"]) == [
        "invoice.created",
        "payment.detected",
        "invoice.partially_paid",
    ]


async def test_a_zero_value_native_transfer_is_not_a_payment(chain):
    invoice = await chain.invoice("0.5", currency="ETH")
    chain.node.send_native(invoice["payment_options"][0]["address"], 0)
    await chain.scan()
    assert await payment_rows(chain, invoice["id"]) == 0


# --- 2. late is judged by the block -----------------------------------------------------------


async def set_expiry(chain, invoice_ids, epoch: float) -> None:
    async with chain.runtime.db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE invoices SET expires_at = to_timestamp(:t) WHERE id = ANY(:ids)"),
            {"t": epoch, "ids": list(invoice_ids)},
        )


async def test_a_payment_mined_before_expiry_but_read_after_it_is_on_time(chain):
    await chain.scan()
    paid, unpaid = await chain.invoice("10"), await chain.invoice("10")
    chain.pay(paid, units("10"))  # mined now; the jobs process is down and reads nothing
    mined_at = int(chain.node.block("latest")["timestamp"], 16)
    await set_expiry(chain, [paid["id"], unpaid["id"]], mined_at + 0.5)
    while time.time() < mined_at + 1.2:  # the wall clock passes the expiry
        await asyncio.sleep(0.1)
    await expire_invoices(chain.runtime)  # jobs back: the expiry runs before the scanner
    assert (await chain.get(paid["id"]))["status"] == "pending"
    assert (await chain.get(unpaid["id"]))["status"] == "pending"
    await chain.scan()  # reads the payment's block, mined before the expiry
    on_time = await chain.get(paid["id"])
    assert on_time["status"] == "paid" and on_time["flags"]["paid_late"] is False
    assert on_time["payments"][0]["late"] is False
    await expire_invoices(chain.runtime)  # the chain is not yet read past the expiry
    assert (await chain.get(unpaid["id"]))["status"] == "pending"
    chain.node.mine(1)  # a block after the expiry
    await chain.scan()
    await expire_invoices(chain.runtime)
    assert (await chain.get(unpaid["id"]))["status"] == "expired"
    assert await chain.events(paid["id"]) == [
        "invoice.created",
        "payment.detected",
        "invoice.paid",
    ]


async def test_the_expiry_waits_for_a_scanner_that_lags_behind_the_expiry(chain):
    await chain.scan()
    invoice = await chain.invoice("10")
    async with chain.runtime.db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE invoices SET expires_at = now() - interval '1 s' WHERE id = :i"),
            {"i": invoice["id"]},
        )
        # the scanner's cursor is an hour behind (an RPC outage)
        await conn.execute(
            text(
                "UPDATE chain_cursors SET block_timestamp = block_timestamp - 3600"
                " WHERE network_code = :n"
            ),
            {"n": chain.network},
        )
    await expire_invoices(chain.runtime)
    assert (await chain.get(invoice["id"]))["status"] == "pending"
    chain.node.mine(1)
    await chain.scan()
    await expire_invoices(chain.runtime)
    assert (await chain.get(invoice["id"]))["status"] == "expired"


# --- 3. switching a currency or a network off ---------------------------------------------------


async def test_a_currency_switched_off_while_an_invoice_is_open_still_gets_its_payment(
    chain, settings
):
    invoice = await chain.invoice("10")
    async with chain.runtime.db.session() as session:
        switched_off = await chains.update_currency(
            session,
            TEST_ACTOR,
            await usdt_id(chain),
            CurrencyUpdate(enabled=False),
            watch_window_s=settings.scanner_watch_after_expiry_s,
        )
    chain.reference_changed()
    assert switched_off.watch_until is not None
    refused = await chain.client.post(
        "/api/v1/invoices",
        json={"amount": "10", "currency": "USDT", "network": chain.network},
        headers=chain.merchant.headers,
    )
    assert refused.status_code == 422  # not offered on new invoices
    chain.pay(invoice, units("10"))
    await chain.scan()
    assert (await chain.get(invoice["id"]))["status"] == "paid"


async def test_a_currency_switched_off_is_scanned_until_its_watch_ends(chain):
    invoice = await chain.invoice("10")
    await chain.scan()
    async with chain.runtime.db.engine.begin() as conn:
        # switched off, its watch already over (in chain time)
        await conn.execute(
            text(
                "UPDATE currencies SET enabled = false, watch_until = now() - interval '1 h'"
                " WHERE network_code = :n AND code = 'USDT'"
            ),
            {"n": chain.network},
        )
    chain.reference_changed()
    chain.pay(invoice, units("10"))
    await chain.scan()
    assert (await chain.get(invoice["id"]))["status"] == "pending"


async def test_a_network_switched_off_with_an_open_invoice_keeps_its_scanner(chain, settings):
    invoice = await chain.invoice("10")
    async with chain.runtime.db.session() as session:
        network = await chains.update_network(
            session,
            TEST_ACTOR,
            chain.network,
            NetworkUpdate(enabled=False),
            watch_window_s=settings.scanner_watch_after_expiry_s,
        )
    chain.reference_changed()
    assert network.watch_until is not None
    async with chain.runtime.db.engine.connect() as conn:
        assert chain.network in await cursors.networks_to_scan(conn)
    chain.pay(invoice, units("10"))
    await chain.scan()
    assert (await chain.get(invoice["id"]))["status"] == "paid"
    async with chain.runtime.db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE networks SET watch_until = now() - interval '1 h' WHERE code = :n"),
            {"n": chain.network},
        )
        # still confirming its payment: still scanned
        assert chain.network in await cursors.networks_to_scan(conn)
    chain.node.mine(CONFIRMATIONS)
    await chain.scan()
    assert (await chain.get(invoice["id"]))["status"] == "confirmed"
    async with chain.runtime.db.engine.connect() as conn:
        assert chain.network not in await cursors.networks_to_scan(conn)


# --- 5. a confirmed payment reorged away and mined again ---------------------------------------


async def test_a_payment_remined_in_the_reorg_is_the_same_payment(chain):
    invoice = await chain.invoice("10")
    tx = chain.pay(invoice, units("10"))
    raw = chain.node.rpc("eth_getRawTransactionByHash", tx)
    await chain.scan()
    chain.node.reorg(1, [(raw, 0)])  # the same transaction in the replacing block
    await chain.scan()
    after = await chain.get(invoice["id"])
    assert after["status"] == "paid"
    assert [(p["tx_hash"], p["status"]) for p in after["payments"]] == [(tx, "pending")]
    assert await chain.events(invoice["id"]) == [
        "invoice.created",
        "payment.detected",
        "invoice.paid",
        "payment.reversed",
        "payment.detected",  # the same payment, in its new block; the invoice did not move
    ]


async def test_a_confirmed_payment_reorged_away_and_mined_again_confirms_the_invoice_again(chain):
    invoice = await chain.invoice("10")
    tx = chain.pay(invoice, units("10"))
    raw = chain.node.rpc("eth_getRawTransactionByHash", tx)
    chain.node.mine(CONFIRMATIONS)
    await chain.scan()
    assert (await chain.get(invoice["id"]))["status"] == "confirmed"
    chain.node.reorg(CONFIRMATIONS + 1)  # the payment's block and those after it replaced
    await chain.scan()
    assert (await chain.get(invoice["id"]))["status"] == "invalid"
    assert chain.node.send_raw(raw) == tx  # mined again, later
    await chain.scan()
    assert (await chain.get(invoice["id"]))["status"] == "paid"
    chain.node.mine(CONFIRMATIONS)
    await chain.scan()
    again = await chain.get(invoice["id"])
    assert again["status"] == "confirmed"
    assert [(p["tx_hash"], p["status"]) for p in again["payments"]] == [(tx, "confirmed")]
    assert await chain.events(invoice["id"]) == PAID_THEN_CONFIRMED + [
        "payment.reversed",
        "invoice.invalid",
        "payment.detected",
        "invoice.paid",
        "payment.confirmed",
        "invoice.confirmed",
    ]


# --- 7. shares across options are exact ---------------------------------------------------------


async def add_token(chain, code: str) -> str:
    token = chain.node.deploy_token(f"{code} test", code, 6)
    chain.node.mint(token, chain.node.accounts[0], 10**15)
    async with chain.runtime.db.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO currencies (id, network_code, code, name, contract, decimals)"
                " VALUES (:i, :n, :c, :c, :k, 6)"
            ),
            {"i": new_id("cur"), "n": chain.network, "c": code, "k": token},
        )
    return token


async def test_three_options_each_paid_a_third_pay_the_invoice_exactly(chain, database):
    tokens = {"USDT": chain.token, "USDC": await add_token(chain, "USDC")}
    tokens["PYUSD"] = await add_token(chain, "PYUSD")
    async with database.session() as session:
        await set_admin_rate(session, TEST_ACTOR, "PYUSD", "USD", Decimal(1))
    chain.reference_changed()
    try:
        invoice = await chain.invoice(
            "30",
            currency="USD",
            payment_options=[{"network": chain.network, "currency": c} for c in tokens],
        )
        assert [o["amount"] for o in invoice["payment_options"]] == ["30", "30", "30"]
        for option in invoice["payment_options"]:
            chain.node.transfer(tokens[option["currency"]], option["address"], units("10"))
        await chain.scan()
        paid = await chain.get(invoice["id"])
        assert paid["status"] == "paid"  # 1/3 + 1/3 + 1/3 = 1, with tolerance 0
        assert (paid["amount_paid"], paid["amount_due"]) == ("30", "0")
        public = (await chain.client.get(f"/api/v1/public/invoices/{invoice['id']}")).json()
        assert public["amount_due"] == "0"
        assert {o["amount_due"] for o in public["payment_options"]} == {"0"}
    finally:
        async with database.engine.begin() as conn:
            await conn.execute(text("DELETE FROM rates WHERE base = 'PYUSD' AND source = 'admin'"))


def test_shares_are_exact_fractions():
    thirds = [states.OptionAmounts(due=3 * 10**6, paid=10**6) for _ in range(3)]
    assert states.share(thirds).fraction() == 1 and states.share(thirds).reaches(0)
    facts = states.InvoiceFacts("partially_paid", tuple(thirds), False, False, 0)
    assert states.derive_status(facts) == "paid"
    short = [*thirds[:2], states.OptionAmounts(due=3 * 10**6, paid=10**6 - 1)]
    assert states.derive_status(states.InvoiceFacts("pending", tuple(short), True, False, 0)) == (
        "partially_paid"
    )
    assert states.share(thirds[:1]).text() == "0.333333"
    assert states.share(thirds).text() == "1"


# --- 8. one invoice's events in the order of its changes ---------------------------------------


async def test_events_of_one_invoice_are_written_in_commit_order(chain):
    """Another settler of the same invoice (a second network's scanner, say) holds its row
    while this scanner commits a payment for it: this scanner writes nothing of the invoice's
    until it has the row, so its events come after the other's in `seq` as in commit order."""
    invoice = await chain.invoice("10")
    chain.pay(invoice, units("4"))
    async with chain.runtime.db.driver() as other, other.transaction():
        await states.lock(other, [invoice["id"]])
        scanning = asyncio.create_task(chain.scan())
        await wait_for_lock_wait(chain)
        await other.execute(
            "INSERT INTO events (id, merchant_id, type, subject_id, data)"
            " VALUES ($1, $2, 'invoice.partially_paid', $3, '{}'::jsonb)",
            new_id("evt"),
            chain.merchant.merchant_id,
            invoice["id"],
        )
    await scanning
    assert await chain.events(invoice["id"]) == [
        "invoice.created",
        "invoice.partially_paid",  # the other settler's, committed first
        "payment.detected",
        "invoice.partially_paid",
    ]


async def wait_for_lock_wait(chain) -> None:
    for _ in range(200):
        async with chain.runtime.db.engine.connect() as conn:
            waiting = await conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database()"
                )
            )
        if waiting:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the scanner never waited for the invoice's row")


# --- 6. a node that silently returns fewer logs ------------------------------------------------


async def test_logs_a_lagging_replica_leaves_out_are_found_on_another_endpoint(
    settings, database, caplog
):
    with run_anvil() as node, fake_rpc.serve(fake_rpc.LaggingReplica(node.url)) as replica:
        lagging = replica.respond
        async with chain_on(settings, database, node, [replica.url, node.url]) as chain:
            invoice = await chain.invoice("10")
            chain.pay(invoice, units("10"))
            await chain.scan()
            assert (await chain.get(invoice["id"]))["status"] == "paid"
            assert lagging.hidden >= 1 and lagging.by_hash == 0  # asked the other endpoint
            missing = [r for r in caplog.records if "rpc_logs_missing" in r.getMessage()]
            assert missing, "the endpoint that left logs out was not named"


async def test_a_lagging_only_endpoint_holds_the_cursor_until_it_catches_up(settings, database):
    with run_anvil() as node, fake_rpc.serve(fake_rpc.LaggingReplica(node.url)) as replica:
        lagging = replica.respond
        async with chain_on(settings, database, node, [replica.url]) as chain:
            lagging.lagging = False
            await chain.scan()  # the token's deployment and mint, read in time
            lagging.lagging = True
            before = chain.scanner.cursor.number
            invoice = await chain.invoice("10")
            chain.pay(invoice, units("10"))
            with pytest.raises(RpcError):
                await chain.scan()
            assert chain.scanner.cursor.number == before  # the payment's block is not passed
            assert lagging.by_hash >= 1
            lagging.lagging = False  # the replica caught up
            await chain.scan()
            assert (await chain.get(invoice["id"]))["status"] == "paid"


async def test_the_expiry_job_says_which_scanner_keeps_due_invoices_open(chain):
    await chain.scan()
    invoice = await chain.invoice("10")
    async with chain.runtime.db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE invoices SET expires_at = now() + interval '1 s' WHERE id = :i"),
            {"i": invoice["id"]},
        )
    await asyncio.sleep(1.1)  # due by the clock; the chain was last read before that
    outcome = await expire_invoices(chain.runtime)
    assert f"due but waiting for their scanner: 1 on {chain.network}" in outcome
