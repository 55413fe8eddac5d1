"""A Privy deposit address (`WALLET_PROVIDER=privy`) is swept by its own Privy wallet: the
sender routes the deposit address's transfer to Privy's wallet RPC with that wallet's id, the
address's own nonce, and an idempotency key; no xprv is needed."""

from __future__ import annotations

import json

import pytest
from eth_account import Account
from sqlalchemy import text

from nespay.kit.ids import new_id
from nespay.runtime import Runtime
from nespay.sweeps.service import PURPOSE_SWEEP
from nespay.wallets import outgoing
from tests.fixtures.factories import merchant_with_key, register_network
from tests.fixtures.fake_privy import privy_settings
from tests.wallets.sending import ETH, Rig
from tests.wallets.support import insert_invoices

pytestmark = pytest.mark.own_database


async def test_a_privy_deposit_address_is_swept_through_its_privy_wallet(
    fresh_anvil, fake_privy, database_url, database
):
    node = fresh_anvil
    token = node.deploy_token("Test USD", "TUSD", 6)
    network = await register_network(database, [node.url], token, confirmations=1)
    wallet_id, address = fake_privy.add_signing_wallet(node.url)
    node.send_native(address, ETH)
    node.mint(token, address, 7_000_000)
    merchant = await merchant_with_key(database)
    treasury = Account.create().address.lower()
    deposit_id = new_id("dep")
    async with database.session() as session:
        [invoice_id] = await insert_invoices(session, merchant.merchant_id)
        await session.execute(
            text(
                "INSERT INTO deposit_addresses (id, chain_family, address, provider,"
                " provider_wallet_id, invoice_id, merchant_id)"
                " VALUES (:id, 'evm', :a, 'privy', :w, :i, :m)"
            ),
            {
                "id": deposit_id,
                "a": address.lower(),
                "w": wallet_id,
                "i": invoice_id,
                "m": merchant.merchant_id,
            },
        )
        tx_id = await outgoing.enqueue_from_deposit(
            session,
            purpose=PURPOSE_SWEEP,
            source_id=new_id("swp"),
            network=network,
            deposit_address_id=deposit_id,
            from_address=address,
            to_address=treasury,
            token_contract=token,
            amount=7_000_000,
        )
    settings = privy_settings(database_url, fake_privy.url)
    runtime = Runtime(settings, "jobs")
    await runtime.start()
    try:
        rig = Rig(node, token, network, settings, database, runtime, "", address.lower())
        row = await rig.run_until(tx_id, "confirmed")
    finally:
        await runtime.close()
    [request] = [r for r in fake_privy.requests if r["path"].endswith("/rpc")]
    assert f"/wallets/{wallet_id}/rpc" in request["path"]
    assert request["headers"]["privy-idempotency-key"] == f"{tx_id}:1"
    sent = json.loads(request["body"])["params"]["transaction"]
    assert sent["to"] == token.lower() and sent["nonce"] == 0
    assert node.balance(token, treasury) == 7_000_000
    assert node.receipt(row["mined_hash"])["from"] == address.lower()
