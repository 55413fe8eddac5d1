"""Reading invoices (by id, scoped to the merchant), listing them with filters and cursor
pagination, and cancelling them."""

import pytest

from tests.invoices.conftest import error_code


async def test_get_by_id(app, merchant, network):
    invoice = await app.invoice(merchant, network, order_id="g-1")
    response = await app.get(merchant, invoice["id"])
    assert response.status_code == 200 and response.json() == invoice
    assert response.headers["x-request-id"]


async def test_another_merchants_invoice_and_an_unknown_id_are_404(
    app, merchant, other_merchant, network
):
    invoice = await app.invoice(merchant, network)
    for invoice_id in (invoice["id"], "inv_00000000000000000000000000", "nope"):
        response = await app.get(other_merchant, invoice_id)
        assert response.status_code == 404, response.text
        assert error_code(response) == "invoice_not_found"
    cancel = await app.client.post(
        f"/api/v1/invoices/{invoice['id']}/cancel", headers=other_merchant.headers
    )
    assert cancel.status_code == 404 and error_code(cancel) == "invoice_not_found"
    assert (await app.get(merchant, invoice["id"])).json()["status"] == "pending"


async def test_reads_need_a_key(app, merchant, network):
    invoice = await app.invoice(merchant, network)
    assert (await app.client.get(f"/api/v1/invoices/{invoice['id']}")).status_code == 401
    assert (await app.client.get("/api/v1/invoices")).status_code == 401


async def list_(app, merchant, **params):
    response = await app.client.get("/api/v1/invoices", headers=merchant.headers, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"data", "has_more"}
    return body


@pytest.fixture
async def five(app, merchant, network):
    """Five invoices of `merchant`, oldest first; the second is cancelled."""
    made = [await app.invoice(merchant, network, order_id=f"ord-{n}") for n in range(5)]
    cancelled = await app.client.post(
        f"/api/v1/invoices/{made[1]['id']}/cancel", headers=merchant.headers
    )
    assert cancelled.status_code == 200
    made[1] = cancelled.json()
    return made


async def test_list_is_newest_first_and_only_the_merchants(app, merchant, other_merchant, five):
    body = await list_(app, merchant)
    assert [i["id"] for i in body["data"]] == [i["id"] for i in reversed(five)]
    assert body["has_more"] is False
    assert body["data"][0] == five[-1]
    assert await list_(app, other_merchant) == {"data": [], "has_more": False}


async def test_list_filters_by_status_and_order_id(app, merchant, five):
    cancelled = await list_(app, merchant, status="cancelled")
    assert [i["id"] for i in cancelled["data"]] == [five[1]["id"]]
    pending = await list_(app, merchant, status="pending")
    assert {i["id"] for i in pending["data"]} == {i["id"] for i in five} - {five[1]["id"]}
    assert (await list_(app, merchant, status="paid"))["data"] == []
    by_order = await list_(app, merchant, order_id="ord-3")
    assert [i["id"] for i in by_order["data"]] == [five[3]["id"]]
    assert (await list_(app, merchant, order_id="ord-3", status="cancelled"))["data"] == []
    bad = await app.client.get(
        "/api/v1/invoices", headers=merchant.headers, params={"status": "bogus"}
    )
    assert bad.status_code == 422 and error_code(bad) == "validation_error"


async def test_list_filters_by_creation_time(app, merchant, five):
    middle = five[2]["created_at"]
    newer = await list_(app, merchant, created_gte=middle)
    assert [i["id"] for i in newer["data"]] == [i["id"] for i in reversed(five[2:])]
    older = await list_(app, merchant, created_lt=middle)
    assert [i["id"] for i in older["data"]] == [i["id"] for i in reversed(five[:2])]
    window = await list_(
        app, merchant, created_gte=five[1]["created_at"], created_lt=five[4]["created_at"]
    )
    assert [i["id"] for i in window["data"]] == [five[3]["id"], five[2]["id"], five[1]["id"]]
    # With an offset instead of Z, the same instant.
    assert (await list_(app, merchant, created_gte="2000-01-01T07:00:00+07:00"))["data"]
    assert (await list_(app, merchant, created_lt="2000-01-01T00:00:00Z"))["data"] == []
    bad = await app.client.get(
        "/api/v1/invoices", headers=merchant.headers, params={"created_gte": "yesterday"}
    )
    assert bad.status_code == 422


