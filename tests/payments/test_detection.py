"""Payments found on a real chain move invoices through their states, with their events."""

import asyncio

from sqlalchemy import text

from tests.payments.conftest import CONFIRMATIONS, units


async def test_full_payment_is_paid_then_confirmed_after_the_networks_confirmations(chain):
    invoice = await chain.invoice("10")
    assert invoice["status"] == "pending"
    assert invoice["payment_options"][0]["amount"] == "10"
    chain.pay(invoice, units("10"))
    await chain.scan()
    paid = await chain.get(invoice["id"])
    assert paid["status"] == "paid" and paid["amount_due"] == "0" and paid["paid_at"]
    (payment,) = paid["payments"]
    assert payment["amount"] == "10" and payment["status"] == "pending"
    assert payment["from_address"] == chain.node.accounts[0].lower()
    chain.node.mine(CONFIRMATIONS - 2)
    await chain.scan()
    assert (await chain.get(invoice["id"]))["status"] == "paid"
    chain.node.mine(1)
    await chain.scan()
    confirmed = await chain.get(invoice["id"])
    assert confirmed["status"] == "confirmed" and confirmed["confirmed_at"]
    assert confirmed["payments"][0]["confirmations"] == CONFIRMATIONS
    assert await chain.events(invoice["id"]) == [
        "invoice.created",
        "payment.detected",
        "invoice.paid",
        "payment.confirmed",
        "invoice.confirmed",
    ]


async def test_partial_payment_keeps_invoice_open_and_reports_amount_due(chain):
    invoice = await chain.invoice("10")
    chain.pay(invoice, units("4"))
    await chain.scan()
    partial = await chain.get(invoice["id"])
    assert partial["status"] == "partially_paid"
    assert (partial["amount_paid"], partial["amount_due"]) == ("4", "6")
    chain.pay(invoice, units("6"))
    await chain.scan()
    done = await chain.get(invoice["id"])
    assert done["status"] == "paid" and len(done["payments"]) == 2
    assert await chain.events(invoice["id"]) == [
        "invoice.created",
        "payment.detected",
        "invoice.partially_paid",
        "payment.detected",
        "invoice.paid",
    ]


async def test_overpayment_is_paid_and_flagged(chain):
    invoice = await chain.invoice("10")
    chain.pay(invoice, units("12.5"))
    await chain.scan()
    paid = await chain.get(invoice["id"])
    assert paid["status"] == "paid" and paid["flags"]["overpaid"] is True
    assert paid["amount_paid"] == "12.5"


async def test_underpayment_within_tolerance_counts_as_paid(chain, database):
    async with database.engine.begin() as conn:
        await conn.execute(
            text("UPDATE merchants SET underpayment_tolerance_bps = 100 WHERE id = :m"),
            {"m": chain.merchant.merchant_id},
        )
    invoice = await chain.invoice("10")
    chain.pay(invoice, units("9.95"))
    await chain.scan()
    assert (await chain.get(invoice["id"]))["status"] == "paid"


async def test_payment_after_expiry_is_recorded_and_credited_as_late(chain):
    invoice = await chain.invoice("10", expires_in=60)
    await chain.expire(invoice["id"])
    assert (await chain.get(invoice["id"]))["status"] == "expired"
    chain.pay(invoice, units("10"))
    await chain.scan()
    late = await chain.get(invoice["id"])
    assert late["status"] == "paid" and late["flags"]["paid_late"] is True
    assert late["payments"][0]["late"] is True
    assert await chain.events(invoice["id"]) == [
        "invoice.created",
        "invoice.expired",
        "payment.detected",
        "invoice.paid",
    ]


