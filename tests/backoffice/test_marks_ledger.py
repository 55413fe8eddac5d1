"""An admin's mark, seen from the backoffice: the audit log names the admin, the search shows
the mark, the events follow, and the ledger does not move (it follows money on chain only:
docs/backoffice.md)."""

import asyncio

from tests.backoffice.conftest import BO, add_payment
from tests.invoices.conftest import error_code


async def test_mark_paid_is_audited_shown_evented_and_leaves_the_ledger_alone(
    admin_app, merchant, tokens
):
    network = await admin_app.network()
    invoice = await admin_app.invoice(merchant, network)
    await add_payment(admin_app, invoice, amount=4_000_000, status="pending", confirmed_at="NULL")
    before = await admin_app.scalar("SELECT count(*) FROM ledger_transfers")

    marked = await admin_app.client.post(
        f"{BO}/invoices/{invoice['id']}/mark-paid",
        headers=tokens["finance"],
        json={"reason": "paid by bank transfer, ref 77"},
    )
    assert marked.status_code == 200, marked.text
    assert [e.type for e in await admin_app.events(invoice["id"])] == [
        "invoice.created", "invoice.paid", "invoice.confirmed",
    ]  # fmt: skip
    assert await admin_app.scalar("SELECT count(*) FROM ledger_transfers") == before
    balances = await admin_app.client.get("/api/v1/balances", headers=merchant.headers)
    assert all(b["available"] in ("0", None) for b in balances.json()["data"]), balances.text

    audit = await admin_app.client.get(
        f"{BO}/audit-logs", headers=tokens["admin"], params={"target_id": invoice["id"]}
    )
    (entry,) = audit.json()["data"]
    assert entry["action"] == "invoice.marked_paid" and entry["actor_type"] == "admin"
    assert entry["detail"] == {"reason": "paid by bank transfer, ref 77"}
    assert entry["request_id"] == marked.headers["x-request-id"]

    shown = await admin_app.client.get(f"{BO}/invoices/{invoice['id']}", headers=tokens["support"])
    body = shown.json()
    assert body["status"] == "confirmed" and body["marked_at"] is not None
    assert body["status_reason"] == "paid by bank transfer, ref 77"


async def test_a_refused_mark_writes_no_audit_entry(admin_app, merchant, tokens):
    network = await admin_app.network()
    invoice = await admin_app.invoice(merchant, network)
    for reason in ("", "x" * 501, "nul\u0000"):
        refused = await admin_app.client.post(
            f"{BO}/invoices/{invoice['id']}/mark-invalid",
            headers=tokens["admin"],
            json={"reason": reason},
        )
        assert refused.status_code == 422 and error_code(refused) == "validation_error"
    entries = await admin_app.scalar(
        "SELECT count(*) FROM audit_logs WHERE target_id = :i", i=invoice["id"]
    )
    assert entries == 0


async def test_two_admins_marking_one_invoice_at_once_make_one_mark(admin_app, merchant, tokens):
    network = await admin_app.network()
    invoice = await admin_app.invoice(merchant, network)
    url = f"{BO}/invoices/{invoice['id']}"
    answers = await asyncio.gather(
        admin_app.client.post(f"{url}/mark-paid", headers=tokens["finance"], json={"reason": "a"}),
        admin_app.client.post(f"{url}/mark-invalid", headers=tokens["admin"], json={"reason": "b"}),
    )
    assert sorted(a.status_code for a in answers) == [200, 409]
    entries = await admin_app.scalar(
        "SELECT count(*) FROM audit_logs WHERE target_id = :i", i=invoice["id"]
    )
    assert entries == 1
    final = [e.type for e in await admin_app.events(invoice["id"])][1:]
    assert final in (["invoice.paid", "invoice.confirmed"], ["invoice.invalid"])
