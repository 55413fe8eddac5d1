"""Hot wallets: the keys that send money out, one active per (network, role).

- `local`: the private key is imported once (`nespay wallets import-hot-key`, read from
  standard input, never from an argument or a variable) and stored encrypted with the process
  keyring, bound to its row (`hot_wallets.private_key_encrypted`, rotated by `nespay keys
  rotate`). Only the jobs process opens it, to sign; the api process never reads it.
- `privy`: a Privy server wallet signs and broadcasts (nespay.wallets.privy_signer).

Roles: `payouts` (withdrawals and refunds) and `gas` (funds sweeps' gas). Each wallet's
address has its own nonce sequence, so a stuck sweep never blocks a withdrawal.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nespay.errors import NespayError
from nespay.kit.crypto import Keyring
from nespay.kit.ids import new_id
from nespay.models.sending import HOT_WALLET_KEY
from nespay.security.encryption import seal, unseal
from nespay.wallets import trontx
from nespay.wallets.evmtx import address_of, normalise_private_key, require_address

ROLES = ("payouts", "gas")


class HotWalletError(NespayError):
    status_code = 409
    code = "hot_wallet_invalid"
    message = "The hot wallet cannot be used."


class NoHotWallet(HotWalletError):
    code = "hot_wallet_missing"
    message = "No active hot wallet for this network and role."


@dataclass(frozen=True)
class HotWallet:
    id: str
    network_code: str
    role: str
    signer: str
    address: str
    privy_wallet_id: str | None


_NETWORK = text("SELECT chain_family FROM networks WHERE code = :network")
_DEACTIVATE = text(
    "UPDATE hot_wallets SET active = false, deactivated_at = now() "
    "WHERE network_code = :network AND role = :role AND active"
)
_INSERT = text(
    """
    INSERT INTO hot_wallets (id, network_code, role, signer, address, private_key_encrypted,
                             privy_wallet_id)
    VALUES (:id, :network, :role, :signer, :address, :key, :privy)
    """
)
_ACTIVE = text(
    "SELECT id, network_code, role, signer, address, privy_wallet_id FROM hot_wallets "
    "WHERE network_code = :network AND role = :role AND active"
)
_KEY = text("SELECT private_key_encrypted FROM hot_wallets WHERE id = :id")
_ALL = text(
    "SELECT id, network_code, role, signer, address, privy_wallet_id, active FROM hot_wallets "
    "ORDER BY network_code, role, created_at"
)


async def _check(session: AsyncSession, network: str, role: str) -> str:
    """The network's chain family, once it is one that sends."""
    if role not in ROLES:
        raise HotWalletError(f"Unknown role {role!r}; expected payouts or gas.")
    family = (await session.execute(_NETWORK, {"network": network})).scalar_one_or_none()
    if family is None:
        raise HotWalletError(f"Unknown network {network!r}.")
    if family not in ("evm", "tron"):
        raise HotWalletError(f"Network {network!r} is not an EVM or Tron network.")
    return family


async def import_local_key(
    session: AsyncSession, keyring: Keyring, *, network: str, role: str, private_key: str
) -> HotWallet:
    """Store `private_key` encrypted as the active (network, role) wallet; the previous one
    is deactivated (kept for its transactions). Returns the wallet, never the key."""
    family = await _check(session, network, role)
    key = normalise_private_key(private_key)
    address = trontx.address_of(key) if family == "tron" else address_of(key)
    wallet = HotWallet(new_id("hw"), network, role, "local", address, None)
    await _store(session, wallet, seal(keyring, HOT_WALLET_KEY, wallet.id, key))
    return wallet


async def add_privy_wallet(
    session: AsyncSession, *, network: str, role: str, wallet_id: str, address: str
) -> HotWallet:
    """A Privy server wallet as the active (network, role) wallet (EVM networks only)."""
    if await _check(session, network, role) != "evm":
        raise HotWalletError("Privy hot wallets sign EVM transactions only; import a key.")
    wallet = HotWallet(new_id("hw"), network, role, "privy", require_address(address), wallet_id)
    await _store(session, wallet, None)
    return wallet


async def _store(session: AsyncSession, wallet: HotWallet, key_token: str | None) -> None:
    await session.execute(_DEACTIVATE, {"network": wallet.network_code, "role": wallet.role})
    await session.execute(
        _INSERT,
        {
            "id": wallet.id,
            "network": wallet.network_code,
            "role": wallet.role,
            "signer": wallet.signer,
            "address": wallet.address,
            "key": key_token,
            "privy": wallet.privy_wallet_id,
        },
    )


async def active_wallet(session: AsyncSession, network: str, role: str) -> HotWallet:
    row = (await session.execute(_ACTIVE, {"network": network, "role": role})).one_or_none()
    if row is None:
        raise NoHotWallet(
            f"No active {role} hot wallet on {network}: import one with "
            f"`nespay wallets import-hot-key --network {network} --role {role}`."
        )
    return HotWallet(*row)


async def all_wallets(session: AsyncSession) -> list[tuple[HotWallet, bool]]:
    """Every hot wallet (never a key) with whether it is active."""
    rows = await session.execute(_ALL)
    return [(HotWallet(*row[:6]), bool(row[6])) for row in rows]


async def private_key(conn: object, keyring: Keyring, wallet_id: str) -> str:
    """The wallet's private key (jobs process only: it signs)."""
    token = (await conn.execute(_KEY, {"id": wallet_id})).scalar_one()  # type: ignore[attr-defined]
    return unseal(keyring, HOT_WALLET_KEY, wallet_id, token)
