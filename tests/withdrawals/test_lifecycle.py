"""What the chain says settles a withdrawal: confirmed posts its hold (and the payout leaves
the hot wallet in the books), failed releases it; each once, with its event."""

from __future__ import annotations

from nespay.withdrawals import service
from tests.withdrawals.conftest import PAYEE, fund, usdt_id
from tests.withdrawals.test_requests import body, usdt_balance, withdraw

USDT = 10**6
TX = "0x" + "ab" * 32


async def _counters(app, account_id: str) -> tuple:
    rows = await app.rows(
        "SELECT debits_pending, debits_posted, credits_pending, credits_posted"
        " FROM ledger_accounts WHERE id = :i",
        i=account_id,
    )
    return tuple(int(v) for v in rows[0]) if rows else (0, 0, 0, 0)


async def _run(app, step, *args) -> None:
    async with app.database.driver() as db, db.transaction():
        await step(db, *args)


async def test_a_sent_then_confirmed_withdrawal_posts_its_hold_once(app, merchant, network):
    await fund(app, merchant.merchant_id, network, 100 * USDT)
    withdrawal = (await withdraw(app, merchant, body(network, "25"))).json()
    await _run(app, service.sent, withdrawal["id"], TX)
    for _ in range(2):  # a repeated report changes nothing
        await _run(app, service.confirmed, withdrawal["id"], TX)
    got = await app.client.get(f"/api/v1/withdrawals/{withdrawal['id']}", headers=merchant.headers)
    done = got.json()
    assert done["status"] == "confirmed" and done["tx_hash"] == TX
    assert done["broadcast_at"] and done["confirmed_at"] and done["ended_at"]
    balance = await usdt_balance(app, merchant, network)
    assert (balance["available"], balance["held"]) == ("75", "0")
    currency = await usdt_id(app, network)
    assert await _counters(app, f"p:payouts:{currency}") == (0, 25 * USDT, 0, 25 * USDT)
    assert await _counters(app, f"p:hot_wallet:{currency}") == (0, 0, 0, 25 * USDT)
    types = [e.type for e in await app.events(withdrawal["id"])]
    assert types == ["withdrawal.requested", "withdrawal.sent", "withdrawal.confirmed"]
    failed_late = await _run(app, service.failed, withdrawal["id"], "late report")
    assert failed_late is None
    assert (await usdt_balance(app, merchant, network))["available"] == "75"


async def test_a_failed_withdrawal_releases_its_hold(app, merchant, network):
    await fund(app, merchant.merchant_id, network, 100 * USDT)
    withdrawal = (await withdraw(app, merchant, body(network, "25"))).json()
    await _run(app, service.sent, withdrawal["id"], TX)
    await _run(app, service.failed, withdrawal["id"], "execution reverted")
    got = (
        await app.client.get(f"/api/v1/withdrawals/{withdrawal['id']}", headers=merchant.headers)
    ).json()
    assert got["status"] == "failed" and got["failure_reason"] == "execution reverted"
    balance = await usdt_balance(app, merchant, network)
    assert (balance["available"], balance["held"]) == ("100", "0")
    await _run(app, service.confirmed, withdrawal["id"], TX)  # too late: nothing moves
    assert (await usdt_balance(app, merchant, network))["available"] == "100"
    types = [e.type for e in await app.events(withdrawal["id"])]
    assert types == ["withdrawal.requested", "withdrawal.sent", "withdrawal.failed"]


async def test_balance_transactions_show_the_hold_and_its_post(app, merchant, network):
    await fund(app, merchant.merchant_id, network, 100 * USDT)
    withdrawal = (await withdraw(app, merchant, body(network, "25", address=PAYEE))).json()
    await _run(app, service.confirmed, withdrawal["id"], TX)
    listed = await app.client.get(
        "/api/v1/balance-transactions",
        params={"source_id": withdrawal["id"]},
        headers=merchant.headers,
    )
    assert [(t["type"], t["phase"], t["amount"]) for t in listed.json()["data"]] == [
        ("withdrawal", "posted", "-25"),
        ("withdrawal", "pending", "-25"),
    ]
