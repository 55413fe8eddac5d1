"""Admins mark an invoice paid or invalid, with a reason: through the one status function
(events in order, the audit log), and final — no payment moves a marked invoice."""

import os

import pytest

from tests.fixtures.database import make_settings
from tests.invoices.conftest import error_code

BO = "/api/backoffice/v1"


@pytest.fixture
async def admin_app(api_for, database_url, cognito):
    async with api_for(make_settings(database_url, **cognito.setting_values())) as value:
        yield value


@pytest.fixture(scope="module")
def tokens(cognito):
    found = {}
    for group in ("finance", "support"):
        name = f"marks-{group}-{os.getpid()}@example.com"
        cognito.new_user("admin", name, (group,))
        found[group] = {"authorization": f"Bearer {cognito.tokens('admin', name)['IdToken']}"}
    return found


async def mark(app, headers, invoice_id, what, reason="paid by bank transfer, ref 1042"):
    return await app.client.post(
        f"{BO}/invoices/{invoice_id}/mark-{what}", headers=headers, json={"reason": reason}
    )


async def test_finance_marks_an_unpaid_invoice_paid_and_it_is_settled_for_good(
    admin_app, merchant, tokens
):
    network = await admin_app.network()
    invoice = await admin_app.invoice(merchant, network)
    marked = await mark(admin_app, tokens["finance"], invoice["id"], "paid")
    assert marked.status_code == 200, marked.text
    assert marked.json()["status"] == "confirmed"
    events = await admin_app.events(invoice["id"])
    assert [e.type for e in events] == ["invoice.created", "invoice.paid", "invoice.confirmed"]
    assert events[-1].data["reason"] == "paid by bank transfer, ref 1042"
    assert events[-1].data["previous_status"] == "paid"
    (entry,) = await admin_app.rows(
        "SELECT action, before, after, detail, merchant_id FROM audit_logs WHERE target_id = :i",
        i=invoice["id"],
    )
    assert entry.action == "invoice.marked_paid" and entry.merchant_id == merchant.merchant_id
    assert (entry.before, entry.after) == ({"status": "pending"}, {"status": "confirmed"})
    assert entry.detail == {"reason": "paid by bank transfer, ref 1042"}

    again = await mark(admin_app, tokens["finance"], invoice["id"], "invalid")
    assert again.status_code == 409 and error_code(again) == "invoice_not_markable"
    # the expiry job and the status derivation leave a marked invoice alone
    from nespay.db import sql
    from nespay.invoices import states

    async with admin_app.database.session() as session:
        await states.settle(sql(session), [invoice["id"]])
    assert (await admin_app.get(merchant, invoice["id"])).json()["status"] == "confirmed"


async def test_marks_need_a_reason_the_right_group_and_a_markable_invoice(
    admin_app, merchant, tokens
):
    network = await admin_app.network()
    invoice = await admin_app.invoice(merchant, network)
    no_reason = await admin_app.client.post(
        f"{BO}/invoices/{invoice['id']}/mark-invalid", headers=tokens["finance"], json={}
    )
    assert no_reason.status_code == 422
    support = await mark(admin_app, tokens["support"], invoice["id"], "invalid")
    assert support.status_code == 403
    missing = await mark(admin_app, tokens["finance"], "inv_nope", "invalid")
    assert missing.status_code == 404 and error_code(missing) == "invoice_not_found"
    cancelled = await admin_app.client.post(
        f"/api/v1/invoices/{invoice['id']}/cancel", headers=merchant.headers
    )
    assert cancelled.status_code == 200
    refused = await mark(admin_app, tokens["finance"], invoice["id"], "paid")
    assert refused.status_code == 409 and error_code(refused) == "invoice_not_markable"
    assert [e.type for e in await admin_app.events(invoice["id"])] == [
        "invoice.created",
        "invoice.cancelled",
    ]
