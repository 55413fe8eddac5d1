"""The keys that sign sweeps: a chain family's account extended PRIVATE key (xprv), the one
whose public key is HD_WALLET_XPUB, imported once with `nespay wallets import-xprv` (read from
standard input only) and stored encrypted (`hd_account_keys`, rotated by `nespay keys
rotate`). Only the jobs process opens it, to derive the private key of deposit address
`0/i` when it signs that address's sweep; the api host derives addresses from the xpub alone
and never reads this table.

An xprv whose public key is not the configured xpub is refused: it would sign for addresses
that are not the deposit addresses.
"""

from __future__ import annotations

from functools import lru_cache

from bip_utils import Bip32Secp256k1, Bip39SeedGenerator, Bip44, Bip44Coins
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nespay.config import Settings
from nespay.errors import NespayError
from nespay.kit.crypto import Keyring
from nespay.models.sending import HD_ACCOUNT_KEY
from nespay.security.encryption import seal, unseal
from nespay.wallets import hd


class InvalidXprv(ValueError):
    """Not an account xprv matching the configured xpub; the message never quotes the key."""


class NoAccountKey(NespayError):
    status_code = 409
    code = "hd_account_key_missing"
    message = "The deposit addresses' account key is not imported."


_UPSERT = text(
    """
    INSERT INTO hd_account_keys (chain_family, xpub, xprv_encrypted)
    VALUES (:family, :xpub, :token)
    ON CONFLICT (chain_family) DO UPDATE
    SET xpub = EXCLUDED.xpub, xprv_encrypted = EXCLUDED.xprv_encrypted, created_at = now()
    """
)
_READ = text("SELECT xpub, xprv_encrypted FROM hd_account_keys WHERE chain_family = :family")


def _parse(xprv: str) -> Bip32Secp256k1:
    try:
        return hd.parse_account_key(xprv.strip(), private=True)
    except hd.InvalidXpub as error:
        raise InvalidXprv(str(error)) from None


def _expected_xpub(settings: Settings, chain_family: str) -> str:
    family = hd.FAMILIES[chain_family]
    xpub = hd._configured_xpub(settings, family)
    if xpub is None:
        raise InvalidXprv(f"cannot be checked: {family.env} is not set")
    return xpub


async def import_xprv(
    session: AsyncSession, settings: Settings, keyring: Keyring, *, chain_family: str, xprv: str
) -> str:
    """Store `xprv` encrypted as the family's signing key; returns its xpub (never the key).
    Raises InvalidXprv when it is not the account key of the configured xpub."""
    if chain_family not in hd.FAMILIES:
        raise InvalidXprv(f"cannot be stored for unknown chain family {chain_family!r}")
    key = _parse(xprv)
    xpub = key.PublicKey().ToExtended()
    expected = _expected_xpub(settings, chain_family)
    if hd.external_chain_key(expected).PublicKey().RawCompressed().ToBytes() != (
        key.ChildKey(0).PublicKey().RawCompressed().ToBytes()
    ):
        raise InvalidXprv(
            f"does not match {hd.FAMILIES[chain_family].env}: its addresses are not the "
            "deposit addresses (import the private key of that account)"
        )
    token = seal(keyring, HD_ACCOUNT_KEY, chain_family, key.PrivateKey().ToExtended())
    await session.execute(_UPSERT, {"family": chain_family, "xpub": xpub, "token": token})
    return xpub


async def has_account_key(conn: object, chain_family: str) -> bool:
    row = (await conn.execute(_READ, {"family": chain_family})).one_or_none()  # type: ignore[attr-defined]
    return row is not None


async def deposit_private_key(
    conn: object, keyring: Keyring, chain_family: str, index: int, address: str
) -> str:
    """The private key (0x hex) of deposit address `0/index` (jobs process only: it signs a
    sweep). Checked against the stored `address`, so a wrong key never signs."""
    row = (await conn.execute(_READ, {"family": chain_family})).one_or_none()  # type: ignore[attr-defined]
    if row is None:
        raise NoAccountKey(
            f"No {chain_family} account key: import it with `nespay wallets import-xprv "
            f"--chain-family {chain_family}` (the xprv of {hd.FAMILIES[chain_family].env})."
        )
    child = _external_chain(unseal(keyring, HD_ACCOUNT_KEY, chain_family, row.xprv_encrypted))
    key = child.ChildKey(index)
    if hd._encode(chain_family, key) != address:
        raise NoAccountKey(
            f"The stored {chain_family} account key does not derive deposit address {address} "
            f"at index {index}: the key or HD_WALLET_XPUB was changed after it was issued."
        )
    return "0x" + key.PrivateKey().Raw().ToHex()


@lru_cache(maxsize=4)
def _external_chain(xprv: str) -> Bip32Secp256k1:
    return _parse(xprv).ChildKey(0)


def dev_account_xprv(chain_family: str = "evm") -> str:
    """The account xprv of the development default xpub (account 1 of the public anvil test
    mnemonic): development and tests only — anyone can spend from it."""
    coin = Bip44Coins.ETHEREUM if chain_family == "evm" else Bip44Coins.TRON
    seed = Bip39SeedGenerator(hd.DEV_MNEMONIC).Generate()
    account = Bip44.FromSeed(seed, coin).Purpose().Coin().Account(1)
    return account.PrivateKey().ToExtended()
