"""HD deposit addresses: what the provider derives from the account xpub alone equals what the
full private BIP44 path gives; allocation takes unique indexes from the sequence under
concurrency; misconfiguration is refused clearly."""

import asyncio

import pytest
from bip_utils import Bip39SeedGenerator, Bip44, Bip44Changes, Bip44Coins
from pydantic import ValidationError
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from nespay.kit.ids import new_id
from nespay.models.invoices import DepositAddress
from nespay.wallets import (
    HdWalletProvider,
    UnsupportedChainFamily,
    WalletNotConfigured,
    WalletProvider,
    check_configuration,
    checksum_address,
    provider_for,
)
from nespay.wallets.hd import DEV_EVM_XPUB, DEV_MNEMONIC, DEV_TRON_XPUB
from nespay.wallets.privy import PrivyWalletProvider
from tests.fixtures.database import make_settings
from tests.fixtures.factories import merchant_with_key
from tests.wallets.support import insert_invoices

ANVIL_ADDRESSES = [
    "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
]
REAL_KEY = "ab" * 64  # a non-example ENCRYPTION_MASTER_KEY for staging settings


def bip44_account(coin: Bip44Coins, account: int = 1) -> Bip44:
    """The dev default account (1); account 0 holds anvil's funded accounts."""
    seed = Bip39SeedGenerator(DEV_MNEMONIC).Generate()
    return Bip44.FromSeed(seed, coin).Purpose().Coin().Account(account)


def staging(database_url: str, **overrides: object):
    return make_settings(
        database_url, app_env="staging", encryption_master_key=REAL_KEY, **overrides
    )


@pytest.fixture(scope="module")
def hd(shared_settings):
    return HdWalletProvider(shared_settings)


@pytest.fixture
async def merchant_id(database):
    return (await merchant_with_key(database)).merchant_id


def test_dev_xpubs_are_the_anvil_mnemonic_accounts():
    assert bip44_account(Bip44Coins.ETHEREUM).PublicKey().ToExtended() == DEV_EVM_XPUB
    assert bip44_account(Bip44Coins.TRON).PublicKey().ToExtended() == DEV_TRON_XPUB


@pytest.mark.parametrize("coin,family", [(Bip44Coins.ETHEREUM, "evm"), (Bip44Coins.TRON, "tron")])
def test_xpub_derivation_matches_the_full_private_path(hd, coin, family):
    external = bip44_account(coin).Change(Bip44Changes.CHAIN_EXT)
    for index in range(5):
        expected = external.AddressIndex(index).PublicKey().ToAddress()
        derived = hd.address_at(family, index)
        if family == "evm":
            assert derived == expected.lower() and derived.startswith("0x")
            assert checksum_address(derived) == expected
        else:
            assert derived == expected and derived.startswith("T")


def test_an_account_xpub_derives_anvils_accounts_at_indexes_0_to_2(settings):
    account0 = bip44_account(Bip44Coins.ETHEREUM, 0).PublicKey().ToExtended()
    hd = HdWalletProvider(settings.model_copy(update={"hd_wallet_xpub": account0}))
    assert [checksum_address(hd.address_at("evm", i)) for i in range(3)] == ANVIL_ADDRESSES


def test_dev_default_never_hands_out_anvils_funded_accounts(hd):
    handed_out = {checksum_address(hd.address_at("evm", i)) for i in range(20)}
    assert not handed_out & set(ANVIL_ADDRESSES)


def test_checksum_address_eip55_vectors():
    for address in (
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ):
        assert checksum_address(address.lower()) == address
        assert checksum_address(address.upper().replace("0X", "0x")) == address
    for bad in ("0x1234", "0x" + "g" * 40, ""):
        with pytest.raises(ValueError):
            checksum_address(bad)


def test_provider_for_picks_by_setting(database_url):
    hd = provider_for(make_settings(database_url))
    privy = provider_for(make_settings(database_url, wallet_provider="privy"))
    assert isinstance(hd, HdWalletProvider) and isinstance(hd, WalletProvider)
    assert isinstance(privy, PrivyWalletProvider) and isinstance(privy, WalletProvider)


async def test_allocate_adds_a_row(hd, session, merchant_id):
    [invoice_id] = await insert_invoices(session, merchant_id)
    evm = await hd.allocate(
        session, chain_family="evm", invoice_id=invoice_id, merchant_id=merchant_id
    )
    tron = await hd.allocate(
        session, chain_family="tron", invoice_id=invoice_id, merchant_id=merchant_id
    )
    rows = (
        await session.scalars(select(DepositAddress).where(DepositAddress.invoice_id == invoice_id))
    ).all()
    assert {row.id for row in rows} == {evm.id, tron.id}
    assert evm.id.startswith("dep_") and evm.provider == "hd" and evm.provider_wallet_id is None
    assert evm.address == hd.address_at("evm", evm.derivation_index)
    assert evm.address == evm.address.lower()
    assert tron.address == hd.address_at("tron", tron.derivation_index)
    assert tron.address.startswith("T") and tron.merchant_id == merchant_id


