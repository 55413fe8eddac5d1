"""Payments on a real chain (anvil) post to the ledger: seen → pending credit, confirmed →
posted less the fee, reorged → voided or reversed, re-mined → credited afresh; the balance
routes show it."""

from __future__ import annotations

from sqlalchemy import text

from tests.payments.conftest import CONFIRMATIONS, units


async def _balances(chain) -> dict[str, dict]:
    response = await chain.client.get("/api/v1/balances", headers=chain.merchant.headers)
    assert response.status_code == 200, response.text
    return {f"{b['currency']}@{b['network']}": b for b in response.json()["data"]}


async def _usdt(chain) -> dict:
    return (await _balances(chain))[f"USDT@{chain.network}"]


async def _transactions(chain, **params) -> list[dict]:
    response = await chain.client.get(
        "/api/v1/balance-transactions", params=params, headers=chain.merchant.headers
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def _set_fee(chain, bps: int | None) -> None:
    async with chain.runtime.db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE merchants SET fee_bps = :b WHERE id = :m"),
            {"b": bps, "m": chain.merchant.merchant_id},
        )


async def _invariants(chain) -> None:
    """Every currency balances, for pending and posted counters alike."""
    async with chain.runtime.db.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT currency_id, sum(debits_pending) - sum(credits_pending),"
                " sum(debits_posted) - sum(credits_posted) FROM ledger_accounts"
                " GROUP BY currency_id"
            )
        )
        for currency, pending, posted in rows:
            assert (pending, posted) == (0, 0), currency


async def test_a_payment_is_pending_until_confirmed_then_credited_less_the_fee(chain):
    await _set_fee(chain, 150)  # 1.5 %
    invoice = await chain.invoice("10")
    chain.pay(invoice, units("10"))
    await chain.scan()
    assert await _usdt(chain) == {
        "network": chain.network,
        "currency": "USDT",
        "available": "0",
        "pending": "10",
        "held": "0",
        "deficit": "0",
    }
    chain.node.mine(CONFIRMATIONS)
    await chain.scan()
    balance = await _usdt(chain)
    assert (balance["available"], balance["pending"]) == ("9.85", "0")
    payment_id = (await chain.get(invoice["id"]))["payments"][0]["id"]
    listed = await _transactions(chain, source_id=payment_id)
    assert [(t["type"], t["phase"], t["amount"]) for t in listed] == [
        ("payment_fee", "posted", "-0.15"),
        ("payment", "posted", "10"),
        ("payment", "pending", "10"),
    ]
    assert all(t["source"] == {"type": "payment", "id": payment_id} for t in listed)
    await _invariants(chain)


async def test_the_platform_fee_applies_when_the_merchant_has_none(chain, monkeypatch):
    monkeypatch.setattr(chain.runtime.settings, "platform_fee_bps", 100)
    invoice = await chain.invoice("10")
    chain.pay(invoice, units("10"))
    chain.node.mine(CONFIRMATIONS)  # first read already deep: posted at once with its fee
    await chain.scan()
    assert (await _usdt(chain))["available"] == "9.9"
    await _invariants(chain)


async def test_rescanning_the_same_blocks_credits_nothing_twice(chain):
    invoice = await chain.invoice("10")
    chain.pay(invoice, units("10"))
    chain.node.mine(CONFIRMATIONS)
    await chain.scan()
    chain.scanner.cursor.number -= CONFIRMATIONS + 1
    async with chain.runtime.db.engine.connect() as conn:
        chain.scanner.cursor.hash = await conn.scalar(
            text("SELECT hash FROM chain_blocks WHERE network_code = :n AND number = :b"),
            {"n": chain.network, "b": chain.scanner.cursor.number},
        )
    await chain.scan()
    assert (await _usdt(chain))["available"] == "10"


async def test_a_payment_reorged_away_before_confirming_is_voided(chain):
    invoice = await chain.invoice("10")
    chain.pay(invoice, units("10"))
    await chain.scan()
    chain.node.reorg(2)
    await chain.scan()
    balance = await _usdt(chain)
    assert (balance["available"], balance["pending"]) == ("0", "0")
    phases = [(t["type"], t["phase"], t["amount"]) for t in await _transactions(chain)]
    assert phases == [("payment", "voided", "10"), ("payment", "pending", "10")]
    await _invariants(chain)


async def test_a_confirmed_payment_reorged_away_is_reversed_with_its_fee_then_credited_again(
    chain,
):
    await _set_fee(chain, 100)
    invoice = await chain.invoice("10")
    tx = chain.pay(invoice, units("10"))
    raw = chain.node.rpc("eth_getRawTransactionByHash", tx)
    chain.node.mine(CONFIRMATIONS)
    await chain.scan()
    assert (await _usdt(chain))["available"] == "9.9"
    chain.node.reorg(CONFIRMATIONS + 1)
    await chain.scan()
    assert (await _usdt(chain))["available"] == "0"
    assert chain.node.send_raw(raw) == tx  # mined again, later
    await chain.scan()
    assert (await _usdt(chain))["pending"] == "10"
    chain.node.mine(CONFIRMATIONS)
    await chain.scan()
    balance = await _usdt(chain)
    assert (balance["available"], balance["pending"], balance["deficit"]) == ("9.9", "0", "0")
    kinds = [(t["type"], t["amount"]) for t in await _transactions(chain)]
    assert kinds == [
        ("payment_fee", "-0.1"),
        ("payment", "10"),
        ("payment", "10"),
        ("payment_reversal", "-10"),
        ("payment_fee_reversal", "0.1"),
        ("payment_fee", "-0.1"),
        ("payment", "10"),
    ]
    await _invariants(chain)


async def test_a_reversal_after_the_money_was_held_leaves_a_deficit(chain):
    from nespay.ledger import accounts
    from nespay.ledger.service import Transfer, record

    invoice = await chain.invoice("10")
    chain.pay(invoice, units("10"))
    chain.node.mine(CONFIRMATIONS)
    await chain.scan()
    currency_id = await _currency_id(chain)
    merchant = accounts.merchant(chain.merchant.merchant_id, currency_id)
    async with chain.runtime.db.driver() as db, db.transaction():
        await record(
            db,
            [
                Transfer(
                    "test/hold",
                    "withdrawal",
                    merchant,
                    accounts.platform("payouts", currency_id),
                    units("8"),
                    type="pending",
                )
            ],
        )
    chain.node.reorg(CONFIRMATIONS + 1)
    await chain.scan()
    balance = await _usdt(chain)
    assert (balance["available"], balance["held"], balance["deficit"]) == ("0", "8", "8")
    await _invariants(chain)


async def test_balances_are_the_callers_own(chain, database):
    from tests.fixtures.factories import merchant_with_key

    invoice = await chain.invoice("10")
    chain.pay(invoice, units("10"))
    await chain.scan()
    other = await merchant_with_key(database)
    response = await chain.client.get("/api/v1/balances", headers=other.headers)
    assert response.json() == {"data": []}
    response = await chain.client.get("/api/v1/balance-transactions", headers=other.headers)
    assert response.json() == {"data": [], "has_more": False}


async def _currency_id(chain) -> str:
    async with chain.runtime.db.engine.connect() as conn:
        return await conn.scalar(
            text("SELECT id FROM currencies WHERE network_code = :n AND code = 'USDT'"),
            {"n": chain.network},
        )
