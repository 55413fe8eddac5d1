"""`GET /stats`: confirmed volume per UTC day and currency inside the window, invoices created
in the window by status, callback deliveries by outcome, merchants by status, scanner lag.
Counts over whole tables: each test has a database of its own."""

import time

import pytest
from tests.backoffice.conftest import BO, add_payment
from tests.fixtures.callbacks import add_delivery, emit_event, register
from tests.invoices.conftest import error_code

from nespay.kit.ids import id_floor

pytestmark = pytest.mark.own_database

DAY_MS = 86_400_000


async def stats(app, tokens, group="finance", **params):
    response = await app.client.get(f"{BO}/stats", headers=tokens[group], params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_totals_count_what_happened_inside_the_window(admin_app, merchant, tokens):
    network = await admin_app.network()
    one, two, three = [await admin_app.invoice(merchant, network) for _ in range(3)]
    await admin_app.client.post(f"/api/v1/invoices/{three['id']}/cancel", headers=merchant.headers)
    old_ms = int(time.time() * 1000) - 40 * DAY_MS
    await admin_app.execute(
        "INSERT INTO invoices (id, merchant_id, status, price_amount, price_currency, expires_at,"
        " created_at) VALUES (:i, :m, 'expired', 5, 'USDT', now(), now() - interval '40 days')",
        i=id_floor("inv", old_ms)[:-1] + "1",
        m=merchant.merchant_id,
    )
    await add_payment(admin_app, one, amount=1_500_000)
    await add_payment(admin_app, two, amount=2_000_000)
    await add_payment(admin_app, two, amount=7_000_000, confirmed_at="now() - interval '40 days'")
    await add_payment(admin_app, two, amount=9_000_000, status="pending", confirmed_at="NULL")

    endpoint = await register(admin_app.client, merchant)
    for status in ("succeeded", "succeeded", "failed", "pending"):
        await add_delivery(
            admin_app.database, await emit_event(admin_app.database, merchant.merchant_id),
            endpoint["id"], status=status,
        )  # fmt: skip
    old = await add_delivery(
        admin_app.database, await emit_event(admin_app.database, merchant.merchant_id),
        endpoint["id"], status="pending",
    )  # fmt: skip
    await admin_app.execute(
        "UPDATE webhook_deliveries SET id = :n WHERE id = :o",
        n=id_floor("whd", old_ms)[:-1] + "1",
        o=old,
    )
    await admin_app.execute(
        "UPDATE chain_cursors SET block_number = 90, head_number = 100 WHERE network_code = :n",
        n=network,
    )

    month = await stats(admin_app, tokens)
    assert month["days"] == 30
    (today,) = month["volume"]
    assert (today["network"], today["currency"], today["amount"], today["payments"]) == (
        network,
        "USDT",
        "3.5",
        2,
    )
    invoices = month["invoices"]
    assert invoices["by_status"] == {
        "pending": 2, "partially_paid": 0, "paid": 0, "confirmed": 0, "expired": 0,
        "cancelled": 1, "invalid": 0,
    }  # fmt: skip
    assert invoices["open_now"] == 2
    callbacks = month["callbacks"]
    assert (callbacks["succeeded"], callbacks["failed"], callbacks["pending"]) == (2, 1, 1)
    assert callbacks["pending_now"] == 2
    assert (callbacks["endpoints_enabled"], callbacks["endpoints_disabled"]) == (1, 0)
    assert month["merchants"] == {"active": 1}
    (scanner,) = [s for s in month["scanners"] if s["network"] == network]
    assert (scanner["cursor"], scanner["head"], scanner["lag_blocks"]) == (90, 100, 10)

    quarter = await stats(admin_app, tokens, group="admin", days=60)
    assert [v["amount"] for v in quarter["volume"]] == ["3.5", "7"]
    assert quarter["invoices"]["by_status"]["expired"] == 1
    assert quarter["callbacks"]["pending"] == 2


@pytest.mark.parametrize("days", ["0", "367", "-1", "1.5", "x"])
async def test_a_window_outside_one_to_366_days_is_refused(admin_app, tokens, days):
    refused = await admin_app.client.get(
        f"{BO}/stats", headers=tokens["finance"], params={"days": days}
    )
    assert refused.status_code == 422 and error_code(refused) == "validation_error"
