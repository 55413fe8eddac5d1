"""A merchant's invoice view is read in several statements (the invoice, its options, its
payments); it comes from ONE snapshot, so a scanner commit falling between them cannot show a
confirmed payment on a still-paid invoice. The interleaving is forced, not hoped for: the
"scanner" holds the payments table locked until the reader has read the invoice and waits."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from tests.payments.conftest import chain, units  # noqa: F401 - a fixture


async def _waiting_on_payments(chain) -> bool:  # noqa: F811
    async with chain.runtime.db.engine.connect() as conn:
        found = await conn.scalar(
            text(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                " WHERE c.relname = 'payments' AND NOT l.granted"
            )
        )
    return bool(found)


async def test_the_invoice_view_never_straddles_a_scanner_commit(chain):  # noqa: F811
    invoice = await chain.invoice("10")
    chain.pay(invoice, units("10"))
    chain.node.mine(1)
    await chain.scan()
    before = await chain.get(invoice["id"])
    assert before["status"] == "paid"
    assert [p["status"] for p in before["payments"]] != ["confirmed"]

    async with chain.runtime.db.engine.connect() as writer:
        transaction = await writer.begin()
        await writer.execute(text("LOCK TABLE payments IN ACCESS EXCLUSIVE MODE"))
        await writer.execute(
            text("UPDATE payments SET status = 'confirmed' WHERE invoice_id = :i"),
            {"i": invoice["id"]},
        )
        await writer.execute(
            text("UPDATE invoices SET status = 'confirmed' WHERE id = :i"), {"i": invoice["id"]}
        )
        reading = asyncio.create_task(chain.get(invoice["id"]))
        for _ in range(200):  # the reader has read the invoice and waits for the payments
            if await _waiting_on_payments(chain):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the reader never reached the payments")
        await transaction.commit()
    seen = await reading
    statuses = [p["status"] for p in seen["payments"]]
    assert (seen["status"], statuses) == (
        before["status"],
        [p["status"] for p in before["payments"]],
    )
    after = await chain.get(invoice["id"])
    assert (after["status"], [p["status"] for p in after["payments"]]) == (
        "confirmed",
        ["confirmed"],
    )