async def test_unknown_chain_family_is_refused(hd, session):
    with pytest.raises(UnsupportedChainFamily) as caught:
        await hd.allocate(session, chain_family="solana", invoice_id="inv_x", merchant_id="m")
    assert caught.value.status_code == 400


@pytest.mark.parametrize("family", ["evm", "tron"])
async def test_200_concurrent_allocations_get_distinct_indexes(database, hd, merchant_id, family):
    async with database.session() as session:
        invoice_ids = await insert_invoices(session, merchant_id, 200)

    async def allocate(invoice_id):
        async with database.session() as session:
            row = await hd.allocate(
                session, chain_family=family, invoice_id=invoice_id, merchant_id=merchant_id
            )
            return row.derivation_index, row.address

    try:
        results = await asyncio.gather(*(allocate(i) for i in invoice_ids))
        assert len({index for index, _ in results}) == 200
        assert len({address for _, address in results}) == 200
        assert all(address == hd.address_at(family, index) for index, address in results)
        async with database.session() as session:
            stored = (
                await session.execute(
                    select(DepositAddress.derivation_index, DepositAddress.address).where(
                        DepositAddress.invoice_id.in_(invoice_ids)
                    )
                )
            ).all()
        assert sorted(stored) == sorted(results)

        # The unique indexes hold: the same index (or address) cannot be handed out twice.
        index, address = results[0]
        async with database.session() as session:
            [extra_invoice] = await insert_invoices(session, merchant_id)
        for duplicate in (
            {"derivation_index": index, "address": "dup-" + new_id("x")},
            {"derivation_index": None, "address": address},
        ):
            with pytest.raises(IntegrityError):
                async with database.session() as session:
                    session.add(
                        DepositAddress(
                            id=new_id("dep"),
                            chain_family=family,
                            provider="hd",
                            invoice_id=extra_invoice,
                            merchant_id=merchant_id,
                            **duplicate,
                        )
                    )
    finally:
        async with database.session() as session:
            await session.execute(
                text("DELETE FROM invoices WHERE merchant_id = :m"), {"m": merchant_id}
            )


async def test_outside_development_without_xpub_is_not_configured(
    database_url, session, merchant_id
):
    settings = staging(database_url)
    problem = check_configuration(settings)
    assert problem is not None and "HD_WALLET_XPUB is not set" in problem
    assert "TRON_HD_WALLET_XPUB is not set" in problem
    [invoice_id] = await insert_invoices(session, merchant_id)
    before = await session.scalar(text("SELECT last_value FROM deposit_index_evm"))
    with pytest.raises(WalletNotConfigured) as caught:
        await provider_for(settings).allocate(
            session, chain_family="evm", invoice_id=invoice_id, merchant_id=merchant_id
        )
    assert caught.value.status_code == 503 and caught.value.code == "wallet_not_configured"
    assert "HD_WALLET_XPUB" in caught.value.message
    # Refused before taking an index.
    assert await session.scalar(text("SELECT last_value FROM deposit_index_evm")) == before


def test_configured_xpubs_pass_the_check_outside_development(database_url):
    settings = staging(database_url, hd_wallet_xpub=DEV_EVM_XPUB, tron_hd_wallet_xpub=DEV_TRON_XPUB)
    assert check_configuration(settings) is None
    only_evm = staging(database_url, hd_wallet_xpub=DEV_EVM_XPUB)
    assert check_configuration(only_evm, ("evm",)) is None
    assert "TRON_HD_WALLET_XPUB" in (check_configuration(only_evm) or "")


def test_development_defaults_pass_the_check(settings):
    assert settings.hd_wallet_xpub is None and settings.is_development
    assert check_configuration(settings) is None


def test_xpub_at_the_wrong_depth_is_refused(database_url):
    account = bip44_account(Bip44Coins.ETHEREUM)
    change_xpub = account.Change(Bip44Changes.CHAIN_EXT).PublicKey().ToExtended()
    settings = staging(database_url, hd_wallet_xpub=change_xpub, tron_hd_wallet_xpub=DEV_TRON_XPUB)
    problem = check_configuration(settings)
    assert problem is not None and "depth 4" in problem and change_xpub not in problem
    with pytest.raises(WalletNotConfigured, match="depth 4"):
        HdWalletProvider(settings).address_at("evm", 0)


def test_xpub_with_bad_checksum_is_refused(database_url):
    broken = DEV_EVM_XPUB[:-1] + ("A" if DEV_EVM_XPUB[-1] != "A" else "B")
    settings = staging(database_url, hd_wallet_xpub=broken, tron_hd_wallet_xpub=DEV_TRON_XPUB)
    problem = check_configuration(settings)
    assert problem is not None and "not a valid extended public key" in problem


@pytest.mark.parametrize("setting", ["hd_wallet_xpub", "tron_hd_wallet_xpub"])
def test_private_extended_key_is_refused_by_config(database_url, setting):
    xprv = bip44_account(Bip44Coins.ETHEREUM).PrivateKey().ToExtended()
    assert xprv.startswith("xprv")
    with pytest.raises(ValidationError) as caught:
        make_settings(database_url, **{setting: xprv})
    assert "never a private one" in str(caught.value)
    assert xprv not in str(caught.value)