async def test_a_late_partial_payment_is_credited_and_the_invoice_stays_expired(chain):
    from nespay.invoices.tasks import expire_invoices

    invoice = await chain.invoice("10")
    chain.pay(invoice, units("4"))
    await chain.scan()
    await chain.expire(invoice["id"])
    chain.pay(invoice, units("2"))
    await chain.scan()
    await expire_invoices(chain.runtime)
    after = await chain.get(invoice["id"])
    assert after["status"] == "expired" and after["amount_paid"] == "6"
    assert after["flags"]["paid_late"] is True
    assert (await chain.events(invoice["id"])).count("invoice.expired") == 1


async def test_two_invoices_paid_in_one_block_are_both_found(chain):
    first, second = await chain.invoice("3"), await chain.invoice("7")
    chain.node.set_automine(False)
    chain.pay(first, units("3"), wait=False)
    chain.pay(second, units("7"), wait=False)
    chain.node.mine(1)
    chain.node.set_automine(True)
    await chain.scan()
    a, b = await chain.get(first["id"]), await chain.get(second["id"])
    assert a["status"] == b["status"] == "paid"
    assert a["payments"][0]["block_number"] == b["payments"][0]["block_number"]


async def test_native_coin_payment_is_detected(chain):
    invoice = await chain.invoice("0.5", currency="ETH")
    chain.node.send_native(invoice["payment_options"][0]["address"], 5 * 10**17)
    await chain.scan()
    paid = await chain.get(invoice["id"])
    assert paid["status"] == "paid"
    assert paid["payments"][0]["log_index"] == -1


async def test_a_transfer_to_an_address_that_is_not_ours_is_ignored(chain):
    before = await chain.runtime.db.engine.connect()
    await before.close()
    stranger = "0x" + "ab" * 20
    chain.node.transfer(chain.token, stranger, units("10"))
    await chain.scan()
    async with chain.runtime.db.engine.connect() as conn:
        count = await conn.scalar(
            text("SELECT count(*) FROM payments WHERE to_address = :a"), {"a": stranger}
        )
    assert count == 0


async def test_scanning_the_same_blocks_twice_counts_nothing_twice(chain):
    invoice = await chain.invoice("10")
    chain.pay(invoice, units("4"))
    await chain.scan()
    chain.scanner.cursor.number -= 1  # as after a crash between reading and committing
    async with chain.runtime.db.engine.begin() as conn:
        number = chain.scanner.cursor.number
        chain.scanner.cursor.hash = await conn.scalar(
            text("SELECT hash FROM chain_blocks WHERE network_code = :n AND number = :b"),
            {"n": chain.network, "b": number},
        )
    await chain.scan()
    again = await chain.get(invoice["id"])
    assert again["amount_paid"] == "4" and len(again["payments"]) == 1


async def test_reorg_that_removes_a_counted_payment_reverses_it(chain):
    invoice = await chain.invoice("10")
    chain.pay(invoice, units("10"))
    await chain.scan()
    assert (await chain.get(invoice["id"]))["status"] == "paid"
    chain.node.reorg(2)  # the payment's block is replaced by an empty one
    await chain.scan()
    reverted = await chain.get(invoice["id"])
    assert reverted["status"] == "pending"
    assert reverted["payments"][0]["status"] == "orphaned"
    assert (await chain.events(invoice["id"]))[-2:] == ["payment.reversed", "invoice.reverted"]


async def confirmed_invoice(chain) -> dict:
    """An invoice for 10 paid in full, its payment mined deep enough to be confirmed."""
    invoice = await chain.invoice("10")
    chain.pay(invoice, units("10"))
    chain.node.mine(CONFIRMATIONS)
    await chain.scan()
    assert (await chain.get(invoice["id"]))["status"] == "confirmed"
    return invoice


async def test_confirmed_invoice_whose_payment_vanishes_becomes_invalid(chain):
    invoice = await confirmed_invoice(chain)
    chain.node.reorg(CONFIRMATIONS + 1)
    await chain.scan()
    assert (await chain.get(invoice["id"]))["status"] == "invalid"
    assert (await chain.events(invoice["id"]))[-1] == "invoice.invalid"


