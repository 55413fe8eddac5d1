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


ZERO_EVM_ADDRESS = "0x" + "0" * 40


class AddressInvalid(ValueError):
    """The message says what is wrong with the address (for the one error shape)."""


def parse_evm_address(text: str) -> str:
    """An address a person typed → its stored (lowercase) form. Mixed case must be the
    EIP-55 checksum (a typo in a checksummed address is caught, not paid to); all lower or
    all upper case carries no checksum and is taken as it is. The zero address is refused."""
    if not (text.startswith("0x") and len(text) == 42):
        raise AddressInvalid("expected an EVM address: 0x and 40 hex digits")
    body = text[2:]
    if not set(body.lower()) <= HEX:
        raise AddressInvalid("expected an EVM address: 0x and 40 hex digits")
    if body != body.lower() and body != body.upper() and checksum_address(text) != text:
        raise AddressInvalid(
            "the address's mixed case is not its EIP-55 checksum (mistyped?); check it, or "
            "send it all in lower case"
        )
    address = "0x" + body.lower()
    if address == ZERO_EVM_ADDRESS:
        raise AddressInvalid("the zero address burns what is sent to it")
    return address
