"""Privy server wallets through a fake Privy on a real socket: the wallet id and address are
stored; bad credentials are a 503 that names the variables, never the secret; transient
failures are retried with the same idempotency key (so a lost answer gives the same wallet)."""

import base64
import json

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from nespay.models.invoices import DepositAddress
from nespay.wallets import (
    WalletNotConfigured,
    WalletProviderUnavailable,
    check_configuration,
    provider_for,
)
from nespay.wallets.privy import PrivyWalletProvider
from tests.fixtures.database import make_settings
from tests.fixtures.factories import merchant_with_key
from tests.fixtures.fake_privy import APP_ID, APP_SECRET
from tests.fixtures.processes import free_port
from tests.wallets.support import insert_invoices


def privy_settings(database_url, url, **overrides):
    values = {
        "wallet_provider": "privy",
        "privy_app_id": APP_ID,
        "privy_app_secret": APP_SECRET,
        "privy_api": url,
    }
    values.update(overrides)
    return make_settings(database_url, **values)


@pytest.fixture
async def merchant_id(database):
    return (await merchant_with_key(database)).merchant_id


@pytest.fixture
async def invoice_id(session, merchant_id):
    [invoice_id] = await insert_invoices(session, merchant_id)
    return invoice_id


@pytest.fixture
async def privy(database_url, fake_privy):
    provider = PrivyWalletProvider(
        privy_settings(database_url, fake_privy.url), retry_delays=(0.01, 0.02)
    )
    yield provider
    await provider.aclose()


async def count_rows(session, invoice_id):
    return await session.scalar(select(func.count()).where(DepositAddress.invoice_id == invoice_id))


async def test_allocation_stores_wallet_id_and_address(
    database_url, fake_privy, session, merchant_id, invoice_id
):
    provider = provider_for(privy_settings(database_url, fake_privy.url))
    try:
        evm = await provider.allocate(
            session, chain_family="evm", invoice_id=invoice_id, merchant_id=merchant_id
        )
        tron = await provider.allocate(
            session, chain_family="tron", invoice_id=invoice_id, merchant_id=merchant_id
        )
    finally:
        await provider.aclose()

    evm_wallet, tron_wallet = fake_privy.wallets
    assert evm.provider == "privy" and evm.derivation_index is None
    assert evm.provider_wallet_id == evm_wallet["id"]
    assert evm.address == evm_wallet["address"].lower() != evm_wallet["address"]
    assert tron.provider_wallet_id == tron_wallet["id"]
    assert tron.address == tron_wallet["address"] and tron.address.startswith("T")
    assert await count_rows(session, invoice_id) == 2

    first, second = fake_privy.requests
    headers = first["headers"]
    assert (
        headers["authorization"]
        == "Basic " + base64.b64encode(f"{APP_ID}:{APP_SECRET}".encode()).decode()
    )
    assert headers["privy-app-id"] == APP_ID
    assert headers["content-type"] == "application/json"
    assert headers["privy-idempotency-key"] == f"{invoice_id}:evm"
    assert json.loads(first["body"]) == {"chain_type": "ethereum"}
    assert second["headers"]["privy-idempotency-key"] == f"{invoice_id}:tron"
    assert json.loads(second["body"]) == {"chain_type": "tron"}


async def test_wrong_secret_is_503_naming_the_variables_not_the_secret(
    database_url, fake_privy, session, merchant_id, invoice_id
):
    wrong = "wrong-secret-value-77e1"
    provider = PrivyWalletProvider(
        privy_settings(database_url, fake_privy.url, privy_app_secret=wrong)
    )
    try:
        with pytest.raises(WalletProviderUnavailable) as caught:
            await provider.allocate(
                session, chain_family="evm", invoice_id=invoice_id, merchant_id=merchant_id
            )
    finally:
        await provider.aclose()
    error = caught.value
    assert error.status_code == 503 and error.code == "wallet_provider_unavailable"
    assert "PRIVY_APP_ID" in error.message and "PRIVY_APP_SECRET" in error.message
    assert wrong not in str(error) and APP_SECRET not in str(error)
    assert len(fake_privy.requests) == 1  # credentials are not retried
    assert await count_rows(session, invoice_id) == 0


