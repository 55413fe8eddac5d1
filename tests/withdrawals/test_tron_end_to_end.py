"""Money in and out on Tron (the fake TronGrid): a TRC-20 payment confirmed and credited, a
withdrawal above the threshold approved, signed offline by the jobs process's sender,
broadcast, confirmed once solidified, the balance debited and the tokens at the payee; the
TRX burnt for energy and bandwidth in the books; an EVM address refused for a Tron network."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from nespay.auth.principals import Actor, Principal
from nespay.wallets.tasks import send_transactions
from nespay.withdrawals import service
from tests.chains.tron_rig import tron_chain_on
from tests.fixtures.fake_trongrid import fake_tron  # noqa: F401 - fixture
from tests.invoices.conftest import admin_rate  # noqa: F401 - fixture
from tests.payments.conftest import units
from tests.wallets.tron_sending import PAYEE, TRX, USDT, import_tron_key

pytestmark = pytest.mark.own_database

ADMIN = Principal("admin", "admin-sub-tron-e2e", None, groups=frozenset({"finance"}))


@pytest.fixture
async def tron(settings, database, fake_tron):  # noqa: F811
    async with tron_chain_on(settings, database, fake_tron) as chain:
        _, wallet = await import_tron_key(settings, database, chain.network)
        fake_tron.fund(wallet.address, 100 * TRX)
        fake_tron.mint(chain.token, wallet.address, 1_000 * USDT)
        fake_tron.mine()
        chain.hot = wallet.address  # type: ignore[attr-defined]
        yield chain


async def _withdrawal(chain, withdrawal_id: str) -> dict:
    response = await chain.client.get(
        f"/api/v1/withdrawals/{withdrawal_id}", headers=chain.merchant.headers
    )
    return response.json()


async def _balance(chain) -> dict:
    response = await chain.client.get("/api/v1/balances", headers=chain.merchant.headers)
    return next(
        b
        for b in response.json()["data"]
        if b["network"] == chain.network and b["currency"] == "USDT"
    )


async def test_a_tron_withdrawal_is_approved_sent_confirmed_and_posted(tron):
    async with tron.runtime.db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE merchants SET withdrawal_approval_threshold_usd = 50 WHERE id = :m"),
            {"m": tron.merchant.merchant_id},
        )
    invoice = await tron.invoice("100")
    tron.pay(invoice, units("100"))
    tron.fake.mine(3)
    await tron.scan()
    assert (await tron.get(invoice["id"]))["status"] == "confirmed"

    refused = await tron.client.post(
        "/api/v1/withdrawals",
        json={
            "network": tron.network,
            "currency": "USDT",
            "amount": "60",
            "address": "0x8ba1f109551bD432803012645Ac136ddd64DBA72",
        },
        headers=tron.merchant.headers,
    )
    assert refused.status_code == 422 and "hex" in refused.json()["error"]["message"]

    response = await tron.client.post(
        "/api/v1/withdrawals",
        json={"network": tron.network, "currency": "USDT", "amount": "60", "address": PAYEE},
        headers=tron.merchant.headers,
    )
    assert response.status_code == 201, response.text
    withdrawal = response.json()
    assert withdrawal["status"] == "pending_approval" and withdrawal["address"] == PAYEE
    await send_transactions(tron.runtime)  # nothing is sent before the approval
    assert tron.fake.token_balance(tron.token, PAYEE) == 0 and not tron.fake.broadcasts
    async with tron.runtime.db.session() as session:
        await service.decide(
            session, ADMIN, Actor("admin", ADMIN.id), withdrawal["id"], approve=True, reason="ok"
        )
    before = tron.fake.trx_balance(tron.hot)
    for _ in range(8):
        await send_transactions(tron.runtime)
        found = await _withdrawal(tron, withdrawal["id"])
        if found["status"] == "confirmed":
            break
        tron.fake.mine()
    assert found["status"] == "confirmed", found
    assert tron.fake.token_balance(tron.token, PAYEE) == units("60")
    assert tron.fake.included(found["tx_hash"]) == 1
    balance = await _balance(tron)
    assert (balance["available"], balance["held"]) == ("40", "0")
    assert await tron.events(withdrawal["id"]) == [
        "withdrawal.requested",
        "withdrawal.approved",
        "withdrawal.sent",
        "withdrawal.confirmed",
    ]
    burnt = before - tron.fake.trx_balance(tron.hot)
    async with tron.runtime.db.engine.connect() as conn:
        fees = await conn.scalar(
            text(
                "SELECT a.debits_posted FROM ledger_accounts a JOIN currencies c"
                " ON c.id = a.currency_id WHERE a.kind = 'network_fees'"
                " AND c.network_code = :n AND c.contract IS NULL"
            ),
            {"n": tron.network},
        )
    assert burnt > 0 and int(fees) == burnt  # the TRX burnt, in sun, as network fees
    await send_transactions(tron.runtime)
    tron.fake.mine(2)
    await send_transactions(tron.runtime)
    assert tron.fake.token_balance(tron.token, PAYEE) == units("60")
