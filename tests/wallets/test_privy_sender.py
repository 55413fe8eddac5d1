"""A hot wallet whose signer is Privy: `eth_sendTransaction` over Privy's wallet RPC (the
fake signs with a key it holds and submits to anvil), with our nonce, gas and fees, and an
idempotency key per candidate, so a lost answer is asked again without a second
transaction."""

from __future__ import annotations

import base64
import json

import pytest

from nespay.runtime import Runtime
from nespay.wallets import hotkeys
from tests.fixtures.factories import register_network
from tests.fixtures.fake_privy import APP_ID, APP_SECRET, privy_settings
from tests.wallets.sending import ETH, Rig

pytestmark = pytest.mark.own_database
RECIPIENT = "0x" + "ef" * 20


async def privy_rig(node, fake, database_url, database) -> Rig:
    token = node.deploy_token("Test USD", "TUSD", 6)
    network = await register_network(database, [node.url], token, confirmations=1)
    wallet_id, address = fake.add_signing_wallet(node.url)
    async with database.session() as session:
        await hotkeys.add_privy_wallet(
            session, network=network, role="payouts", wallet_id=wallet_id, address=address
        )
    node.send_native(address, ETH)
    node.mint(token, address, 50_000_000)
    settings = privy_settings(database_url, fake.url)
    runtime = Runtime(settings, "jobs")
    await runtime.start()
    return Rig(node, token, network, settings, database, runtime, "", address.lower())


def rpc_requests(fake) -> list[dict]:
    return [r for r in fake.requests if r["path"].endswith("/rpc")]


async def test_privy_wallet_sends_with_our_nonce_and_fees_and_confirms(
    fresh_anvil, fake_privy, database_url, database
):
    r = await privy_rig(fresh_anvil, fake_privy, database_url, database)
    try:
        tx_id = await r.enqueue(RECIPIENT, 12_345_678, token=r.token)
        row = await r.run_until(tx_id, "confirmed")
    finally:
        await r.runtime.close()
    (request,) = rpc_requests(fake_privy)
    basic = base64.b64encode(f"{APP_ID}:{APP_SECRET}".encode()).decode()
    assert request["headers"]["authorization"] == f"Basic {basic}"
    assert request["headers"]["privy-app-id"] == APP_ID
    assert request["headers"]["privy-idempotency-key"] == f"{tx_id}:1"
    body = json.loads(request["body"])
    assert body["method"] == "eth_sendTransaction" and body["caip2"] == "eip155:31337"
    sent = body["params"]["transaction"]
    assert sent["to"] == r.token.lower() and sent["nonce"] == 0 and sent["value"] == "0x0"
    assert sent["data"].startswith("0xa9059cbb") and sent["gas_limit"] == row["gas_limit"]
    assert int(sent["max_fee_per_gas"], 16) == row["max_fee_per_gas"]

    (candidate,) = await r.candidates(tx_id)
    assert candidate["raw_transaction"] is None and candidate["tx_hash"] == row["mined_hash"]
    assert fresh_anvil.balance(r.token, RECIPIENT) == 12_345_678
    assert fresh_anvil.receipt(row["mined_hash"])["from"] == r.address


async def test_a_lost_privy_answer_is_asked_again_with_the_same_key_and_sends_once(
    fresh_anvil, fake_privy, database_url, database
):
    r = await privy_rig(fresh_anvil, fake_privy, database_url, database)
    try:
        fake_privy.fail_next(500, after_create=True)  # Privy sends, the answer is lost
        tx_id = await r.enqueue(RECIPIENT, 1_000, token=r.token)
        await r.run()
        row = await r.tx(tx_id)
        assert row["status"] == "signed" and "Privy did not send" in row["last_error"]
        row = await r.run_until(tx_id, "confirmed")
    finally:
        await r.runtime.close()
    keys = [q["headers"]["privy-idempotency-key"] for q in rpc_requests(fake_privy)]
    assert keys[:2] == [f"{tx_id}:1", f"{tx_id}:1"]
    assert fake_privy.rpc_submissions == 1
    assert r.nonce() == 1
    assert fresh_anvil.balance(r.token, RECIPIENT) == 1_000
