"""Prefixed, time-ordered identifiers (`inv_01J…`): sortable, so cursors can page by id."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """48 bits of milliseconds then 80 random bits, as 26 base32 characters."""
    millis = time.time_ns() // 1_000_000
    entropy = int.from_bytes(os.urandom(10), "big")
    return f"{prefix}_{_encode(millis, 10)}{_encode(entropy, 16)}"


def id_floor(prefix: str, at_ms: int) -> str:
    """The smallest id `new_id(prefix)` could have made at `at_ms` (epoch milliseconds): ids
    at or after that instant sort at or above it, so a time window is a range of the primary
    key."""
    return f"{prefix}_{_encode(at_ms, 10)}{'0' * 16}"
