"""Wallets: deposit addresses (HD derivation from an account xpub, the default, or Privy
server wallets) and money out (hot wallets and the EVM sender: `outgoing`, docs/sending.md)."""

from nespay.kit.addresses import checksum_address
from nespay.wallets.hd import HdWalletProvider
from nespay.wallets.provider import (
    CHAIN_FAMILIES,
    AddressRequest,
    ReservedAddress,
    UnsupportedChainFamily,
    WalletError,
    WalletIndexExhausted,
    WalletNotConfigured,
    WalletProvider,
    WalletProviderUnavailable,
    check_configuration,
    provider_for,
)

__all__ = [
    "CHAIN_FAMILIES",
    "AddressRequest",
    "HdWalletProvider",
    "ReservedAddress",
    "UnsupportedChainFamily",
    "WalletError",
    "WalletIndexExhausted",
    "WalletNotConfigured",
    "WalletProvider",
    "WalletProviderUnavailable",
    "check_configuration",
    "checksum_address",
    "provider_for",
]
