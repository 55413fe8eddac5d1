"""EVM helpers the scanner and the tools share: event topics, function selectors, a little ABI
encoding and decoding, ERC-20 `Transfer` log decoding, address normalization.

Dependency-free apart from pycryptodome's keccak (already installed through bip-utils), which is
needed only to compute selectors at runtime; the constants below are hardcoded (and recomputed
by the tests). Everything works on the strings JSON-RPC uses: `0x`-prefixed hex.

`decode_transfer_log` is the scanner's hot path: one regex match over the concatenated fields,
then string slicing and `int(x, 16)`. It never raises; anything malformed gives None.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

# keccak256("Transfer(address,address,uint256)"); ERC-20 and ERC-721 share it (ERC-721 indexes
# the token id as a fourth topic, which `decode_transfer_log` rejects).
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
# keccak256("Approval(address,address,uint256)")
APPROVAL_TOPIC = "0x8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925"

# ERC-20 selectors (first 4 bytes of keccak256 of the signature).
NAME = "0x06fdde03"  # name()
SYMBOL = "0x95d89b41"  # symbol()
DECIMALS = "0x313ce567"  # decimals()
TOTAL_SUPPLY = "0x18160ddd"  # totalSupply()
BALANCE_OF = "0x70a08231"  # balanceOf(address)
ALLOWANCE = "0xdd62ed3e"  # allowance(address,address)
TRANSFER = "0xa9059cbb"  # transfer(address,uint256)
TRANSFER_FROM = "0x23b872dd"  # transferFrom(address,address,uint256)
APPROVE = "0x095ea7b3"  # approve(address,uint256)

ZERO_ADDRESS = "0x" + "0" * 40
UINT256_MAX = 2**256 - 1

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_QUANTITY = re.compile(r"0x[0-9a-fA-F]+")
_SELECTOR = re.compile(r"(?:0x)?([0-9a-fA-F]{8})")
# address + topic1 + topic2 + data of a well-formed ERC-20 Transfer log, concatenated. Topics
# must be left-padded addresses (12 zero bytes); data is exactly one 32-byte word.
_TRANSFER_FIELDS = re.compile(
    r"0x[0-9a-fA-F]{40}"
    r"0x0{24}([0-9a-fA-F]{40})"
    r"0x0{24}([0-9a-fA-F]{40})"
    r"0x([0-9a-fA-F]{64})"
)


class Transfer(NamedTuple):
    """One ERC-20 `Transfer(from, to, value)` log. Addresses are lowercase `0x…`.

    Position fields are None when the node left them out (pending logs)."""

    token: str  # the emitting contract
    sender: str  # `from`; the zero address for a mint
    recipient: str  # `to`; the zero address for a burn
    amount: int  # in the token's base units
    block_number: int | None
    block_hash: str | None
    tx_hash: str | None
    log_index: int | None
    removed: bool  # True when a node reports the log as dropped by a reorg


# Transfer(...) without the keyword handling of NamedTuple.__new__: ~0.25 µs less per log.
_new_tuple = tuple.__new__


def decode_transfer_log(log: Mapping[str, Any]) -> Transfer | None:
    """Decode an `eth_getLogs` / receipt log into a Transfer, or None when it is not a
    well-formed ERC-20 Transfer: other topic0, not exactly three topics (ERC-721 has four),
    a topic that is not a padded address, data that is not exactly 32 bytes, non-hex anywhere,
    missing or mistyped fields. Never raises."""
    try:
        topics = log["topics"]
        if len(topics) != 3 or topics[0].lower() != TRANSFER_TOPIC:
            return None
        address = log["address"]
        match = _TRANSFER_FIELDS.fullmatch(address + topics[1] + topics[2] + log["data"])
        if match is None:
            return None
        sender, recipient, amount = match.groups()
        block_number = log.get("blockNumber")
        log_index = log.get("logIndex")
        return _new_tuple(
            Transfer,
            (
                address.lower(),
                "0x" + sender.lower(),
                "0x" + recipient.lower(),
                int(amount, 16),
                None if block_number is None else int(block_number, 16),
                log.get("blockHash"),
                log.get("transactionHash"),
                None if log_index is None else int(log_index, 16),
                log.get("removed") is True,
            ),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def hex_to_int(value: str) -> int:
    """A JSON-RPC hex quantity ("0x1a") as an int. ValueError for anything else, including
    "0x" alone (what `eth_call` answers for a call to an address without code)."""
    if not isinstance(value, str) or _QUANTITY.fullmatch(value) is None:
        raise ValueError(f"not a hex quantity: {value!r}")
    return int(value, 16)


def normalize_address(value: str) -> str:
    """Lowercase `0x` + 40 hex. Accepts all-lowercase, all-uppercase or EIP-55 checksummed
    input; a mixed-case address whose checksum is wrong (a typo) is a ValueError, as is
    anything that is not `0x` + 40 hex."""
    if not isinstance(value, str) or _ADDRESS.fullmatch(value) is None:
        raise ValueError(f"not an address: {value!r}")
    body = value[2:]
    lower = body.lower()
    if body != lower and body != body.upper() and to_checksum_address(value)[2:] != body:
        raise ValueError(f"bad EIP-55 checksum: {value!r}")
    return "0x" + lower


def to_checksum_address(value: str) -> str:
    """EIP-55 mixed-case form of an address (for display; compare lowercase)."""
    if not isinstance(value, str) or _ADDRESS.fullmatch(value) is None:
        raise ValueError(f"not an address: {value!r}")
    lower = value[2:].lower()
    digest = _keccak(lower.encode()).hex()
    return "0x" + "".join(
        char.upper() if char.isalpha() and int(digest[i], 16) >= 8 else char
        for i, char in enumerate(lower)
    )


def selector(signature: str) -> str:
    """`0x` + 8 hex: the first 4 bytes of keccak256(signature), e.g.
    selector("transfer(address,uint256)") == "0xa9059cbb". No spaces, canonical types."""
    return "0x" + _keccak(signature.encode()).hex()[:8]


def event_topic(signature: str) -> str:
    """`0x` + 64 hex: keccak256 of an event signature, e.g. TRANSFER_TOPIC."""
    return "0x" + _keccak(signature.encode()).hex()


def encode_call(selector_hex: str, *args: str | int) -> str:
    """Calldata for a function with static address/uint arguments: a `str` argument is an
    address, an `int` a uint256 (bool counts as 0/1). For dynamic types use `encode_abi`."""
    match = _SELECTOR.fullmatch(selector_hex)
    if match is None:
        raise ValueError(f"not a 4-byte selector: {selector_hex!r}")
    words = [match.group(1).lower()]
    for arg in args:
        if isinstance(arg, str):
            words.append(_address_word(arg))
        elif isinstance(arg, int):
            words.append(_uint_word(arg))
        else:
            raise TypeError(f"encode_call takes addresses (str) and uints (int), not {arg!r}")
    return "0x" + "".join(words)


def encode_abi(types: Sequence[str], values: Sequence[Any]) -> str:
    """ABI-encode `values` as the tuple `types` (hex, no `0x`): constructor arguments go after
    the bytecode, call arguments after a selector. Types: address, bool, uint<N>, int<N>,
    bytes32, string, bytes, and dynamic arrays `T[]` of those. Head/tail layout: static values
    in place, dynamic ones as an offset (from the start of the tuple) to their tail."""
    if len(types) != len(values):
        raise ValueError(f"{len(types)} types for {len(values)} values")
    heads: list[str] = []
    tails: list[str] = []
    tail_size = 32 * len(types)  # bytes of the head; every type here takes one head word
    for kind, value in zip(types, values, strict=True):
        if _is_dynamic(kind):
            heads.append(_uint_word(tail_size))
            tail = _encode_dynamic(kind, value)
            tails.append(tail)
            tail_size += len(tail) // 2
        else:
            heads.append(_encode_static(kind, value))
    return "".join(heads) + "".join(tails)


def decode_uint(result: str) -> int:
    """First 32-byte word of an `eth_call` result as an unsigned int (uint8…uint256, bool)."""
    if not isinstance(result, str) or len(result) < 66 or not result.startswith("0x"):
        raise ValueError(f"not an ABI word: {result!r}")
    return hex_to_int(result[:66])


def decode_address(result: str) -> str:
    """First 32-byte word of an `eth_call` result as an address."""
    word = hex(decode_uint(result))[2:]
    if len(word) > 40:
        raise ValueError(f"not an address word: {result[:66]!r}")
    return "0x" + word.rjust(40, "0")


def decode_string(result: str) -> str:
    """An `eth_call` result that is one ABI `string` (name(), symbol())."""
    if not isinstance(result, str) or not result.startswith("0x"):
        raise ValueError(f"not ABI data: {result!r}")
    data = bytes.fromhex(result[2:])
    if len(data) < 64:
        raise ValueError("ABI string: too short")
    offset = int.from_bytes(data[:32], "big")
    if offset + 32 > len(data):
        raise ValueError("ABI string: offset out of range")
    length = int.from_bytes(data[offset : offset + 32], "big")
    if offset + 32 + length > len(data):
        raise ValueError("ABI string: length out of range")
    return data[offset + 32 : offset + 32 + length].decode()


def _keccak(data: bytes) -> bytes:
    from Crypto.Hash import keccak  # imported lazily: the hot paths never need it

    return keccak.new(digest_bits=256, data=data).digest()


def _address_word(value: str) -> str:
    return normalize_address(value)[2:].rjust(64, "0")


def _uint_word(value: int, bits: int = 256) -> str:
    if not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise ValueError(f"not a uint{bits}: {value!r}")
    return format(value, "064x")


def _is_dynamic(kind: str) -> bool:
    return kind in ("string", "bytes") or kind.endswith("[]")


def _encode_static(kind: str, value: Any) -> str:
    if kind == "address":
        if not isinstance(value, str):
            raise TypeError(f"address wants a str, not {value!r}")
        return _address_word(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise TypeError(f"bool wants a bool, not {value!r}")
        return _uint_word(int(value))
    if kind == "bytes32":
        data = bytes.fromhex(value[2:]) if isinstance(value, str) and value[:2] == "0x" else value
        if not isinstance(data, bytes) or len(data) != 32:
            raise ValueError(f"bytes32 wants 32 bytes, not {value!r}")
        return data.hex()
    if kind.startswith("uint"):
        return _uint_word(value, _bits(kind, 4))
    if kind.startswith("int"):
        bits = _bits(kind, 3)
        if not isinstance(value, int) or not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
            raise ValueError(f"not an {kind}: {value!r}")
        return format(value % (1 << 256), "064x")
    raise ValueError(f"unsupported ABI type {kind!r}")


def _bits(kind: str, prefix: int) -> int:
    suffix = kind[prefix:]
    if suffix == "":
        return 256
    if not suffix.isdigit() or suffix.startswith("0") or int(suffix) % 8 or int(suffix) > 256:
        raise ValueError(f"unsupported ABI type {kind!r}")
    return int(suffix)


def _encode_dynamic(kind: str, value: Any) -> str:
    if kind in ("string", "bytes"):
        if kind == "string":
            if not isinstance(value, str):
                raise TypeError(f"string wants a str, not {value!r}")
            data = value.encode()
        else:
            if not isinstance(value, bytes | bytearray):
                raise TypeError(f"bytes wants bytes, not {value!r}")
            data = bytes(value)
        padded = data.hex().ljust(-(-len(data) // 32) * 64, "0")
        return _uint_word(len(data)) + padded
    item = kind[:-2]
    if _is_dynamic(item):
        # Arrays of dynamic items are an offset table; nobody here needs them.
        raise ValueError(f"unsupported ABI type {kind!r}")
    if isinstance(value, str | bytes):
        raise TypeError(f"{kind} wants a sequence, not {value!r}")
    return _uint_word(len(value)) + "".join(_encode_static(item, entry) for entry in value)


@functools.cache  # a handful of tokens, asked for every block
def bloom_mask(value_hex: str) -> int:
    """The three bits (as one int mask) a log's address or topic sets in a block's
    `logsBloom` (the yellow paper's M3:2048: keccak256 of the bytes, three 11-bit indexes from
    its first six bytes). Compute once per token; test with `bloom_may_contain`."""
    digest = _keccak(bytes.fromhex(value_hex.removeprefix("0x")))
    mask = 0
    for i in (0, 2, 4):
        mask |= 1 << (((digest[i] << 8) | digest[i + 1]) & 2047)
    return mask


def bloom_may_contain(bloom: int, mask: int) -> bool:
    """Whether a block's bloom (`int(block["logsBloom"], 16)`) may hold a log with this value:
    False is certain, True may be a false positive."""
    return bloom & mask == mask
