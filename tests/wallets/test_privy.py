"""Privy server wallets through a fake Privy on a real socket: a reservation gives the wallet id
and address; Privy's idempotency key comes from the merchant's Idempotency-Key (or the
invoice); bad credentials are a 503 that names the variables, never the secret; transient
failures are retried with the same idempotency key (so a lost answer gives the same wallet).
Invoice creation with Privy is in tests/invoices/test_privy.py."""

import base64
import json

import pytest
from pydantic import ValidationError

from nespay.wallets import (
    AddressRequest,
    WalletNotConfigured,
    WalletProviderUnavailable,
    check_configuration,
    provider_for,
)
from nespay.wallets.privy import PrivyWalletProvider, wallet_idempotency_key
from tests.fixtures.fake_privy import APP_ID, APP_SECRET, privy_settings
from tests.fixtures.processes import free_port

MERCHANT = "mer_privytest"
INVOICE = "inv_privytest"


@pytest.fixture
async def privy(database_url, fake_privy):
    provider = PrivyWalletProvider(
        privy_settings(database_url, fake_privy.url), retry_delays=(0.01, 0.02)
    )
    yield provider
    await provider.aclose()


async def reserve(provider, database, families, *, key=None):
    return await provider.reserve(database, AddressRequest(MERCHANT, INVOICE, families, key))


def wallet_key(merchant_id, key, invoice_id, family):
    return wallet_idempotency_key(AddressRequest(merchant_id, invoice_id, [family], key), family)


async def test_reservation_gives_wallet_id_and_address(database_url, database, fake_privy):
    provider = provider_for(privy_settings(database_url, fake_privy.url))
    try:
        evm, tron = await reserve(provider, database, ["evm", "tron"])
    finally:
        await provider.aclose()

    evm_wallet, tron_wallet = fake_privy.wallets
    assert evm.provider == "privy" and evm.derivation_index is None
    assert evm.id.startswith("dep_") and evm.chain_family == "evm"
    assert evm.provider_wallet_id == evm_wallet["id"]
    assert evm.address == evm_wallet["address"].lower() != evm_wallet["address"]
    assert tron.provider_wallet_id == tron_wallet["id"]
    assert tron.address == tron_wallet["address"] and tron.address.startswith("T")

    first, second = fake_privy.requests
    headers = first["headers"]
    assert (
        headers["authorization"]
        == "Basic " + base64.b64encode(f"{APP_ID}:{APP_SECRET}".encode()).decode()
    )
    assert headers["privy-app-id"] == APP_ID
    assert headers["content-type"] == "application/json"
    # No Idempotency-Key: the invoice's id makes our own retries of this request safe.
    assert headers["privy-idempotency-key"] == f"{INVOICE}:evm"
    assert json.loads(first["body"]) == {"chain_type": "ethereum"}
    assert second["headers"]["privy-idempotency-key"] == f"{INVOICE}:tron"
    assert json.loads(second["body"]) == {"chain_type": "tron"}


def test_wallet_key_comes_from_merchant_key_and_family_when_the_request_has_a_key():
    key = wallet_key("mer_a", "order-7", "inv_1", "evm")
    # Another invoice id (a retry of the request) keeps the key; all else changes it.
    assert wallet_key("mer_a", "order-7", "inv_2", "evm") == key
    assert key != wallet_key("mer_b", "order-7", "inv_1", "evm")
    assert key != wallet_key("mer_a", "order-8", "inv_1", "evm")
    assert key != wallet_key("mer_a", "order-7", "inv_1", "tron")
    assert "order-7" not in key and len(key) <= 256
    longest = wallet_key("mer_a", "k" * 255, "inv_1", "evm")
    assert len(longest) == len(key)


