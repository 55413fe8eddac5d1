"""Money in and out on a real chain (anvil): a payment confirmed and credited less the fee, a
withdrawal above the threshold approved, sent by the jobs process's sender, confirmed, the
balance debited and the tokens at the payee; a refund the same way; the gas in the books."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from nespay.auth.principals import Actor, Principal
from nespay.chains import localchain
from nespay.wallets.tasks import send_transactions
from nespay.withdrawals import service
from tests.payments.conftest import CONFIRMATIONS, units
from tests.wallets.sending import ETH, import_key
from tests.withdrawals.conftest import PAYEE

# The sender works every network with queued transfers: in the shared database, other tests'
# networks (no node behind them) would have some.
pytestmark = pytest.mark.own_database

ADMIN = Principal("admin", "admin-sub-e2e", None, groups=frozenset({"finance"}))


async def _balance(chain) -> dict:
    response = await chain.client.get("/api/v1/balances", headers=chain.merchant.headers)
    return next(b for b in response.json()["data"] if b["network"] == chain.network)


async def _withdrawal(chain, withdrawal_id: str) -> dict:
    response = await chain.client.get(
        f"/api/v1/withdrawals/{withdrawal_id}", headers=chain.merchant.headers
    )
    return response.json()


async def _send_until(chain, withdrawal_id: str, status: str, passes: int = 12) -> dict:
    for _ in range(passes):
        await send_transactions(chain.runtime)
        found = await _withdrawal(chain, withdrawal_id)
        if found["status"] == status:
            return found
        chain.node.mine(1)
    raise AssertionError(f"{withdrawal_id} is {found['status']}, not {status}: {found}")


async def _wallet(chain) -> str:
    _, wallet = await import_key(chain.runtime.settings, chain.runtime.db, chain.network)
    chain.node.send_native(wallet.address, ETH)
    chain.node.mint(chain.token, wallet.address, units("1000"))
    return wallet.address


async def _paid(chain, amount: str) -> dict:
    invoice = await chain.invoice(amount)
    chain.pay(invoice, units(amount))
    chain.node.mine(CONFIRMATIONS)
    await chain.scan()
    assert (await chain.get(invoice["id"]))["status"] == "confirmed"
    return invoice


async def test_paid_credited_withdrawn_above_the_threshold_approved_sent_and_confirmed(chain):
    hot = await _wallet(chain)
    async with chain.runtime.db.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE merchants SET fee_bps = 100, withdrawal_approval_threshold_usd = 50"
                " WHERE id = :m"
            ),
            {"m": chain.merchant.merchant_id},
        )
    await _paid(chain, "100")
    assert (await _balance(chain))["available"] == "99"  # less the 1 % fee

    response = await chain.client.post(
        "/api/v1/withdrawals",
        json={"network": chain.network, "currency": "USDT", "amount": "60", "address": PAYEE},
        headers=chain.merchant.headers,
    )
    assert response.status_code == 201, response.text
    withdrawal = response.json()
    assert withdrawal["status"] == "pending_approval"
    await send_transactions(chain.runtime)  # nothing to send before the approval
    assert localchain.token_balance(chain.node.url, chain.token, PAYEE) == 0
    async with chain.runtime.db.session() as session:
        approved = await service.decide(
            session,
            ADMIN,
            Actor("admin", ADMIN.id),
            withdrawal["id"],
            approve=True,
            reason="known payee",
        )
    assert approved.status == "approved"

    done = await _send_until(chain, withdrawal["id"], "confirmed")
    assert done["tx_hash"] and done["broadcast_at"] and done["confirmed_at"]
    assert localchain.token_balance(chain.node.url, chain.token, PAYEE) == units("60")
    balance = await _balance(chain)
    assert (balance["available"], balance["held"]) == ("39", "0")
    types = [row for row in await chain.events(withdrawal["id"])]
    assert types == [
        "withdrawal.requested",
        "withdrawal.approved",
        "withdrawal.sent",
        "withdrawal.confirmed",
    ]
    receipt = chain.node.rpc("eth_getTransactionReceipt", done["tx_hash"])
    assert receipt["from"].lower() == hot.lower()
    gas = int(receipt["gasUsed"], 16) * int(receipt["effectiveGasPrice"], 16)
    async with chain.runtime.db.engine.connect() as conn:
        fees = await conn.scalar(
            text(
                "SELECT a.debits_posted FROM ledger_accounts a JOIN currencies c"
                " ON c.id = a.currency_id WHERE a.kind = 'network_fees'"
                " AND c.network_code = :n AND c.contract IS NULL"
            ),
            {"n": chain.network},
        )
    assert int(fees) == gas
    # Sending again changes nothing: the transfer is not repeated.
    await send_transactions(chain.runtime)
    assert localchain.token_balance(chain.node.url, chain.token, PAYEE) == units("60")


async def test_a_refund_is_sent_and_confirmed_on_chain(chain):
    await _wallet(chain)
    invoice = await _paid(chain, "10")
    response = await chain.client.post(
        f"/api/v1/invoices/{invoice['id']}/refunds",
        json={"amount": "4", "address": PAYEE},
        headers=chain.merchant.headers,
    )
    assert response.status_code == 201, response.text
    refund = response.json()
    assert refund["status"] == "approved"
    done = await _send_until(chain, refund["id"], "confirmed")
    assert done["kind"] == "refund"
    assert localchain.token_balance(chain.node.url, chain.token, PAYEE) == units("4")
    assert (await _balance(chain))["available"] == "6"
