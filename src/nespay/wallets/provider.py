"""Wallet providers: where an invoice's deposit address for a chain family comes from.

Two providers, picked by `WALLET_PROVIDER`:

- `hd` (the default): child `0/i` of an account extended *public* key, `i` from a database
  sequence — no private key on the API host, no network call, no lock.
- `privy`: a Privy server wallet per invoice and chain family, created over its REST API.

A provider is built once per process (`provider_for(settings)`) and closed with `aclose()`.
`allocate` adds the `DepositAddress` row to the caller's session and flushes; the caller's
transaction decides whether it sticks.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from sqlalchemy.ext.asyncio import AsyncSession

from nespay.config import Settings
from nespay.errors import NespayError
from nespay.models.invoices import DepositAddress

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


@runtime_checkable
class WalletProvider(Protocol):
    name: str

    async def allocate(
        self, session: AsyncSession, *, chain_family: str, invoice_id: str, merchant_id: str
    ) -> DepositAddress:
        """A fresh address for `invoice_id` on `chain_family` ("evm" | "tron"), as a
        `DepositAddress` row added to `session` and flushed."""
        ...

    async def aclose(self) -> None: ...


def provider_for(settings: Settings) -> WalletProvider:
    """The provider `WALLET_PROVIDER` names. Build it once per process; it caches parsed keys
    (hd) or holds a connection pool (privy). Misconfiguration surfaces at `allocate` as
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
