"""Addresses as stored (EVM lowercase, for matching) and as shown (EIP-55 checksummed)."""

from __future__ import annotations

from functools import lru_cache

from Crypto.Hash import keccak

HEX = frozenset("0123456789abcdef")


@lru_cache(maxsize=4096)  # shown again and again: token contracts, an invoice's address
def checksum_address(address: str) -> str:
    """EIP-55 mixed-case form of an EVM address (any case in, `0x` optional)."""
    hex_part = address.removeprefix("0x").removeprefix("0X").lower()
    if len(hex_part) != 40 or not set(hex_part) <= HEX:
        raise ValueError("expected a 20-byte hex EVM address")
    digest = keccak.new(digest_bits=256, data=hex_part.encode("ascii")).hexdigest()
    return "0x" + "".join(
        c.upper() if int(d, 16) >= 8 else c for c, d in zip(hex_part, digest[:40], strict=True)
    )


def display_address(chain_family: str, address: str) -> str:
    return checksum_address(address) if chain_family == "evm" else address
