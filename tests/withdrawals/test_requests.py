"""A merchant asks for a withdrawal: validated, held at once, approved by an admin above the
threshold, released when rejected or cancelled; never an overdraw, never twice."""

from __future__ import annotations

import asyncio

import pytest

from tests.fixtures.factories import merchant_user
from tests.invoices.conftest import error_code
from tests.withdrawals.conftest import BO, PAYEE, fund

USDT = 10**6


def body(network: str, amount: str = "40", **extra) -> dict:
    return {"network": network, "currency": "USDT", "amount": amount, "address": PAYEE, **extra}


async def withdraw(app, merchant, payload, key: str | None = None):
    headers = dict(merchant.headers)
    if key:
        headers["Idempotency-Key"] = key
    return await app.client.post("/api/v1/withdrawals", json=payload, headers=headers)


async def usdt_balance(app, merchant, network) -> dict:
    response = await app.client.get("/api/v1/balances", headers=merchant.headers)
    assert response.status_code == 200, response.text
    return next(b for b in response.json()["data"] if b["network"] == network)


async def test_a_withdrawal_below_the_threshold_is_held_and_approved_at_once(
    app, merchant, network
):
    await fund(app, merchant.merchant_id, network, 100 * USDT)
    response = await withdraw(app, merchant, body(network))
    assert response.status_code == 201, response.text
    withdrawal = response.json()
    assert withdrawal["status"] == "approved" and withdrawal["requires_approval"] is False
    assert withdrawal["amount"] == "40" and withdrawal["address"] == PAYEE
    balance = await usdt_balance(app, merchant, network)
    assert (balance["available"], balance["held"]) == ("60", "40")
    events = await app.events(withdrawal["id"])
    assert [e.type for e in events] == ["withdrawal.requested"]
    assert events[0].data["status"] == "approved"
    (entry,) = await app.rows(
        "SELECT action, actor_id FROM audit_logs WHERE target_id = :i", i=withdrawal["id"]
    )
    assert entry.action == "withdrawal.requested" and entry.actor_id == merchant.key_id


async def test_above_the_threshold_an_approver_decides_and_support_cannot(
    app, merchant, network, admins
):
    await app.execute(
        "UPDATE merchants SET withdrawal_approval_threshold_usd = 50 WHERE id = :m",
        m=merchant.merchant_id,
    )
    await fund(app, merchant.merchant_id, network, 100 * USDT)
    withdrawal = (await withdraw(app, merchant, body(network, "60"))).json()
    assert withdrawal["status"] == "pending_approval" and withdrawal["requires_approval"]
    url = f"{BO}/withdrawals/{withdrawal['id']}"
    reason = {"reason": "known payee, invoice 77"}
    refused = await app.client.post(f"{url}/approve", json=reason, headers=admins["support"])
    assert refused.status_code == 403
    queue = await app.client.get(
        f"{BO}/withdrawals", params={"status": "pending_approval"}, headers=admins["support"]
    )
    assert withdrawal["id"] in [w["id"] for w in queue.json()["data"]]
    approved = await app.client.post(f"{url}/approve", json=reason, headers=admins["finance"])
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"
    assert approved.json()["decision_reason"] == "known payee, invoice 77"
    twice = await app.client.post(f"{url}/approve", json=reason, headers=admins["admin"])
    assert twice.status_code == 409 and error_code(twice) == "withdrawal_not_changeable"
    (entry,) = await app.rows(
        "SELECT detail FROM audit_logs WHERE target_id = :i AND action = 'withdrawal.approved'",
        i=withdrawal["id"],
    )
    assert entry.detail == reason
    types = [e.type for e in await app.events(withdrawal["id"])]
    assert types == ["withdrawal.requested", "withdrawal.approved"]


async def test_a_rejected_or_cancelled_withdrawal_releases_its_hold(app, merchant, network, admins):
    await app.execute(
        "UPDATE merchants SET withdrawal_approval_threshold_usd = 1 WHERE id = :m",
        m=merchant.merchant_id,
    )
    await fund(app, merchant.merchant_id, network, 100 * USDT)
    first = (await withdraw(app, merchant, body(network, "30"))).json()
    second = (await withdraw(app, merchant, body(network, "50"))).json()
    assert (await usdt_balance(app, merchant, network))["available"] == "20"
    rejected = await app.client.post(
        f"{BO}/withdrawals/{first['id']}/reject",
        json={"reason": "unknown payee"},
        headers=admins["admin"],
    )
    assert rejected.json()["status"] == "rejected"
    cancelled = await app.client.post(
        f"/api/v1/withdrawals/{second['id']}/cancel", headers=merchant.headers
    )
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    balance = await usdt_balance(app, merchant, network)
    assert (balance["available"], balance["held"]) == ("100", "0")
    again = await app.client.post(
        f"/api/v1/withdrawals/{second['id']}/cancel", headers=merchant.headers
    )
    assert again.status_code == 409
    late = await app.client.post(
        f"{BO}/withdrawals/{second['id']}/approve", json={"reason": "x"}, headers=admins["admin"]
    )
    assert late.status_code == 409 and error_code(late) == "withdrawal_not_changeable"
    assert (await usdt_balance(app, merchant, network))["available"] == "100"