async def test_transient_500s_are_retried_with_the_same_key(
    privy, fake_privy, session, merchant_id, invoice_id
):
    fake_privy.fail_next(500, times=2)
    row = await privy.allocate(
        session, chain_family="evm", invoice_id=invoice_id, merchant_id=merchant_id
    )
    assert len(fake_privy.requests) == 3
    keys = {r["headers"]["privy-idempotency-key"] for r in fake_privy.requests}
    assert keys == {f"{invoice_id}:evm"}
    [wallet] = fake_privy.wallets
    assert row.provider_wallet_id == wallet["id"]


async def test_lost_answer_retry_gets_the_same_wallet(
    privy, fake_privy, session, merchant_id, invoice_id
):
    # Privy made the wallet but we never saw the answer; the retry must not make a second one.
    fake_privy.fail_next(502, after_create=True)
    row = await privy.allocate(
        session, chain_family="tron", invoice_id=invoice_id, merchant_id=merchant_id
    )
    assert len(fake_privy.requests) == 2
    [wallet] = fake_privy.wallets
    assert (row.provider_wallet_id, row.address) == (wallet["id"], wallet["address"])


async def test_rate_limited_then_success(privy, fake_privy, session, merchant_id, invoice_id):
    fake_privy.fail_next(429, retry_after="0")
    row = await privy.allocate(
        session, chain_family="evm", invoice_id=invoice_id, merchant_id=merchant_id
    )
    assert len(fake_privy.requests) == 2 and row.provider_wallet_id


async def test_three_failures_are_503(privy, fake_privy, session, merchant_id, invoice_id):
    fake_privy.fail_next(500, times=3)
    with pytest.raises(WalletProviderUnavailable) as caught:
        await privy.allocate(
            session, chain_family="evm", invoice_id=invoice_id, merchant_id=merchant_id
        )
    assert caught.value.status_code == 503 and "3 attempts" in caught.value.message
    assert len(fake_privy.requests) == 3
    assert await count_rows(session, invoice_id) == 0


async def test_unreachable_privy_is_503(database_url, session, merchant_id, invoice_id):
    provider = PrivyWalletProvider(
        privy_settings(database_url, f"http://127.0.0.1:{free_port()}"), retry_delays=(0, 0)
    )
    try:
        with pytest.raises(WalletProviderUnavailable, match="ConnectError"):
            await provider.allocate(
                session, chain_family="evm", invoice_id=invoice_id, merchant_id=merchant_id
            )
    finally:
        await provider.aclose()


async def test_missing_credentials_are_not_configured(
    database_url, fake_privy, session, merchant_id, invoice_id
):
    settings = privy_settings(database_url, fake_privy.url, privy_app_secret=None)
    assert "PRIVY_APP_SECRET not set" in (check_configuration(settings) or "")
    provider = provider_for(settings)
    try:
        with pytest.raises(WalletNotConfigured) as caught:
            await provider.allocate(
                session, chain_family="evm", invoice_id=invoice_id, merchant_id=merchant_id
            )
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


async def test_the_api_creates_an_invoice_with_a_privy_address_and_replays_it(
    database_url, database, fake_privy
):
    from nespay.apps import api
    from tests.fixtures.app import app_client
    from tests.fixtures.factories import register_network

    owner = await merchant_with_key(database)
    network = await register_network(database, ["http://127.0.0.1:9"], "0x" + "33" * 20)
    body = {"amount": "3", "currency": "USDT", "network": network}
    headers = {**owner.headers, "Idempotency-Key": "privy-1"}
    async with app_client(api.create_app, privy_settings(database_url, fake_privy.url)) as (
        _,
        client,
    ):
        first = await client.post("/api/v1/invoices", json=body, headers=headers)
        again = await client.post("/api/v1/invoices", json=body, headers=headers)
    assert first.status_code == 201, first.text
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == first.json()
    async with database.engine.connect() as conn:
        provider = await conn.scalar(
            select(DepositAddress.provider).where(DepositAddress.invoice_id == first.json()["id"])
        )
    assert provider == "privy"
