"""No card number, CVC or PIN is kept or logged: what Rain sends or answers is scrubbed first.

Rain's documented answers and webhooks carry a card's `last4` and expiry only (a card's
secrets come from a separate call, encrypted under a session key, which Nespay never makes).
Should one carry more — a field named like a card secret, or any string that looks like a
card number (13–19 digits passing the Luhn check) — it is removed (a field) or replaced
(`"[redacted]"`, a string) before the JSON is stored, logged or answered."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import orjson

from nespay.inbox.verify import Received

REDACTED = "[redacted]"
# Lower-cased, without `_` or `-`: `encryptedPan`, `card_number`, `CVV2` all match.
SECRET_KEYS = frozenset(
    {
        "pan",
        "cardnumber",
        "number",
        "primaryaccountnumber",
        "cvc",
        "cvc2",
        "cvv",
        "cvv2",
        "pin",
        "encryptedpan",
        "encryptedcvc",
        "encryptedpin",
        "encryptedcvv",
        "track1",
        "track2",
        "trackdata",
        "secret",
    }
)
# Digits, perhaps grouped by spaces (never by `-`: a UUID's all-digit groups are not a card).
_DIGIT_RUN = re.compile(rb"\d[\d ]{11,}\d")
_CARD_NUMBER = re.compile(r"(?<!\d)(?:\d ?){12,18}\d(?!\d)")
_KEY_HINT = re.compile(rb'"(?:[^"]*(?:pan|number|cvc|cvv|pin|track|secret))"\s*:', re.IGNORECASE)


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _looks_like_card_number(text: str) -> bool:
    for match in _CARD_NUMBER.finditer(text):
        digits = match.group().replace(" ", "")
        if 13 <= len(digits) <= 19 and _luhn(digits):
            return True
    return False


def _secret_key(key: str) -> bool:
    return key.lower().replace("_", "").replace("-", "") in SECRET_KEYS


def scrub(value: Any) -> Any:
    """`value` (parsed JSON) without card secrets: see the module docstring."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if not _secret_key(str(k))}
    if isinstance(value, list):
        return [scrub(item) for item in value]
    if isinstance(value, str) and _looks_like_card_number(value):
        return REDACTED
    return value


def might_hold_secrets(raw: bytes) -> bool:
    """A quick look at raw JSON: False means `scrub` would change nothing (no key named like
    a secret, no run of 13+ digits)."""
    return bool(_KEY_HINT.search(raw) or _DIGIT_RUN.search(raw))


def redacted_webhook(received: Received) -> Received:
    """`received` as it may be stored: unchanged (byte for byte) unless it carries a card
    secret, else re-serialised without it (its signature was checked on what Rain sent)."""
    if not might_hold_secrets(received.body):
        return received
    clean = scrub(received.payload)
    if clean == received.payload:
        return received
    return replace(received, body=orjson.dumps(clean), payload=clean)
