"""HD deposit addresses: what the provider derives from the account xpub alone equals what the
full private BIP44 path gives; reservation takes unique indexes from the sequence under
concurrency, across processes' pools, and writes no row; misconfiguration is refused clearly."""

import asyncio

import pytest
from bip_utils import Bip39SeedGenerator, Bip44, Bip44Changes, Bip44Coins
from pydantic import ValidationError
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from nespay.kit.ids import new_id
from nespay.models.invoices import DepositAddress
from nespay.wallets import (
    AddressRequest,
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


def other_account_xpub(coin: Bip44Coins) -> str:
    """A configured key outside development: any account but the development default's."""
    return bip44_account(coin, account=2).PublicKey().ToExtended()


def staging(database_url: str, **overrides: object):
    return make_settings(
        database_url,
        app_env="staging",
        encryption_master_key=REAL_KEY,
        callback_allow_private_urls=False,  # refused outside development
        **overrides,
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


async def reserve(provider, database, families):
    return await provider.reserve(database, AddressRequest("mer_x", "inv_x", families, None))


async def test_reserve_gives_a_row_per_family_and_writes_nothing(hd, database):
    evm, tron = await reserve(hd, database, ["evm", "tron"])
    assert evm.id.startswith("dep_") and evm.provider == "hd" and evm.provider_wallet_id is None
    assert evm.address == hd.address_at("evm", evm.derivation_index)
    assert evm.address == evm.address.lower()
    assert tron.chain_family == "tron" and tron.address.startswith("T")
    assert tron.address == hd.address_at("tron", tron.derivation_index)
    async with database.engine.connect() as conn:
        stored = await conn.scalar(
            select(func.count()).where(DepositAddress.address.in_([evm.address, tron.address]))
        )
    assert stored == 0


async def test_unknown_chain_family_is_refused(hd, database):
    with pytest.raises(UnsupportedChainFamily) as caught:
        await reserve(hd, database, ["solana"])
    assert caught.value.status_code == 400


@pytest.mark.parametrize("family", ["evm", "tron"])
async def test_200_concurrent_reservations_get_distinct_indexes(database, merchant_id, family):
    # Two providers: two processes' index pools, taking blocks of the one sequence.
    providers = [HdWalletProvider(database.settings), HdWalletProvider(database.settings)]
    results = await asyncio.gather(
        *(reserve(providers[i % 2], database, [family]) for i in range(200))
    )
    rows = [row for [row] in results]
    assert len({row.derivation_index for row in rows}) == 200
    assert len({row.address for row in rows}) == 200
    assert all(row.address == providers[0].address_at(family, row.derivation_index) for row in rows)

    # The unique indexes hold: the same index (or address) cannot be stored twice.
    async with database.session() as session:
        invoice_ids = await insert_invoices(session, merchant_id, 2)
    try:
        async with database.session() as session:
            session.add(row_of(rows[0], invoice_ids[0], merchant_id))
        for duplicate in (
            {"derivation_index": rows[0].derivation_index, "address": "dup-" + new_id("x")},
            {"derivation_index": None, "address": rows[0].address},
        ):
            with pytest.raises(IntegrityError):
                async with database.session() as session:
                    session.add(row_of(rows[0], invoice_ids[1], merchant_id, **duplicate))
    finally:
        async with database.session() as session:
            await session.execute(
                text("DELETE FROM invoices WHERE merchant_id = :m"), {"m": merchant_id}
            )


def row_of(reserved, invoice_id, merchant_id, **changes):
    values = {
        "id": new_id("dep"),
        "chain_family": reserved.chain_family,
        "address": reserved.address,
        "provider": reserved.provider,
        "derivation_index": reserved.derivation_index,
        **changes,
    }
    return DepositAddress(invoice_id=invoice_id, merchant_id=merchant_id, **values)


async def test_outside_development_without_xpub_is_not_configured(database_url, database):
    # Without HD_WALLET_XPUB the process does not start (tests/test_config.py); without
    # TRON_HD_WALLET_XPUB it does, and Tron addresses are refused.
    settings = staging(database_url, hd_wallet_xpub=other_account_xpub(Bip44Coins.ETHEREUM))
    problem = check_configuration(settings)
    assert problem is not None and "TRON_HD_WALLET_XPUB is not set" in problem
    async with database.engine.connect() as conn:
        before = await conn.scalar(text("SELECT last_value FROM deposit_index_tron"))
    with pytest.raises(WalletNotConfigured) as caught:
        await reserve(provider_for(settings), database, ["tron"])
    assert caught.value.status_code == 503 and caught.value.code == "wallet_not_configured"
    assert "TRON_HD_WALLET_XPUB" in caught.value.message
    # Refused before taking an index.
    async with database.engine.connect() as conn:
        after = await conn.scalar(text("SELECT last_value FROM deposit_index_tron"))
    assert after == before


def test_configured_xpubs_pass_the_check_outside_development(database_url):
    evm, tron = (other_account_xpub(coin) for coin in (Bip44Coins.ETHEREUM, Bip44Coins.TRON))
    settings = staging(database_url, hd_wallet_xpub=evm, tron_hd_wallet_xpub=tron)
    assert check_configuration(settings) is None
    only_evm = staging(database_url, hd_wallet_xpub=evm)
    assert check_configuration(only_evm, ("evm",)) is None
    assert "TRON_HD_WALLET_XPUB" in (check_configuration(only_evm) or "")


def test_development_defaults_pass_the_check(settings):
    assert settings.hd_wallet_xpub is None and settings.is_development
    assert check_configuration(settings) is None


def unchecked(settings, **values: object):
    """Settings holding what the config refuses at start-up, for the provider's own checks."""
    return settings.model_copy(update=values)


def test_xpub_at_the_wrong_depth_is_refused(database_url, settings):
    account = bip44_account(Bip44Coins.ETHEREUM)
    change_xpub = account.Change(Bip44Changes.CHAIN_EXT).PublicKey().ToExtended()
    with pytest.raises(ValidationError) as refused:  # at start-up, in every environment
        make_settings(database_url, hd_wallet_xpub=change_xpub)
    assert "depth 4" in str(refused.value) and change_xpub not in str(refused.value)
    settings = unchecked(settings, hd_wallet_xpub=change_xpub)
    problem = check_configuration(settings)
    assert problem is not None and "depth 4" in problem and change_xpub not in problem
    with pytest.raises(WalletNotConfigured, match="depth 4"):
        HdWalletProvider(settings).address_at("evm", 0)


def test_xpub_with_bad_checksum_is_refused(database_url, settings):
    broken = DEV_EVM_XPUB[:-1] + ("A" if DEV_EVM_XPUB[-1] != "A" else "B")
    with pytest.raises(ValidationError) as refused:
        make_settings(database_url, hd_wallet_xpub=broken)
    assert "not a valid extended public key" in str(refused.value)
    assert broken not in str(refused.value)
    problem = check_configuration(unchecked(settings, hd_wallet_xpub=broken))
    assert problem is not None and "not a valid extended public key" in problem


@pytest.mark.parametrize("setting", ["hd_wallet_xpub", "tron_hd_wallet_xpub"])
def test_private_extended_key_is_refused_by_config(database_url, setting):
    xprv = bip44_account(Bip44Coins.ETHEREUM).PrivateKey().ToExtended()
    assert xprv.startswith("xprv")
    with pytest.raises(ValidationError) as caught:
        make_settings(database_url, **{setting: xprv})
    assert "never a private one" in str(caught.value)
    assert xprv not in str(caught.value)