async def test_wrong_secret_is_503_naming_the_variables_not_the_secret(
    database_url, database, fake_privy
):
    wrong = "wrong-secret-value-77e1"
    provider = PrivyWalletProvider(
        privy_settings(database_url, fake_privy.url, privy_app_secret=wrong)
    )
    try:
        with pytest.raises(WalletProviderUnavailable) as caught:
            await reserve(provider, database, ["evm"])
    finally:
        await provider.aclose()
    error = caught.value
    assert error.status_code == 503 and error.code == "wallet_provider_unavailable"
    assert "PRIVY_APP_ID" in error.message and "PRIVY_APP_SECRET" in error.message
    assert wrong not in str(error) and APP_SECRET not in str(error)
    assert len(fake_privy.requests) == 1  # credentials are not retried


async def test_transient_500s_are_retried_with_the_same_key(privy, database, fake_privy):
    fake_privy.fail_next(500, times=2)
    [row] = await reserve(privy, database, ["evm"], key="order-1")
    assert len(fake_privy.requests) == 3
    keys = {r["headers"]["privy-idempotency-key"] for r in fake_privy.requests}
    assert keys == {wallet_key(MERCHANT, "order-1", INVOICE, "evm")}
    [wallet] = fake_privy.wallets
    assert row.provider_wallet_id == wallet["id"]


async def test_lost_answer_retry_gets_the_same_wallet(privy, database, fake_privy):
    # Privy made the wallet but we never saw the answer; the retry must not make a second one.
    fake_privy.fail_next(502, after_create=True)
    [row] = await reserve(privy, database, ["tron"])
    assert len(fake_privy.requests) == 2
    [wallet] = fake_privy.wallets
    assert (row.provider_wallet_id, row.address) == (wallet["id"], wallet["address"])


@pytest.mark.parametrize("status", [429, 409], ids=["rate-limited", "duplicate-in-progress"])
async def test_rate_limited_or_in_progress_then_success(privy, database, fake_privy, status):
    fake_privy.fail_next(status, retry_after="0")
    [row] = await reserve(privy, database, ["evm"])
    assert len(fake_privy.requests) == 2 and row.provider_wallet_id


async def test_three_failures_are_503(privy, database, fake_privy):
    fake_privy.fail_next(500, times=3)
    with pytest.raises(WalletProviderUnavailable) as caught:
        await reserve(privy, database, ["evm"])
    assert caught.value.status_code == 503 and "3 attempts" in caught.value.message
    assert len(fake_privy.requests) == 3


async def test_unreachable_privy_is_503(database_url, database):
    provider = PrivyWalletProvider(
        privy_settings(database_url, f"http://127.0.0.1:{free_port()}"), retry_delays=(0, 0)
    )
    try:
        with pytest.raises(WalletProviderUnavailable, match="ConnectError"):
            await reserve(provider, database, ["evm"])
    finally:
        await provider.aclose()


async def test_missing_credentials_are_not_configured(database_url, database, fake_privy):
    settings = privy_settings(database_url, fake_privy.url, privy_app_secret=None)
    assert "PRIVY_APP_SECRET not set" in (check_configuration(settings) or "")
    provider = provider_for(settings)
    try:
        with pytest.raises(WalletNotConfigured) as caught:
            await reserve(provider, database, ["evm"])
    finally:
        await provider.aclose()
    assert caught.value.code == "wallet_not_configured" and caught.value.status_code == 503
    assert fake_privy.requests == []


def test_configuration_check(database_url):
    assert check_configuration(privy_settings(database_url, "https://api.privy.io")) is None
    # Outside development plain http is refused at start-up (tests/test_config.py), and by
    # the provider's own check should such settings be made anyway.
    with pytest.raises(ValidationError) as refused:
        privy_settings(
            database_url,
            "http://privy.internal",
            app_env="staging",
            encryption_master_key="ab" * 64,
            callback_allow_private_urls=False,
        )
    assert "PRIVY_API" in str(refused.value) and APP_SECRET not in str(refused.value)
    staging = privy_settings(database_url, "http://privy.internal").model_copy(
        update={"app_env": "staging"}
    )
    problem = check_configuration(staging)
    assert problem is not None and "https" in problem and APP_SECRET not in problem
