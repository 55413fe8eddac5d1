"""`nespay sandbox wallets`: money out on the running dev stack, ready to try — development only.

On the `local` network, each step only where nothing is set yet (running it again changes
nothing):

- a payouts hot wallet (anvil dev account 7) and a gas hot wallet (account 8), their keys
  imported encrypted as `nespay wallets import-hot-key` would; the payouts wallet gets a float
  of the test token (minted: anyone may mint it); what both hold is recorded in the ledger
  (`record-funding`), so reconciliation starts at zero;
- the treasury: key 100 of anvil's mnemonic (not pre-funded, so it starts empty);
- the deposit addresses' account xprv, when HD_WALLET_XPUB is the development default (the
  public anvil mnemonic's account 1), as `nespay wallets import-xprv` would;
- prices of ETH and the test token in USD (admin rates) when none is usable: consolidation
  prices the gas against the value, and an offline stack has no rate source.

The keys are anvil's public test keys, derived here from its mnemonic: anyone can spend what
they hold, which is why this refuses to run outside development.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from bip_utils import Bip39SeedGenerator, Bip44, Bip44Changes, Bip44Coins
from rich.console import Console
from sqlalchemy import text

from nespay.chains import cursors, localchain
from nespay.config import Settings
from nespay.db import Database
from nespay.kit.addresses import checksum_address
from nespay.kit.money import from_base_units
from nespay.ledger.funding import record_funding
from nespay.rates.service import RatesUnavailable, get_rate, set_admin_rate
from nespay.sandbox import ACTOR, NETWORK, TOKEN_CODE, SandboxError
from nespay.security.encryption import keyring_from_settings
from nespay.sweeps.treasury import set_treasury
from nespay.wallets import hd, hdkeys, hotkeys

PAYOUTS_ACCOUNT, GAS_ACCOUNT = 7, 8
# Past anvil's ten pre-funded accounts: the treasury starts empty, so reconciliation is at zero.
TREASURY_ACCOUNT = 100
# Prices for a stack with no rate source reachable: consolidation prices gas in USD.
SANDBOX_PRICES = {("ETH", "USD"): Decimal(3000), (TOKEN_CODE, "USD"): Decimal(1)}
FLOAT_UNITS = 100_000 * 10**6  # test token float of the payouts wallet (6 decimals)


def dev_key(index: int) -> str:
    """Anvil's dev account `index` (m/44'/60'/0'/0/index of its public mnemonic)."""
    seed = Bip39SeedGenerator(hd.DEV_MNEMONIC).Generate()
    account = Bip44.FromSeed(seed, Bip44Coins.ETHEREUM).Purpose().Coin().Account(0)
    key = account.Change(Bip44Changes.CHAIN_EXT).AddressIndex(index).PrivateKey()
    return "0x" + key.Raw().ToHex()


async def setup(settings: Settings, console: Console) -> None:
    if not settings.is_development:
        raise SandboxError(
            "`nespay sandbox wallets` uses anvil's public test keys: development only "
            f"(APP_ENV is {settings.app_env})"
        )
    db = Database(settings)
    try:
        async with db.engine.connect() as conn:
            endpoints = await cursors.endpoints(conn, NETWORK)
        if not endpoints:
            raise SandboxError(
                f"the `{NETWORK}` network has no node: start the dev stack first (`./run`)"
            )
        url = endpoints[0].url
        await _wallet(db, settings, console, url, "payouts", PAYOUTS_ACCOUNT)
        await _wallet(db, settings, console, url, "gas", GAS_ACCOUNT)
        await _treasury(db, console)
        await _xprv(db, settings, console)
        await _prices(db, settings, console)
    finally:
        await db.dispose()


async def _wallet(
    db: Database, settings: Settings, console: Console, url: str, role: str, index: int
) -> None:
    async with db.session() as session:
        try:
            wallet = await hotkeys.active_wallet(session, NETWORK, role)
        except hotkeys.NoHotWallet:
            wallet = None
        if wallet is not None:
            console.print(f"{role} hot wallet: {checksum_address(wallet.address)} (already set)")
            return
        wallet = await hotkeys.import_local_key(
            session,
            keyring_from_settings(settings),
            network=NETWORK,
            role=role,
            private_key=dev_key(index),
        )
        token = await session.scalar(_TOKEN, {"network": NETWORK, "code": TOKEN_CODE})
        if role == "payouts" and token is not None:
            held = await asyncio.to_thread(localchain.token_balance, url, token, wallet.address)
            if held < FLOAT_UNITS:
                await asyncio.to_thread(
                    localchain.mint, url, token, wallet.address, FLOAT_UNITS - held
                )
            await _record(session, TOKEN_CODE, Decimal(max(held, FLOAT_UNITS)).scaleb(-6))
        wei = await asyncio.to_thread(localchain.native_balance, url, wallet.address)
        await _record(session, "ETH", Decimal(wei).scaleb(-18))
    floated = f" and {from_base_units(FLOAT_UNITS, 6)} {TOKEN_CODE}" if role == "payouts" else ""
    console.print(
        f"{role} hot wallet: {checksum_address(wallet.address)} (anvil account {index}), "
        f"{from_base_units(wei, 18)} ETH{floated} recorded in the ledger"
    )


async def _record(session, currency: str, amount: Decimal) -> None:  # type: ignore[no-untyped-def]
    if amount > 0:
        await record_funding(
            session,
            ACTOR,
            network=NETWORK,
            currency=currency,
            amount=format(amount.normalize(), "f"),
            reason="sandbox: anvil dev account",
        )


async def _treasury(db: Database, console: Console) -> None:
    async with db.session() as session:
        current = await session.scalar(_TREASURY, {"network": NETWORK})
        if current is not None:
            console.print(f"treasury: {checksum_address(current)} (already set)")
            return
        from eth_account import Account

        address = Account.from_key(dev_key(TREASURY_ACCOUNT)).address
        await set_treasury(session, ACTOR, NETWORK, address)
    console.print(f"treasury: {address} (anvil mnemonic key {TREASURY_ACCOUNT}, empty)")


async def _prices(db: Database, settings: Settings, console: Console) -> None:
    for (base, quote), rate in SANDBOX_PRICES.items():
        async with db.session() as session:
            try:
                await get_rate(session, settings, base, quote)
                continue
            except RatesUnavailable:
                await set_admin_rate(session, ACTOR, base, quote, rate)
        console.print(f"price: 1 {base} = {rate} {quote} (an admin rate: no usable one was found)")


async def _xprv(db: Database, settings: Settings, console: Console) -> None:
    if settings.hd_wallet_xpub:
        console.print(
            "deposit addresses: HD_WALLET_XPUB is set, so its xprv is yours to import "
            "(`nespay wallets import-xprv`)"
        )
        return
    async with db.session() as session:
        if await hdkeys.has_account_key(await session.connection(), "evm"):
            console.print("deposit addresses' account key: already imported")
            return
        await hdkeys.import_xprv(
            session,
            settings,
            keyring_from_settings(settings),
            chain_family="evm",
            xprv=hdkeys.dev_account_xprv(),
        )
    console.print("deposit addresses' account key: the development default, imported encrypted")


_TOKEN = text(
    "SELECT lower(contract) FROM currencies WHERE network_code = :network AND code = :code"
)
_TREASURY = text("SELECT treasury_address FROM networks WHERE code = :network")