async def test_a_payment_to_a_confirmed_invoice_is_recorded_and_flagged_not_a_step_back(chain):
    invoice = await confirmed_invoice(chain)
    chain.pay(invoice, units("3"))  # the payer sends again: the merchant may have shipped
    await chain.scan()
    extra = await chain.get(invoice["id"])
    assert extra["status"] == "confirmed" and extra["flags"]["overpaid"] is True
    assert extra["amount_paid"] == "13"
    assert sorted(p["status"] for p in extra["payments"]) == ["confirmed", "pending"]
    chain.node.mine(CONFIRMATIONS)
    await chain.scan()
    settled = await chain.get(invoice["id"])
    assert settled["status"] == "confirmed"
    assert [p["status"] for p in settled["payments"]] == ["confirmed", "confirmed"]
    assert await chain.events(invoice["id"]) == [
        "invoice.created",
        "payment.detected",
        "invoice.paid",
        "payment.confirmed",
        "invoice.confirmed",
        "payment.detected",  # the extra payment is told, the invoice moves no further
        "payment.confirmed",
    ]


async def test_a_confirmed_invoice_paid_in_thirds_takes_no_step_back_either(chain):
    invoice = await chain.invoice("30")
    for _ in range(3):  # each a third: their shares, summed one by one, round below 1
        chain.pay(invoice, units("10"))
    chain.node.mine(CONFIRMATIONS)
    await chain.scan()
    assert (await chain.get(invoice["id"]))["status"] == "confirmed"
    chain.pay(invoice, units("1"))
    await chain.scan()
    assert (await chain.get(invoice["id"]))["status"] == "confirmed"
    assert (await chain.events(invoice["id"])).count("invoice.paid") == 1


async def test_a_scanner_that_lost_its_lease_writes_nothing(chain):
    invoice = await chain.invoice("10")
    async with chain.runtime.db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE chain_cursors SET lease_token = lease_token + 1 WHERE network_code = :n"),
            {"n": chain.network},
        )
    chain.pay(invoice, units("10"))
    from nespay.chains.cursors import LeaseLost

    try:
        await chain.scan()
        raise AssertionError("the stale scanner kept writing")
    except LeaseLost:
        pass
    await asyncio.sleep(0)
    assert (await chain.get(invoice["id"]))["status"] == "pending"


async def test_a_payment_first_seen_already_confirmed_emits_each_event_once_in_order(chain):
    invoice = await chain.invoice("10")
    chain.pay(invoice, units("10"))
    chain.node.mine(CONFIRMATIONS)  # read for the first time already deep, as when catching up
    await chain.scan()
    expected = [
        "invoice.created",
        "payment.detected",
        "invoice.paid",
        "payment.confirmed",
        "invoice.confirmed",
    ]
    assert await chain.events(invoice["id"]) == expected
    chain.scanner.cursor.number -= CONFIRMATIONS + 1  # re-read the same blocks after a crash
    async with chain.runtime.db.engine.connect() as conn:
        chain.scanner.cursor.hash = await conn.scalar(
            text("SELECT hash FROM chain_blocks WHERE network_code = :n AND number = :b"),
            {"n": chain.network, "b": chain.scanner.cursor.number},
        )
    await chain.scan()
    again = await chain.get(invoice["id"])
    assert again["status"] == "confirmed" and len(again["payments"]) == 1
    assert await chain.events(invoice["id"]) == expected


async def test_a_scanner_at_the_head_that_lost_its_lease_cannot_renew_it(chain):
    from nespay.chains.cursors import LeaseLost

    await chain.scan()  # at the head: the next step only renews the lease
    async with chain.runtime.db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE chain_cursors SET lease_token = lease_token + 1 WHERE network_code = :n"),
            {"n": chain.network},
        )
    try:
        await chain.scanner.step()
        raise AssertionError("the stale scanner renewed a lease it no longer holds")
    except LeaseLost:
        pass
