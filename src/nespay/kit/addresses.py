"""Addresses as stored and as shown, per chain family.

- EVM: stored lower case `0x…` (matching is by lower case), shown EIP-55 checksummed.
- Tron: stored and shown as base58check `T…` (34 characters): base58 of 0x41 ‖ the 20-byte
  account id ‖ the first 4 bytes of sha256(sha256(those 21 bytes)). The node's HTTP API also
  speaks hex (`41` + 40 hex digits) and its event logs the bare 20 bytes (40 hex, no `41`);
  `tron_from_hex` / `tron_to_hex` convert. The 20-byte id is keccak256 of the uncompressed
  public key's 64 bytes, last 20 bytes — the same id an EVM address has for that key.

Every address a person types goes through `parse_address(chain_family, text)`: an EVM address
given for a Tron network (or a Tron one for an EVM network) is refused with a message that says
so, never converted (the same 20 bytes on the other chain may be nobody's key).
"""

from __future__ import annotations

import re
from functools import lru_cache

from bip_utils import Base58ChecksumError, Base58Decoder, Base58Encoder
from Crypto.Hash import keccak

HEX = frozenset("0123456789abcdef")
_TRON_FORM = re.compile(r"T[1-9A-HJ-NP-Za-km-z]{33}")


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


def display_stored(address: str) -> str:
    """A stored address of either family as shown: EIP-55 for `0x…`, as stored otherwise
    (Tron's base58 is its own checksum)."""
    return checksum_address(address) if address.startswith("0x") else address


ZERO_EVM_ADDRESS = "0x" + "0" * 40


class AddressInvalid(ValueError):
    """The message says what is wrong with the address (for the one error shape)."""


def parse_evm_address(text: str) -> str:
    """An address a person typed → its stored (lowercase) form. Mixed case must be the
    EIP-55 checksum (a typo in a checksummed address is caught, not paid to); all lower or
    all upper case carries no checksum and is taken as it is. The zero address is refused."""
    if _TRON_FORM.fullmatch(text):
        raise AddressInvalid(
            "that is a Tron address (T…); this is an EVM network: expected 0x and 40 hex digits"
        )
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


# --- Tron ---------------------------------------------------------------------------------------

TRON_PREFIX = b"\x41"
_HEX40 = re.compile(r"[0-9a-fA-F]{40}")
# base58check of 0x41 ‖ twenty zero bytes: the "zero address" (black hole) of Tron.
ZERO_TRON_ADDRESS = "T9yD14Nj9j7xAB4dbGeiX9h8unkKHxuWwb"


@lru_cache(maxsize=65536)  # the scanner converts each log's recipient; the same ones recur
def tron_from_hex(value: str) -> str:
    """The base58check `T…` form of a hex Tron address: `41` + 40 hex (the HTTP API's form),
    or the bare 20 bytes as 40 hex, `0x` optional (an event log's or JSON-RPC's form).
    ValueError for anything else."""
    body = value[2:] if value[:2] in ("0x", "0X") else value
    if len(body) == 42 and body[:2] == "41":
        body = body[2:]
    if not _HEX40.fullmatch(body):
        raise ValueError("expected a hex Tron address: 41 and 40 hex digits")
    return Base58Encoder.CheckEncode(TRON_PREFIX + bytes.fromhex(body))


def tron_to_hex(address: str) -> str:
    """`41` + 40 lower-case hex of a (valid) base58check Tron address."""
    return tron_payload(address).hex()


def tron_payload(address: str) -> bytes:
    """The 21 bytes (0x41 ‖ account id) of a base58check Tron address; AddressInvalid when it
    is not one (wrong alphabet or length, bad checksum, another prefix)."""
    if not isinstance(address, str) or not _TRON_FORM.fullmatch(address):
        raise AddressInvalid("expected a Tron address: T followed by 33 base58 characters")
    try:
        payload = Base58Decoder.CheckDecode(address)
    except (Base58ChecksumError, ValueError):
        raise AddressInvalid(
            "the Tron address fails its checksum (mistyped?): check it for a typo"
        ) from None
    if len(payload) != 21 or payload[:1] != TRON_PREFIX:
        raise AddressInvalid("expected a Tron address: T followed by 33 base58 characters")
    return payload


def tron_address_from_public_key(public_key: bytes) -> str:
    """The Tron address of an uncompressed secp256k1 public key (64 bytes, or 65 with 0x04)."""
    if len(public_key) == 65 and public_key[0] == 4:
        public_key = public_key[1:]
    if len(public_key) != 64:
        raise ValueError("expected an uncompressed public key (64 bytes)")
    account = keccak.new(digest_bits=256, data=public_key).digest()[-20:]
    return Base58Encoder.CheckEncode(TRON_PREFIX + account)


def parse_tron_address(text: str) -> str:
    """An address a person typed → its stored form (base58check, as typed). An EVM or hex
    address is refused (a Tron network takes the base58 form only: the hex form is too easily
    an EVM address pasted by mistake), as is the zero address."""
    if text.startswith(("0x", "0X")) or (len(text) == 42 and text[:2] == "41"):
        raise AddressInvalid(
            "that is a hex (EVM-style) address; this is a Tron network: expected its base58 "
            "form, T followed by 33 characters"
        )
    tron_payload(text)
    if text == ZERO_TRON_ADDRESS:
        raise AddressInvalid("the zero address burns what is sent to it")
    return text


def parse_address(chain_family: str, text: str) -> str:
    """An address typed for a network of `chain_family` → its stored form, or AddressInvalid
    saying what is wrong (including an address of the other family)."""
    if not isinstance(text, str) or not text:
        raise AddressInvalid("an address is required")
    if chain_family == "tron":
        return parse_tron_address(text)
    if chain_family == "evm":
        return parse_evm_address(text)
    raise AddressInvalid(f"no addresses for chain family {chain_family!r}")