async def test_an_approved_withdrawal_cannot_be_cancelled(app, merchant, network):
    await fund(app, merchant.merchant_id, network, 10 * USDT)
    withdrawal = (await withdraw(app, merchant, body(network, "5"))).json()
    response = await app.client.post(
        f"/api/v1/withdrawals/{withdrawal['id']}/cancel", headers=merchant.headers
    )
    assert response.status_code == 409 and error_code(response) == "withdrawal_not_changeable"


async def test_nobody_approves_their_own_request(app, merchant, network, cognito):
    import os

    await app.execute(
        "UPDATE merchants SET withdrawal_approval_threshold_usd = 1 WHERE id = :m",
        m=merchant.merchant_id,
    )
    await fund(app, merchant.merchant_id, network, 10 * USDT)
    email = f"both-{os.getpid()}@example.com"
    sub = cognito.new_user("user", email)
    await merchant_user(app.database, merchant.merchant_id, sub=sub, role="owner")
    user = {"authorization": f"Bearer {cognito.tokens('user', email)['IdToken']}"}
    response = await app.client.post("/api/v1/withdrawals", json=body(network, "5"), headers=user)
    assert response.status_code == 201, response.text
    cognito.new_user("admin", email, ("finance",))
    same_person = {"authorization": f"Bearer {cognito.tokens('admin', email)['IdToken']}"}
    refused = await app.client.post(
        f"{BO}/withdrawals/{response.json()['id']}/approve",
        json={"reason": "mine"},
        headers=same_person,
    )
    assert refused.status_code == 403 and error_code(refused) == "own_withdrawal"


async def test_a_withdrawal_beyond_the_balance_is_refused_and_changes_nothing(
    app, merchant, network
):
    await fund(app, merchant.merchant_id, network, 10 * USDT)
    response = await withdraw(app, merchant, body(network, "10.000001"))
    assert response.status_code == 422 and error_code(response) == "insufficient_balance"
    assert "GET /api/v1/balances" in response.json()["error"]["message"]
    assert (
        await app.scalar(
            "SELECT count(*) FROM withdrawals WHERE merchant_id = :m", m=merchant.merchant_id
        )
        == 0
    )
    assert (await usdt_balance(app, merchant, network))["available"] == "10"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"currency": "DOGE"}, "unknown_currency"),
        ({"network": "no-such-network"}, "unknown_currency"),
        ({"amount": "1.0000001"}, "invalid_amount"),
        ({"amount": "0"}, "validation_error"),
        ({"amount": "-5"}, "validation_error"),
        ({"amount": "1e3"}, "validation_error"),
        ({"amount": 5}, "validation_error"),
        ({"address": "0x1234"}, "invalid_address"),
        ({"address": "TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE"}, "invalid_address"),
        ({"address": PAYEE.replace("b", "B", 1)}, "invalid_address"),  # checksum broken
        ({"address": "0x" + "0" * 40}, "invalid_address"),
        ({"address": "0x8ba1f109551bd432803012645ac136ddd64dba7\u0000"}, "validation_error"),
        ({"extra": "field"}, "validation_error"),
    ],
)
async def test_bad_requests_are_refused_clearly_and_change_nothing(
    app, merchant, network, change, code
):
    await fund(app, merchant.merchant_id, network, 10 * USDT)
    response = await withdraw(app, merchant, body(network, "1") | change)
    assert response.status_code == 422, response.text
    assert error_code(response) == code
    assert (await usdt_balance(app, merchant, network))["held"] == "0"


async def test_an_address_in_lower_case_is_taken_and_shown_checksummed(app, merchant, network):
    await fund(app, merchant.merchant_id, network, 10 * USDT)
    response = await withdraw(app, merchant, body(network, "1", address=PAYEE.lower()))
    assert response.status_code == 201 and response.json()["address"] == PAYEE


async def test_one_of_our_own_deposit_addresses_is_refused(app, merchant, network):
    await fund(app, merchant.merchant_id, network, 10 * USDT)
    invoice = await app.invoice(merchant, network)
    own = invoice["payment_options"][0]["address"]
    response = await withdraw(app, merchant, body(network, "1", address=own))
    assert response.status_code == 422 and error_code(response) == "invalid_address"


