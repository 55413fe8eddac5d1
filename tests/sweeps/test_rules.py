"""What consolidation refuses or leaves alone, on anvil: dust (gas above the allowed share of
the value, or no price for it) listed and later swept when it is worth it; an address that
already holds its gas is swept without a top-up; the native coin swept less its gas; nothing
sent without a treasury, an account key or a gas wallet; the xprv checked against the xpub;
withdrawals to the treasury refused."""

from __future__ import annotations

import pytest
from bip_utils import Bip32Secp256k1
from sqlalchemy import text

from nespay.chains import localchain
from nespay.ledger.tasks import reconcile_ledger
from nespay.security.encryption import keyring_from_settings
from nespay.sweeps.treasury import TreasuryInvalid, set_treasury
from nespay.wallets import hd, hdkeys
from tests.payments.conftest import CONFIRMATIONS, units
from tests.sweeps.conftest import ACTOR, prepare
from tests.wallets.sending import ETH

pytestmark = pytest.mark.own_database

BO = "/api/backoffice/v1"


async def _share(sweeping, bps: int) -> None:
    sweeping.runtime.settings.consolidation_max_gas_share_bps = bps


async def test_dust_is_listed_then_swept_once_it_is_worth_the_gas(sweeping, admin_headers):
    chain = sweeping.chain
    [address] = await sweeping.paid(1)
    await _share(sweeping, 0)  # any gas at all is too much
    assert await sweeping.consolidate() == f"{chain.network}: 1 dust"
    [dust] = await sweeping.sweeps()
    assert (dust["status"], dust["address"], dust["topup_tx_id"]) == ("dust", address, None)
    assert "above 0 bps" in dust["reason"]
    assert await sweeping.rows("SELECT id FROM outgoing_transactions WHERE network_code = :n") == []
    listed = await chain.client.get(f"{BO}/sweeps?status=dust", headers=admin_headers)
    assert listed.status_code == 200, listed.text
    [item] = listed.json()["data"]
    assert (item["id"], item["amount"], item["currency"]) == (dust["id"], "10", "USDT")
    assert item["address"].lower() == address and item["address"] != address  # EIP-55

    # Judged again every pass: still dust, one row.
    await sweeping.consolidate()
    assert [s["id"] for s in await sweeping.sweeps()] == [dust["id"]]

    await _share(sweeping, 500)
    assert await sweeping.consolidate() == f"{chain.network}: 1 funding"
    [sweep] = await sweeping.run_until_swept()
    assert (sweep["id"], sweep["status"]) == (dust["id"], "confirmed")
    assert localchain.token_balance(chain.node.url, chain.token, sweeping.treasury) == units("10")


async def test_without_a_price_for_the_gas_nothing_is_spent(bare):
    sweeping = await prepare(bare)
    async with bare.runtime.db.engine.begin() as conn:
        await conn.execute(text("DELETE FROM rates WHERE base = 'ETH'"))
    await sweeping.paid(1)
    outcome = await sweeping.consolidate()
    assert outcome.startswith(f"{bare.network}: 1 dust, no USD rate for ETH or USDT"), outcome
    [dust] = await sweeping.sweeps()
    assert "no USD rate for ETH" in dust["reason"]


