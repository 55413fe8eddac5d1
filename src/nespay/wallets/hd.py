"""HD deposit addresses: child `0/i` (external chain, non-hardened) of an account extended
public key, so the API host derives addresses without any private key.

- EVM: `HD_WALLET_XPUB` is the account key at m/44'/60'/0'; address i is m/44'/60'/0'/0/i.
- Tron: `TRON_HD_WALLET_XPUB` is the account key at m/44'/195'/0'; address i is …/0/i.

`i` comes from the sequence `deposit_index_evm` / `deposit_index_tron`, taken `BLOCK` values
at a time into an in-process pool (one round trip per `BLOCK` invoices, not one per invoice):
`nextval` is atomic and lock-free, so concurrent creations, in any process, never share an
index. An index a process never hands out (it stopped, a creation failed or was a replay) is
a gap, never a reuse. Sweeping therefore walks the `derivation_index` values stored in
`deposit_addresses`, not a BIP44 gap-limit scan.

EVM addresses are stored lower case (`0x…`; matching is by lower case); `checksum_address`
gives the EIP-55 form for display. Tron addresses are base58check `T…`, stored as derived.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import structlog
from bip_utils import (
    Base58ChecksumError,
    Bip32KeyError,
    Bip32Secp256k1,
    EthAddrEncoder,
    TrxAddrEncoder,
)
from bip_utils.bip.bip32.bip32_const import Bip32Const

from nespay.config import Settings
from nespay.kit.ids import new_id
from nespay.wallets import repository
from nespay.wallets.provider import (
    AddressRequest,
    ReservedAddress,
    WalletIndexExhausted,
    WalletNotConfigured,
    require_chain_family,
)

if TYPE_CHECKING:
    from nespay.db import Database

log = structlog.get_logger("nespay.wallets.hd")

# Anvil's and Hardhat's public test mnemonic. Funds sent to its addresses are anyone's: it is
# the development/test default only, never used when APP_ENV is staging or production.
DEV_MNEMONIC = "test test test test test test test test test test test junk"

# Account 1 (m/44'/60'/1'), not 0: account 0's addresses are anvil's funded accounts, which
# pay in the sandbox and the tests, and must never be handed out as deposit addresses.
# Both computed once with bip_utils 2.12 (tests/wallets/test_hd.py recomputes them):
#   seed = Bip39SeedGenerator(DEV_MNEMONIC).Generate()
#   Bip44.FromSeed(seed, Bip44Coins.ETHEREUM).Purpose().Coin().Account(1)
#       .PublicKey().ToExtended()
DEV_EVM_XPUB = "xpub6Ce9NcJvTk372KjsGfWqbcex5DumjpNquQLApoeQUavSCjEc823BV1tb4rXUuPuht8h2hSxkg2EXUaKUJmniJvRZAELxypsCzBFdtosmV76"  # noqa: E501
#   Bip44.FromSeed(seed, Bip44Coins.TRON).Purpose().Coin().Account(1)
#       .PublicKey().ToExtended()
DEV_TRON_XPUB = "xpub6BuRy7ZmkGfP4LfiwbWSuu7pRCfSbjyB59BHNudeJgwsJUu23Dzmz4fRKh7Bsfo1EgmmCxtCLsat66A3Fe28PGEzwkmiTChdjv5PDhyqh2Q"  # noqa: E501

# Non-hardened child indexes are 0 … 2^31-1.
MAX_INDEX = 2**31 - 1
BLOCK = 32  # indexes taken from the sequence per round trip


@dataclass(frozen=True)
class _Family:
    chain_family: str
    setting: str
    env: str
    path: str
    dev_xpub: str
    sequence: str  # where `i` comes from


FAMILIES = {
    "evm": _Family(
        "evm",
        "hd_wallet_xpub",
        "HD_WALLET_XPUB",
        "m/44'/60'/0'",
        DEV_EVM_XPUB,
        "deposit_index_evm",
    ),
    "tron": _Family(
        "tron",
        "tron_hd_wallet_xpub",
        "TRON_HD_WALLET_XPUB",
        "m/44'/195'/0'",
        DEV_TRON_XPUB,
        "deposit_index_tron",
    ),
}


class InvalidXpub(ValueError):
    pass


def parse_account_key(value: str, *, private: bool) -> Bip32Secp256k1:
    """An account extended key (depth 3, hardened: e.g. m/44'/60'/0'), public (`xpub`/`tpub`)
    or private (`xprv`/`tprv`) as asked. Raises InvalidXpub with a reason (never the key)."""
    testnet = value.startswith("tprv" if private else "tpub")
    net = Bip32Const.TEST_NET_KEY_NET_VERSIONS if testnet else None
    kind = "private" if private else "public"
    try:
        key = (
            Bip32Secp256k1.FromExtendedKey(value, net)
            if net
            else Bip32Secp256k1.FromExtendedKey(value)
        )
    except (Bip32KeyError, Base58ChecksumError, ValueError):
        raise InvalidXpub(f"is not a valid extended {kind} key (bad checksum or length)") from None
    if private and key.IsPublicOnly():
        raise InvalidXpub("is a public key (xpub); the account's private key (xprv) is needed")
    if not private and not key.IsPublicOnly():
        raise InvalidXpub("is a private key; only the account's public key belongs here")
    if int(key.Depth()) != 3 or not key.Index().IsHardened():
        raise InvalidXpub(
            f"is at depth {int(key.Depth())}; expected the account key (depth 3, "
            "e.g. m/44'/60'/0') whose children 0/i are the deposit addresses"
        )
    return key


@lru_cache(maxsize=8)
def external_chain_key(xpub: str) -> Bip32Secp256k1:
    """The parsed account key's child `0` (the external chain), cached: each address is then
    one public `ChildKey(i)` step. Raises InvalidXpub with a reason (never the key)."""
    return parse_account_key(xpub, private=False).ChildKey(0)


def _encode(chain_family: str, key: Bip32Secp256k1) -> str:
    public = key.PublicKey().KeyObject()
    if chain_family == "evm":
        return EthAddrEncoder.EncodeKey(public, skip_chksum_enc=True)
    return TrxAddrEncoder.EncodeKey(public)


def _configured_xpub(settings: Settings, family: _Family) -> str | None:
    value = getattr(settings, family.setting)
    if value:
        return value
    return family.dev_xpub if settings.is_development else None


def _problem(settings: Settings, family: _Family) -> str | None:
    xpub = _configured_xpub(settings, family)
    if xpub is None:
        return (
            f"{family.env} is not set: {family.chain_family} deposit addresses cannot be issued "
            f"(expected the account xpub at {family.path}; required when "
            f"APP_ENV={settings.app_env})"
        )
    try:
        external_chain_key(xpub)
    except InvalidXpub as error:
        return f"{family.env} {error}"
    return None


def check_hd_configuration(
    settings: Settings, chain_families: tuple[str, ...] = ("evm", "tron")
) -> str | None:
    problems = [
        problem
        for name in chain_families
        if (problem := _problem(settings, FAMILIES[require_chain_family(name)]))
    ]
    return "; ".join(problems) or None


class IndexPool:
    """Reserved, not yet used derivation indexes, per chain family."""

    def __init__(self) -> None:
        self._free: dict[str, deque[int]] = {}
        self._lock = asyncio.Lock()

    async def take(self, db: Database, chain_family: str) -> int:
        free = self._free.setdefault(chain_family, deque())
        if not free:
            async with self._lock:
                if not free:
                    async with db.driver() as conn:
                        sequence = FAMILIES[chain_family].sequence
                        free.extend(await repository.reserve_indexes(conn, sequence, BLOCK))
        return free.popleft()


class HdWalletProvider:
    """Deposit addresses derived from account xpubs; see the module docstring."""

    name = "hd"
    calls_out = False

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._keys: dict[str, Bip32Secp256k1] = {}
        self._pool = IndexPool()

    def _key(self, chain_family: str) -> Bip32Secp256k1:
        key = self._keys.get(chain_family)
        if key is not None:
            return key
        family = FAMILIES[require_chain_family(chain_family)]
        xpub = _configured_xpub(self._settings, family)
        if xpub is None:
            raise WalletNotConfigured(
                f"{family.env} is not set, so {chain_family} deposit addresses cannot be issued."
            )
        try:
            key = external_chain_key(xpub)
        except InvalidXpub as error:
            raise WalletNotConfigured(f"{family.env} {error}.") from None
        if xpub == family.dev_xpub:
            log.warning(
                "hd_wallet_dev_default",
                chain_family=chain_family,
                detail=f"{family.env} unset: deriving from the public anvil test mnemonic; "
                "anyone can spend what is sent to these addresses",
            )
        self._keys[chain_family] = key
        return key

    def address_at(self, chain_family: str, index: int) -> str:
        """The deposit address at child `0/index` (lower-case EVM, base58 Tron)."""
        if not 0 <= index <= MAX_INDEX:
            raise WalletIndexExhausted()
        return _encode(chain_family, self._key(chain_family).ChildKey(index))

    async def reserve(self, db: Database, request: AddressRequest) -> list[ReservedAddress]:
        """The next free index's address per family. A replay under an Idempotency-Key takes
        indexes too (gaps): cheaper than a look-up before every creation."""
        rows = []
        for family in request.chain_families:
            self._key(require_chain_family(family))  # refuse before taking an index
            index = await self._pool.take(db, family)
            address = self.address_at(family, index)
            rows.append(ReservedAddress(new_id("dep"), family, address, self.name, index, None))
        return rows

    async def aclose(self) -> None:
        return None
