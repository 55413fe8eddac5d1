"""The Tron scanner, proven on the fake TronGrid as the EVM scanner is on anvil: TRC-20 and TRX
payments move invoices; confirmation waits for the solidified block; what is not ours, not a
transfer, reverted or dust is ignored; reorgs reverse and re-count; catch-up goes batch by
batch; the lease fences writes; garbled or lagging answers are retried, never read past."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from nespay.chains.adapter import ChainInconsistent
from nespay.chains.cursors import LeaseLost
from nespay.chains.faketron import transfer_log
from tests.chains.tron_rig import address, tron_chain_on
from tests.fixtures.fake_trongrid import PAYER, STRANGER, fake_tron  # noqa: F401
from tests.invoices.conftest import admin_rate  # noqa: F401
from tests.payments.conftest import units


@pytest.fixture
async def tron(settings, database, fake_tron):  # noqa: F811
    async with tron_chain_on(settings, database, fake_tron) as chain:
        yield chain


async def test_a_trc20_payment_is_paid_then_confirmed_once_its_block_is_solidified(tron):
    invoice = await tron.invoice("10")
    option = invoice["payment_options"][0]
    assert option["address"].startswith("T") and option["token_contract"] == tron.token
    tx = tron.pay(invoice, units("10"))
    tron.fake.solid_lag = 5  # the solidified head stays behind the payment's block
    await tron.scan()
    paid = await tron.get(invoice["id"])
    assert paid["status"] == "paid" and paid["amount_paid"] == "10"
    [payment] = await tron.payments(invoice["id"])
    assert payment["tx_hash"] == tx and payment["log_index"] == 0
    assert payment["from_address"] == PAYER and payment["to_address"] == address(invoice)
    assert payment["status"] == "pending"
    tron.fake.mine(4)  # four blocks on top, still not solidified
    await tron.scan()
    assert (await tron.get(invoice["id"]))["status"] == "paid"
    tron.fake.mine(1)  # now head - 5 = the payment's block
    await tron.scan()
    confirmed = await tron.get(invoice["id"])
    assert confirmed["status"] == "confirmed" and confirmed["confirmed_at"]
    assert await tron.events(invoice["id"]) == [
        "invoice.created",
        "payment.detected",
        "invoice.paid",
        "payment.confirmed",
        "invoice.confirmed",
    ]


async def test_a_trx_payment_is_detected_in_sun(tron):
    invoice = await tron.invoice("2.5", currency="TRX")
    tron.fake.send_trx(PAYER, address(invoice), 2_500_000)
    tron.fake.mine(3)
    await tron.scan()
    fetched = await tron.get(invoice["id"])
    assert fetched["status"] == "confirmed" and fetched["amount_paid"] == "2.5"
    [payment] = await tron.payments(invoice["id"])
    assert payment["log_index"] == -1 and payment["amount"] == 2_500_000


async def test_what_is_not_a_payment_to_us_is_ignored(tron):
    invoice = await tron.invoice("10")
    ours = address(invoice)
    fake = tron.fake
    fake.send_trc20(tron.token, PAYER, STRANGER, units("10"))  # not our address
    fake.send_trc20(tron.token, PAYER, ours, units("10"), revert=True)  # reverted: no log
    impostor = fake.new_token("USDT")  # another contract's Transfer log to our address
    fake.send_trc20(impostor, PAYER, ours, units("10"))
    fake.send_trc20(tron.token, PAYER, ours, 0)  # zero-value poisoning
    # an Approval and a four-topic (TRC-721 style) Transfer from the watched token itself
    approval = transfer_log(tron.token, PAYER, ours, units("10"))
    approval["topics"][0] = "8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925"
    nft = transfer_log(tron.token, PAYER, ours, 0)
    nft["topics"].append("00" * 31 + "07")
    fake.emit(tron.token, [approval, nft], PAYER)
    fake.send_trx(PAYER, STRANGER, 5_000_000)  # TRX to someone else
    fake.mine(3)
    await tron.scan()
    assert (await tron.get(invoice["id"]))["status"] == "pending"
    assert await tron.payments(invoice["id"]) == []


async def test_two_invoices_paid_in_one_block_and_two_logs_of_one_transaction(tron):
    first, second = await tron.invoice("3"), await tron.invoice("4")
    both = [
        transfer_log(tron.token, PAYER, address(first), units("3")),
        transfer_log(tron.token, PAYER, address(second), units("4")),
    ]
    tx = tron.fake.emit(tron.token, both, PAYER)  # a batch transfer: one tx, two logs
    tron.fake.mine(3)
    await tron.scan()
    for invoice, index in ((first, 0), (second, 1)):
        assert (await tron.get(invoice["id"]))["status"] == "confirmed"
        [payment] = await tron.payments(invoice["id"])
        assert (payment["tx_hash"], payment["log_index"]) == (tx, index)


async def test_scanning_the_same_blocks_twice_counts_nothing_twice(tron):
    invoice = await tron.invoice("10")
    tron.pay(invoice, units("4"))
    await tron.scan()
    tron.scanner.cursor.number -= 1  # as after a crash between reading and committing
    async with tron.runtime.db.engine.connect() as conn:
        tron.scanner.cursor.hash = await conn.scalar(
            text("SELECT hash FROM chain_blocks WHERE network_code = :n AND number = :b"),
            {"n": tron.network, "b": tron.scanner.cursor.number},
        )
    await tron.scan()
    assert (await tron.get(invoice["id"]))["amount_paid"] == "4"
    assert len(await tron.payments(invoice["id"])) == 1


async def test_a_reorg_reverses_a_payment_and_a_remined_one_counts_again(tron):
    tron.fake.solid_lag = 10
    gone, remined = await tron.invoice("10"), await tron.invoice("5")
    lost_tx = tron.pay(gone, units("10"), mine=False)
    kept_tx = tron.pay(remined, units("5"))
    await tron.scan()
    assert (await tron.get(gone["id"]))["status"] == "paid"
    tron.fake.reorg(1, keep=[kept_tx], new=2)  # the block is replaced; one tx mined again
    await tron.scan()
    assert (await tron.get(gone["id"]))["status"] == "pending"
    assert (await tron.get(gone["id"]))["amount_paid"] == "0"
    assert "payment.reversed" in await tron.events(gone["id"])
    [orphaned] = await tron.payments(gone["id"])
    assert orphaned["tx_hash"] == lost_tx and orphaned["status"] == "orphaned"
    [again] = await tron.payments(remined["id"])
    assert again["tx_hash"] == kept_tx and again["status"] == "pending"
    assert (await tron.get(remined["id"]))["amount_paid"] == "5"


async def test_a_head_below_the_cursor_is_waited_out_then_the_payment_is_reversed(tron):
    tron.fake.solid_lag = 10
    invoice = await tron.invoice("10")
    tron.pay(invoice, units("10"), mine=False)
    tron.fake.mine(3)
    await tron.scan()
    tron.fake.reorg(3, keep=False, new=0)  # the chain ends below the blocks we read
    with pytest.raises(ChainInconsistent, match="below our cursor"):
        await tron.scan()
    tron.fake.mine(3)
    await tron.scan()
    assert (await tron.get(invoice["id"]))["status"] == "pending"


async def test_after_downtime_it_catches_up_batch_by_batch_and_finds_every_payment(tron):
    invoices = [await tron.invoice("1") for _ in range(6)]
    start = tron.scanner.cursor.number
    for invoice in invoices:
        tron.pay(invoice, units("1"))
        tron.fake.mine(6)  # blocks between the payments
    tron.scanner.batch = 5
    steps = []
    while (count := await tron.scanner.step()) > 0:
        steps.append(count)
    assert max(steps) <= 5 and sum(steps) == tron.fake.head - start
    for invoice in invoices:
        assert (await tron.get(invoice["id"]))["status"] in ("paid", "confirmed")


async def test_a_scanner_that_lost_its_lease_writes_nothing(tron):
    invoice = await tron.invoice("10")
    async with tron.runtime.db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE chain_cursors SET lease_expires_at = now() WHERE network_code = :n"),
            {"n": tron.network},
        )
    other = tron.another_scanner("other-replica")
    assert await other.acquire()
    tron.pay(invoice, units("10"))
    with pytest.raises(LeaseLost):
        await tron.scan()
    assert await tron.payments(invoice["id"]) == []
    while await other.step():
        pass
    assert (await tron.get(invoice["id"]))["status"] in ("paid", "confirmed")
    await other.release()


async def test_garbled_answers_are_retried_and_the_payment_is_found(tron):
    invoice = await tron.invoice("10")
    tron.pay(invoice, units("10"))
    garbage = {"blockID": "not a block id", "block_header": {"raw_data": {}}}
    for _ in range(3):
        tron.fake.fail_next(1, 200, body=garbage)
        with pytest.raises(ChainInconsistent):
            await tron.scan()
    await tron.scan()
    assert (await tron.get(invoice["id"]))["status"] in ("paid", "confirmed")


async def test_a_tron_invoice_offers_both_currencies_and_the_payer_sees_bare_base58(
    tron,
    admin_rate,  # noqa: F811
):
    await admin_rate("TRX", "USDT", "0.25")  # 10 USDT = 40 TRX
    options = [
        {"network": tron.network, "currency": "USDT"},
        {"network": tron.network, "currency": "TRX"},
    ]
    invoice = await tron.invoice("10", payment_options=options)
    usdt, trx = sorted(invoice["payment_options"], key=lambda o: o["currency"], reverse=True)
    assert usdt["address"] == trx["address"]  # one deposit address per chain family
    public = (await tron.client.get(f"/api/v1/public/invoices/{invoice['id']}")).json()
    shown = {o["currency"]: o for o in public["payment_options"]}
    assert shown["USDT"]["address"] == usdt["address"]
    assert shown["USDT"]["token_contract"] == tron.token and shown["TRX"]["token_contract"] is None
    for option in shown.values():  # a bare address: no `tron:` URI, no hex form, no 0x
        assert option["address"].startswith("T") and len(option["address"]) == 34
        assert ":" not in option["address"] and "0x" not in str(option)
    assert trx["amount"] == "40" and usdt["amount"] == "10"
    tron.fake.send_trx(PAYER, trx["address"], 40_000_000)
    tron.fake.mine(3)
    await tron.scan()
    assert (await tron.get(invoice["id"]))["status"] == "confirmed"
