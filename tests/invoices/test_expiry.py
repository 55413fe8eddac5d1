"""The `invoices.expire` job: open invoices past their expiry become `expired` with one
`invoice.expired` event each; others are untouched; a second run changes nothing. Each test
has a database of its own: the job expires every due invoice it finds, and says how many."""

import pytest

from nespay.invoices.tasks import expire_invoices

pytestmark = pytest.mark.own_database


async def make_due(app, *invoice_ids):
    await app.execute(
        "UPDATE invoices SET expires_at = now() - interval '1 minute' WHERE id = ANY(:ids)",
        ids=list(invoice_ids),
    )


async def states(app, ids):
    rows = await app.rows(
        "SELECT id, status, expired_at FROM invoices WHERE id = ANY(:ids)", ids=list(ids)
    )
    return {row.id: (row.status, row.expired_at is not None) for row in rows}


async def test_exactly_the_due_open_invoices_expire_once(app, merchant, network):
    made = [(await app.invoice(merchant, network))["id"] for _ in range(7)]
    due_pending, due_partial, due_paid, due_cancelled, due_confirmed, fresh, fresh_partial = made
    await make_due(app, due_pending, due_partial, due_paid, due_cancelled, due_confirmed)
    for invoice_id, status, ppm in (
        (due_partial, "partially_paid", 250_000),
        (due_paid, "paid", 1_000_000),
        (due_confirmed, "confirmed", 1_000_000),
        (fresh_partial, "partially_paid", 500_000),
    ):
        await app.execute(
            "UPDATE invoices SET status = :s, paid_ppm = :p WHERE id = :i",
            s=status,
            p=ppm,
            i=invoice_id,
        )
        await app.execute(  # what its payments would have counted
            "UPDATE invoice_options SET amount_paid = amount * :p / 1000000 WHERE invoice_id = :i",
            p=ppm,
            i=invoice_id,
        )
    cancelled = await app.client.post(
        f"/api/v1/invoices/{due_cancelled}/cancel", headers=merchant.headers
    )
    assert cancelled.status_code == 200

    assert await expire_invoices(app.runtime) == "2 invoices expired"
    assert await states(app, made) == {
        due_pending: ("expired", True),
        due_partial: ("expired", True),
        due_paid: ("paid", False),
        due_cancelled: ("cancelled", False),
        due_confirmed: ("confirmed", False),
        fresh: ("pending", False),
        fresh_partial: ("partially_paid", False),
    }
    for invoice_id in made:
        expired = [e for e in await app.events(invoice_id) if e.type == "invoice.expired"]
        assert len(expired) == (1 if invoice_id in (due_pending, due_partial) else 0)
    (event,) = [e for e in await app.events(due_partial) if e.type == "invoice.expired"]
    assert event.merchant_id == merchant.merchant_id
    assert event.data["id"] == due_partial and event.data["status"] == "expired"
    assert event.data["previous_status"] == "partially_paid"
    assert event.data["paid_share"] == "0.25"
    (pending_event,) = [e for e in await app.events(due_pending) if e.type == "invoice.expired"]
    assert pending_event.data["paid_share"] == "0"
    assert pending_event.data["previous_status"] == "pending"

    # The API shows it.
    shown = (await app.get(merchant, due_pending)).json()
    assert shown["status"] == "expired" and shown["expired_at"]

    # Again: nothing of ours changes, no event is added.
    before = {i: len(await app.events(i)) for i in made}
    expired_at = await app.rows(
        "SELECT id, expired_at FROM invoices WHERE id = ANY(:ids)", ids=made
    )
    assert await expire_invoices(app.runtime) == "0 invoices expired"
    assert {i: len(await app.events(i)) for i in made} == before
    assert (
        await app.rows("SELECT id, expired_at FROM invoices WHERE id = ANY(:ids)", ids=made)
        == expired_at
    )


async def test_an_invoice_is_not_expired_before_its_time(app, merchant, network):
    invoice = await app.invoice(merchant, network, expires_in=60)
    assert await expire_invoices(app.runtime) == "0 invoices expired"
    assert (await app.get(merchant, invoice["id"])).json()["status"] == "pending"
    assert [e.type for e in await app.events(invoice["id"])] == ["invoice.created"]


async def test_many_due_invoices_expire_across_batches(app, merchant, network, monkeypatch):
    from nespay.invoices import tasks

    monkeypatch.setattr(tasks, "BATCH", 2)
    made = [(await app.invoice(merchant, network))["id"] for _ in range(5)]
    await make_due(app, *made)
    assert await expire_invoices(app.runtime) == "5 invoices expired"
    assert set((await states(app, made)).values()) == {("expired", True)}
    for invoice_id in made:
        assert [e.type for e in await app.events(invoice_id)] == [
            "invoice.created",
            "invoice.expired",
        ]
