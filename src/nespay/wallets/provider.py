"""Wallet providers: where an invoice's deposit address for a chain family comes from.

Two providers, picked by `WALLET_PROVIDER`:

- `hd` (the default): child `0/i` of an account extended *public* key, `i` from a database
  sequence — no private key on the API host, no network call, no lock.
- `privy`: a Privy server wallet per invoice and chain family, created over its REST API.

A provider is built once per process (`provider_for(settings)`, one database per provider)
and closed with `aclose()`. `reserve` runs before, and outside, any transaction: it writes no
row, and returns the `deposit_addresses` rows that invoice creation's single statement then
inserts with the invoice. Whatever it reserved and nobody inserts is a gap (an unused HD
index) or an unused wallet, never an address handed out twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from nespay.config import Settings
from nespay.errors import NespayError

if TYPE_CHECKING:
    from nespay.db import Database

CHAIN_FAMILIES = ("evm", "tron")


class WalletError(NespayError):
    status_code = 503
    code = "wallet_provider_unavailable"
    message = "Deposit addresses cannot be issued right now; try again shortly."


class WalletProviderUnavailable(WalletError):
    """The provider (Privy) could not be reached, refused us, or answered nonsense."""


class WalletNotConfigured(WalletError):
    code = "wallet_not_configured"
    message = "No wallet is configured for this chain family."


class WalletIndexExhausted(WalletError):
    code = "wallet_index_exhausted"
    message = "The HD account has no non-hardened child indexes left; configure a new account."


class UnsupportedChainFamily(NespayError):
    status_code = 400
    code = "unsupported_chain_family"
    message = "Deposit addresses exist for the chain families evm and tron only."


def require_chain_family(chain_family: str) -> str:
    if chain_family not in CHAIN_FAMILIES:
        raise UnsupportedChainFamily(
            f"No deposit addresses for chain family {chain_family!r}; expected evm or tron."
        )
    return chain_family


@dataclass(frozen=True, slots=True)
class AddressRequest:
    """What addresses are reserved for: one invoice of a merchant, its chain families, and
    the request's Idempotency-Key (None without one)."""

    merchant_id: str
    invoice_id: str
    chain_families: Sequence[str]
    idempotency_key: str | None


@dataclass(frozen=True, slots=True)
class ReservedAddress:
    """A `deposit_addresses` row to insert: HD rows carry their derivation index, Privy rows
    the wallet id."""

    id: str
    chain_family: str
    address: str
    provider: str
    derivation_index: int | None
    provider_wallet_id: str | None


@runtime_checkable
class WalletProvider(Protocol):
    name: str
    # True when `reserve` calls another service (Privy): creation then looks up the request's
    # Idempotency-Key first, so that a replay makes no call. HD reservations are local (an
    # index from the in-process pool), so the hot path skips that extra round trip.
    calls_out: bool

    async def reserve(self, db: Database, request: AddressRequest) -> list[ReservedAddress]:
        """One fresh address per chain family ("evm" | "tron") of `request`, outside any
        transaction and holding no connection across a call out. With an Idempotency-Key, a
        retry of the same request reserves the same address where that costs anything."""
        ...

    async def aclose(self) -> None: ...


def provider_for(settings: Settings) -> WalletProvider:
    """The provider `WALLET_PROVIDER` names. Build it once per process; it caches parsed keys
    (hd) or holds a connection pool (privy). Misconfiguration surfaces at `reserve` as
    `wallet_not_configured`; call `check_configuration` at start-up to see it earlier."""
    if settings.wallet_provider == "privy":
        from nespay.wallets.privy import PrivyWalletProvider

        return PrivyWalletProvider(settings)
    from nespay.wallets.hd import HdWalletProvider

    return HdWalletProvider(settings)


def check_configuration(
    settings: Settings, chain_families: tuple[str, ...] = CHAIN_FAMILIES
) -> str | None:
    """One line describing what stops the configured provider from issuing addresses for
    `chain_families` (e.g. only those of enabled networks), or None. For start-up checks and
    `/health`; never includes a secret or a key."""
    if settings.wallet_provider == "privy":
        from nespay.wallets.privy import check_privy_configuration

        return check_privy_configuration(settings)
    from nespay.wallets.hd import check_hd_configuration

    return check_hd_configuration(settings, chain_families)
