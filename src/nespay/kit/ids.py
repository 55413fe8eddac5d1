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


_last: tuple[int, int] = (0, 0)  # (millisecond, entropy) of the last ordered id made here


def new_ordered_ids(prefix: str, count: int) -> list[str]:
    """`count` ids that sort after every earlier one this process made with this function,
    in list order, even within one millisecond (the random part then counts up from the
    last id's, as monotonic ULIDs do). For what is listed by id and must list in the order
    it happened: an invoice's events, written in several statements of one transaction."""
    global _last
    millis = time.time_ns() // 1_000_000
    last_millis, last_entropy = _last
    if millis <= last_millis:  # the same millisecond (or the clock stepped back)
        millis, entropy = last_millis, last_entropy + 1
    else:
        entropy = int.from_bytes(os.urandom(10), "big") >> 8  # room to count up from
    ids = [f"{prefix}_{_encode(millis, 10)}{_encode(entropy + n, 16)}" for n in range(count)]
    _last = (millis, entropy + count - 1)
    return ids


def id_floor(prefix: str, at_ms: int) -> str:
    """The smallest id `new_id(prefix)` could have made at `at_ms` (epoch milliseconds): ids
    at or after that instant sort at or above it, so a time window is a range of the primary
    key."""
    return f"{prefix}_{_encode(at_ms, 10)}{'0' * 16}"