async def test_list_pages_with_limit_and_starting_after(app, merchant, five):
    newest_first = [i["id"] for i in reversed(five)]
    seen, cursor, pages = [], None, []
    while True:
        params = {"limit": 2} | ({"starting_after": cursor} if cursor else {})
        page = await list_(app, merchant, **params)
        pages.append((len(page["data"]), page["has_more"]))
        seen += [i["id"] for i in page["data"]]
        if not page["has_more"]:
            break
        cursor = page["data"][-1]["id"]
    assert pages == [(2, True), (2, True), (1, False)]
    assert seen == newest_first
    exact = await list_(app, merchant, limit=5)
    assert len(exact["data"]) == 5 and exact["has_more"] is False
    # Filters and cursor together.
    pending = await list_(app, merchant, status="pending", limit=1, starting_after=newest_first[2])
    assert [i["id"] for i in pending["data"]] == [five[0]["id"]]
    assert pending["has_more"] is False
    for limit in (0, 101, "x"):
        bad = await app.client.get(
            "/api/v1/invoices", headers=merchant.headers, params={"limit": limit}
        )
        assert bad.status_code == 422


# --- cancel -----------------------------------------------------------------------------
async def cancel(app, merchant, invoice_id):
    return await app.client.post(f"/api/v1/invoices/{invoice_id}/cancel", headers=merchant.headers)


async def test_cancelling_a_pending_invoice(app, merchant, network):
    invoice = await app.invoice(merchant, network)
    response = await cancel(app, merchant, invoice["id"])
    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert cancelled["status"] == "cancelled" and cancelled["cancelled_at"]
    assert cancelled["id"] == invoice["id"] and cancelled["amount_due"] == "10"
    assert (await app.get(merchant, invoice["id"])).json() == cancelled
    events = await app.events(invoice["id"])
    assert [e.type for e in events] == ["invoice.created", "invoice.cancelled"]
    assert events[1].merchant_id == merchant.merchant_id
    assert events[1].data == {  # the shape of every status event
        "id": invoice["id"],
        "status": "cancelled",
        "previous_status": "pending",
        "paid_share": "0",
        "flags": {"overpaid": False, "paid_late": False},
    }
    again = await cancel(app, merchant, invoice["id"])
    assert again.status_code == 409 and error_code(again) == "invoice_not_cancellable"
    assert len(await app.events(invoice["id"])) == 2


@pytest.mark.parametrize(
    ("status", "paid_ppm"),
    [("expired", 0), ("paid", 1_000_000), ("partially_paid", 400_000), ("confirmed", 1_000_000),
     ("invalid", 0)],
)  # fmt: skip
async def test_only_pending_invoices_can_be_cancelled(app, merchant, network, status, paid_ppm):
    invoice = await app.invoice(merchant, network)
    await app.execute(
        "UPDATE invoices SET status = :s, paid_ppm = :p WHERE id = :i",
        s=status,
        p=paid_ppm,
        i=invoice["id"],
    )
    response = await cancel(app, merchant, invoice["id"])
    assert response.status_code == 409, response.text
    assert error_code(response) == "invoice_not_cancellable"
    assert (await app.get(merchant, invoice["id"])).json()["status"] == status
    assert [e.type for e in await app.events(invoice["id"])] == ["invoice.created"]


async def test_an_invoice_expired_by_the_job_cannot_be_cancelled(app, merchant, network):
    from nespay.invoices.tasks import expire_invoices

    invoice = await app.invoice(merchant, network)
    await app.execute(
        "UPDATE invoices SET expires_at = now() - interval '1 second' WHERE id = :i",
        i=invoice["id"],
    )
    await expire_invoices(app.runtime)
    response = await cancel(app, merchant, invoice["id"])
    assert response.status_code == 409 and error_code(response) == "invoice_not_cancellable"
    assert (await app.get(merchant, invoice["id"])).json()["status"] == "expired"
