"""Money is never a float: exact decimals for prices, integers in base units on chain."""

from __future__ import annotations

import re
from decimal import ROUND_FLOOR, Decimal, InvalidOperation

# ISO 4217 minor units of the fiat currencies invoices may be priced in.
FIAT_DECIMALS: dict[str, int] = {
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "IDR": 2,
    "SGD": 2,
    "MYR": 2,
    "THB": 2,
    "PHP": 2,
    "VND": 0,
    "JPY": 0,
    "AUD": 2,
    "CAD": 2,
    "CHF": 2,
    "HKD": 2,
    "INR": 2,
    "KRW": 0,
}


# ASCII digits with an optional fraction: Decimal() alone would also take "1_000", " 10",
# "+10" and non-ASCII digits ("١٠").
PLAIN_AMOUNT = re.compile(r"[0-9]+(\.[0-9]+)?")
MAX_AMOUNT = 10**15
# What `check_amount_text` accepts, as the OpenAPI documents say it (a client generator or a
# fuzzer can then make only amounts that are taken): greater than zero, below MAX_AMOUNT (at
# most 15 integer digits), no sign, exponent or leading zero.
AMOUNT_PATTERN = r"^(?:[1-9][0-9]{0,14}(?:\.[0-9]+)?|0\.[0-9]*[1-9][0-9]*)$"
_AMOUNT = re.compile(AMOUNT_PATTERN)
AMOUNT_SCHEMA = {"pattern": AMOUNT_PATTERN, "examples": ["10.50"]}


def check_amount_text(value: str) -> str:
    """A request's amount: a plain, positive decimal string below `MAX_AMOUNT` (a pydantic
    validator: raises ValueError saying what is wrong)."""
    if value.startswith("-") and PLAIN_AMOUNT.fullmatch(value[1:]):
        raise ValueError("must be greater than zero")
    if not PLAIN_AMOUNT.fullmatch(value):
        raise ValueError('expected a plain decimal string such as "10.50"')
    amount = parse_amount(value)
    if amount <= 0:
        raise ValueError("must be greater than zero")
    if amount >= MAX_AMOUNT:
        raise ValueError(f"must be less than {MAX_AMOUNT}")
    if not _AMOUNT.fullmatch(value):
        raise ValueError('expected a plain decimal string without leading zeros, such as "10.50"')
    return value


def parse_amount(text: str) -> Decimal:
    """A decimal string → Decimal; refuses exponents, NaN, infinities and signs other than -."""
    try:
        value = Decimal(text)
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError('expected a decimal string such as "10.50"') from None
    if not value.is_finite() or "e" in text.lower():
        raise ValueError('expected a plain decimal string such as "10.50"')
    return value


def decimals_of(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return max(0, -int(exponent))


def to_base_units(amount: Decimal, decimals: int) -> int:
    """Whole units → base units; the amount must not have more decimals than the currency."""
    scaled = amount.scaleb(decimals)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"has more than {decimals} decimal places")
    return int(scaled)


def from_base_units(amount: int | Decimal, decimals: int) -> str:
    """Base units → a whole-unit decimal string without exponent or trailing zeros."""
    value = Decimal(int(amount)).scaleb(-decimals)
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def quantize_down(amount: Decimal, decimals: int) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_FLOOR)


def decimal_string(value: Decimal) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
