"""What a payer's wallet scans: an EIP-681 URI for EVM networks, the bare address elsewhere.

- ERC-20: `ethereum:<token>@<chainId>/transfer?address=<to>&uint256=<base units>`;
- the native coin: `ethereum:<to>@<chainId>?value=<wei>`;
- Tron (and any network without a chain id): the address alone, base58 as shown. Tron has
  no payment URI that wallets read reliably (TronLink's scanner refuses `tron:…`), so the
  amount is shown beside it, never encoded.

Amounts are integers of base units, never scientific notation: several wallets have read
EIP-681 amounts in the wrong unit, and an integer leaves nothing to interpret."""

from __future__ import annotations


def payment_uri(
    *,
    chain_family: str,
    chain_id: int | None,
    address: str,
    token_contract: str | None,
    amount_base_units: int,
) -> str:
    if chain_family != "evm" or chain_id is None:
        return address
    if token_contract is not None:
        return (
            f"ethereum:{token_contract}@{chain_id}/transfer"
            f"?address={address}&uint256={amount_base_units}"
        )
    return f"ethereum:{address}@{chain_id}?value={amount_base_units}"