async def test_an_address_holding_its_gas_is_swept_without_a_top_up(sweeping):
    chain = sweeping.chain
    [address] = await sweeping.paid(1)
    # Gas sent to the address from the gas wallet's own books: recorded as a top-up would be
    # is not possible from outside, so the address is given ETH by a payer and the ledger
    # does not know it — the sweep still needs no top-up.
    chain.node.send_native(address, ETH // 10)
    assert await sweeping.consolidate() == f"{chain.network}: 1 sending"
    [sweep] = await sweeping.run_until_swept()
    assert sweep["status"] == "confirmed" and sweep["topup_tx_id"] is None
    assert localchain.token_balance(chain.node.url, chain.token, sweeping.treasury) == units("10")


async def test_the_native_coin_is_swept_less_its_gas_and_reconciles(sweeping):
    chain = sweeping.chain
    invoice = await chain.invoice("0.5", currency="ETH")
    address = invoice["payment_options"][0]["address"].lower()
    chain.node.send_native(address, ETH // 2)
    chain.node.mine(CONFIRMATIONS)
    await chain.scan()
    assert (await chain.get(invoice["id"]))["status"] == "confirmed"
    assert await sweeping.consolidate() == f"{chain.network}: 1 sending"
    [sweep] = await sweeping.run_until_swept()
    assert sweep["status"] == "confirmed"
    received = int(chain.node.rpc("eth_getBalance", sweeping.treasury, "latest"), 16)
    assert received == int(sweep["amount"]) and 0 < ETH // 2 - received < ETH // 1000
    assert await sweeping.account("treasury", "ETH") == received
    await reconcile_ledger(sweeping.runtime)
    [run] = await sweeping.rows(
        "SELECT status, lines FROM reconciliation_runs WHERE network_code = :n"
    )
    assert run["status"] == "ok", run["lines"]


async def test_nothing_is_sent_without_a_treasury_a_key_or_a_gas_wallet(bare):
    await _paid_without_preparation(bare)
    from nespay.sweeps.tasks import consolidate

    outcome = await consolidate(bare.runtime)
    assert outcome == (
        f"{bare.network}: no treasury address (nespay networks set-treasury --network "
        f"{bare.network})"
    )
    sweeping = await prepare(bare, import_xprv=False)
    assert "no account key to sign sweeps" in await sweeping.consolidate()
    async with bare.runtime.db.engine.begin() as conn:
        await conn.execute(text("UPDATE hot_wallets SET active = false WHERE role = 'gas'"))
    async with bare.runtime.db.session() as session:
        await hdkeys.import_xprv(
            session,
            bare.runtime.settings,
            keyring_from_settings(bare.runtime.settings),
            chain_family="evm",
            xprv=hdkeys.dev_account_xprv(),
        )
    assert "no gas hot wallet to fund sweeps" in await sweeping.consolidate()
    assert await sweeping.rows("SELECT id FROM outgoing_transactions WHERE network_code = :n") == []
    assert [s["status"] for s in await sweeping.sweeps()] == []


async def _paid_without_preparation(chain) -> None:
    invoice = await chain.invoice("10")
    chain.pay(invoice, units("10"))
    chain.node.mine(CONFIRMATIONS)
    await chain.scan()


async def test_an_xprv_must_be_the_account_key_of_the_configured_xpub(settings, database):
    keyring = keyring_from_settings(settings)
    other = (
        Bip32Secp256k1.FromSeed(b"\x01" * 32).DerivePath("m/44'/60'/0'").PrivateKey().ToExtended()
    )
    account = Bip32Secp256k1.FromExtendedKey(hdkeys.dev_account_xprv())
    cases = {
        other: "does not match HD_WALLET_XPUB",
        hd.DEV_EVM_XPUB: "is a public key",
        account.ChildKey(0).PrivateKey().ToExtended(): "is at depth 4",
        "xprv-not-a-key": "is not a valid extended private key",
    }
    for value, message in cases.items():
        async with database.session() as session:
            with pytest.raises(hdkeys.InvalidXprv, match=message) as caught:
                await hdkeys.import_xprv(session, settings, keyring, chain_family="evm", xprv=value)
        assert value not in str(caught.value)
    async with database.engine.connect() as conn:
        assert not await hdkeys.has_account_key(conn, "evm")


async def test_the_treasury_is_refused_as_a_withdrawal_address_and_checked_itself(sweeping):
    chain = sweeping.chain
    await sweeping.paid(1)
    response = await chain.client.post(
        "/api/v1/withdrawals",
        json={
            "network": chain.network,
            "currency": "USDT",
            "amount": "1",
            "address": sweeping.treasury,
        },
        headers=chain.merchant.headers,
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_address"
    assert "treasury" in response.json()["error"]["message"]
    async with chain.runtime.db.session() as session:
        with pytest.raises(TreasuryInvalid, match="deposit address or a hot wallet"):
            await set_treasury(session, ACTOR, chain.network, sweeping.gas_wallet)
        with pytest.raises(TreasuryInvalid, match="EIP-55"):
            await set_treasury(session, ACTOR, chain.network, "0x" + "aB" * 20)
        with pytest.raises(TreasuryInvalid, match="no network"):
            await set_treasury(session, ACTOR, "nowhere", sweeping.treasury)