async def test_the_same_idempotency_key_returns_the_same_withdrawal_and_holds_once(
    app, merchant, network
):
    await fund(app, merchant.merchant_id, network, 100 * USDT)
    payload = body(network, "10")
    answers = await asyncio.gather(*(withdraw(app, merchant, payload, "wd-1") for _ in range(5)))
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 4
    assert (await usdt_balance(app, merchant, network))["held"] == "10"
    other = await withdraw(app, merchant, body(network, "11"), "wd-1")
    assert other.status_code == 409 and error_code(other) == "idempotency_key_reused"


async def test_a_hundred_concurrent_withdrawals_never_overdraw(app, merchant, network):
    await fund(app, merchant.merchant_id, network, 1000 * USDT)
    answers = await asyncio.gather(
        *(withdraw(app, merchant, body(network, "15")) for _ in range(100))
    )
    statuses = [a.status_code for a in answers]
    assert [a.text for a in answers if a.status_code not in (201, 422)] == []
    assert statuses.count(201) == 66 and statuses.count(422) == 34
    balance = await usdt_balance(app, merchant, network)
    assert (balance["available"], balance["held"]) == ("10", "990")


async def test_a_merchant_sees_only_its_own_withdrawals(app, merchant, other_merchant, network):
    await fund(app, merchant.merchant_id, network, 10 * USDT)
    withdrawal = (await withdraw(app, merchant, body(network, "1"))).json()
    foreign = await app.client.get(
        f"/api/v1/withdrawals/{withdrawal['id']}", headers=other_merchant.headers
    )
    assert foreign.status_code == 404 and error_code(foreign) == "withdrawal_not_found"
    listed = await app.client.get("/api/v1/withdrawals", headers=other_merchant.headers)
    assert listed.json()["data"] == []
    cancel = await app.client.post(
        f"/api/v1/withdrawals/{withdrawal['id']}/cancel", headers=other_merchant.headers
    )
    assert cancel.status_code == 404
    own = await app.client.get("/api/v1/withdrawals", headers=merchant.headers)
    assert [w["id"] for w in own.json()["data"]] == [withdrawal["id"]]


async def test_a_network_without_a_hot_wallet_is_refused_saying_what_to_do(app, merchant):
    bare = await app.network()
    await fund(app, merchant.merchant_id, bare, 10 * USDT)
    response = await withdraw(app, merchant, body(bare, "1"))
    assert response.status_code == 409 and error_code(response) == "hot_wallet_missing"
    assert f"nespay wallets import-hot-key --network {bare}" in response.json()["error"]["message"]
    assert (await usdt_balance(app, merchant, bare))["held"] == "0"


async def test_the_hot_wallets_own_address_is_refused(app, merchant, network):
    from tests.withdrawals.conftest import hot_wallet

    await fund(app, merchant.merchant_id, network, 10 * USDT)
    own = await hot_wallet(app, network)
    response = await withdraw(app, merchant, body(network, "1", address=own))
    assert response.status_code == 422 and error_code(response) == "invalid_address"


async def test_an_approved_withdrawal_is_queued_for_the_sender_once(app, merchant, network):
    await fund(app, merchant.merchant_id, network, 10 * USDT)
    withdrawal = (await withdraw(app, merchant, body(network, "2"))).json()
    (row,) = await app.rows(
        "SELECT o.purpose, o.source_id, o.amount, o.to_address, o.status FROM withdrawals w"
        " JOIN outgoing_transactions o ON o.id = w.outgoing_tx_id WHERE w.id = :i",
        i=withdrawal["id"],
    )
    assert (row.purpose, row.source_id, int(row.amount)) == (
        "withdrawal",
        withdrawal["id"],
        2 * USDT,
    )
    assert row.to_address == PAYEE.lower() and row.status == "queued"


async def test_an_admins_approval_queues_the_withdrawal_for_the_sender(
    app, merchant, network, admins
):
    await app.execute(
        "UPDATE merchants SET withdrawal_approval_threshold_usd = 1 WHERE id = :m",
        m=merchant.merchant_id,
    )
    await fund(app, merchant.merchant_id, network, 10 * USDT)
    withdrawal = (await withdraw(app, merchant, body(network, "5"))).json()
    assert (
        await app.scalar("SELECT outgoing_tx_id FROM withdrawals WHERE id = :i", i=withdrawal["id"])
        is None
    )
    await app.client.post(
        f"{BO}/withdrawals/{withdrawal['id']}/approve",
        json={"reason": "ok"},
        headers=admins["finance"],
    )
    assert (
        await app.scalar(
            "SELECT o.status FROM withdrawals w JOIN outgoing_transactions o"
            " ON o.id = w.outgoing_tx_id WHERE w.id = :i",
            i=withdrawal["id"],
        )
        == "queued"
    )
