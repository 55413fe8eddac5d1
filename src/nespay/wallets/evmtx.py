"""EIP-1559 (type 2) transactions: calldata for ERC-20 `transfer`, fees from `eth_feeHistory`,
replacement bumps, local signing with eth-account. Integers only: wei and base units."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from eth_account import Account

from nespay.kit.addresses import checksum_address

TRANSFER_SELECTOR = "a9059cbb"  # keccak256("transfer(address,uint256)")[:4]
NATIVE_GAS = 21_000
GAS_BUFFER_PERCENT = 110
# Replacements raise both fee fields by at least 12.5 %: geth and erigon want 10 %, Parity
# wanted 12.5 % (docs/sending.md).
BUMP_NUMERATOR, BUMP_DENOMINATOR = 9, 8
_KEY = re.compile(r"(0x)?([0-9a-fA-F]{64})")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
UINT256_MAX = 2**256 - 1


class InvalidPrivateKey(ValueError):
    """Not a 32-byte hex secp256k1 key; the message never quotes the value."""


def normalise_private_key(value: str) -> str:
    """`0x` + 64 lower-case hex characters, or InvalidPrivateKey."""
    match = _KEY.fullmatch(value.strip())
    if match is None:
        raise InvalidPrivateKey("expected a private key as 64 hex characters (0x optional)")
    key = "0x" + match.group(2).lower()
    if not 0 < int(key, 16) < 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141:
        raise InvalidPrivateKey("not a valid secp256k1 private key (out of range)")
    return key


def address_of(private_key: str) -> str:
    """The key's address, lower case."""
    return Account.from_key(private_key).address.lower()


def require_address(value: str) -> str:
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
        raise ValueError("expected a 0x-prefixed 20-byte hex address")
    return value.lower()


def erc20_transfer_data(to_address: str, amount: int) -> str:
    """Calldata of `transfer(address,uint256)`: the selector and two 32-byte words."""
    if not 0 <= amount <= UINT256_MAX:
        raise ValueError("amount out of uint256 range")
    to_word = require_address(to_address)[2:].rjust(64, "0")
    return "0x" + TRANSFER_SELECTOR + to_word + format(amount, "064x")


@dataclass(frozen=True)
class Call:
    """What a transfer asks the chain to do: `to`, `value` (wei) and `data`."""

    to: str
    value: int
    data: str

    def as_rpc(self, sender: str) -> dict[str, str]:
        return {"from": sender, "to": self.to, "value": hex(self.value), "data": self.data}


def transfer_call(to_address: str, token_contract: str | None, amount: int) -> Call:
    if token_contract is None:
        return Call(require_address(to_address), amount, "0x")
    return Call(require_address(token_contract), 0, erc20_transfer_data(to_address, amount))


def buffered_gas(estimate: int) -> int:
    return -(-estimate * GAS_BUFFER_PERCENT // 100)


@dataclass(frozen=True)
class Fees:
    max_fee_per_gas: int
    max_priority_fee_per_gas: int


@dataclass(frozen=True)
class Market:
    """The next block's base fee and the tip recent blocks paid (wei per gas)."""

    base_fee: int
    tip: int

    def fees(self) -> Fees:
        """maxFee = 2 × base fee + tip: still includable after six full blocks (+12.5 % each)."""
        return Fees(2 * self.base_fee + self.tip, self.tip)


def market_from_fee_history(history: dict[str, Any], min_tip: int) -> Market:
    """`eth_feeHistory(blocks, "latest", [percentile])`: its last `baseFeePerGas` is the next
    block's; the tip is the median of the blocks' rewards at the percentile, at least
    `min_tip`."""
    base_fees = history.get("baseFeePerGas") or []
    if not base_fees:
        raise ValueError("eth_feeHistory gave no base fee (not an EIP-1559 chain?)")
    base_fee = int(base_fees[-1], 16)
    rewards = sorted(int(row[0], 16) for row in history.get("reward") or [] if row)
    tip = rewards[len(rewards) // 2] if rewards else 0
    return Market(base_fee, max(tip, min_tip))


def bumped(value: int) -> int:
    """At least 12.5 % more, and at least 1 wei more."""
    return max(value + 1, -(-value * BUMP_NUMERATOR // BUMP_DENOMINATOR))


def replacement_fees(previous: Fees, market: Market) -> Fees:
    """Both fields raised by at least 12.5 % over the previous candidate, and at least to what
    the market asks now."""
    tip = max(bumped(previous.max_priority_fee_per_gas), market.tip)
    max_fee = max(bumped(previous.max_fee_per_gas), 2 * market.base_fee + tip)
    return Fees(max_fee, tip)


@dataclass(frozen=True)
class Signed:
    tx_hash: str  # 0x-hex
    raw: str  # 0x-hex


def transaction_fields(
    call: Call, *, chain_id: int, nonce: int, gas: int, fees: Fees
) -> dict[str, Any]:
    return {
        "type": 2,
        "chainId": chain_id,
        "nonce": nonce,
        "to": call.to,
        "value": call.value,
        "data": call.data,
        "gas": gas,
        "maxFeePerGas": fees.max_fee_per_gas,
        "maxPriorityFeePerGas": fees.max_priority_fee_per_gas,
        "accessList": [],
    }


def sign(private_key: str, fields: dict[str, Any]) -> Signed:
    """Sign locally (eth-account); `to` is checksummed as eth-account wants."""
    payload = {**fields, "to": checksum_address(fields["to"])}
    signed = Account.sign_transaction(payload, private_key)
    return Signed("0x" + bytes(signed.hash).hex(), "0x" + bytes(signed.raw_transaction).hex())
