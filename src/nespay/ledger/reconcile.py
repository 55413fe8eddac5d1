"""Reconciliation: the ledger's view of what sits on chain, compared with the chain, per network
at one block (the head less the network's confirmations, so both sides see settled blocks).

Per currency of the network, two lines:

- `custody`: the `p:custody` account against the deposit addresses' balances. Each address is
  expected to hold what its confirmed payments brought, plus the sweep gas it was sent, less
  what its sweeps moved out and the gas they burnt (transactions mined by the block); an
  address whose balance differs is listed — a transfer the ledger does not know (dust, a
  payment still confirming, a stray deposit) shows up there, with its address.
- `hot_wallet`: the `p:hot_wallet` account against the hot wallets' balances (all of the
  network's, active or not). Funds an operator sends in are known to the ledger once recorded
  with `nespay wallets record-funding`; anything else shows up as a difference.
- `treasury`: the `p:treasury` account (what sweeps moved there) against the balance of the
  network's treasury address (and of any earlier one a sweep went to). A transfer into the
  treasury that the ledger does not know shows up here, with the address.

Each run is stored
(`reconciliation_runs`), listed in the backoffice, counted in a metric and reported by the jobs
health check when it found a difference.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nespay.chains.rpcclient import RpcClient
from nespay.db import Sql
from nespay.ledger import repository

BALANCE_OF = "0x70a08231"  # balanceOf(address)
CHUNK = 200  # calls per JSON-RPC batch


@dataclass(frozen=True)
class Currency:
    id: str
    code: str
    contract: str | None
    decimals: int


def _balance_call(currency: Currency, address: str, block: str) -> tuple[str, list[Any]]:
    if currency.contract is None:
        return "eth_getBalance", [address, block]
    data = BALANCE_OF + address.removeprefix("0x").rjust(64, "0")
    return "eth_call", [{"to": currency.contract, "data": data}, block]


class EvmBalances:
    """Balances on an EVM chain, at a block (eth_call / eth_getBalance, batched)."""

    def __init__(self, rpc: RpcClient) -> None:
        self.rpc = rpc

    async def settled_block(self, confirmations: int) -> int:
        head = int(await self.rpc.call("eth_blockNumber", []), 16)
        return max(0, head - max(confirmations - 1, 0))

    async def read(
        self, wanted: Sequence[tuple[Currency, str]], block: int | None
    ) -> dict[tuple[str, str], int]:
        return await balances(self.rpc, wanted, "latest" if block is None else hex(block))


class TronBalances:
    """Balances on Tron: TRX from `/wallet/getaccount`, TRC-20 tokens by `balanceOf` through
    `triggerconstantcontract`. Tron's HTTP API has no state at a past block, so balances are
    the node's current ones, compared with the ledger at the solidified head: a payment or a
    sweep in a block after it shows as a difference until the next run (decision)."""

    def __init__(self, tron: Any) -> None:
        self.tron = tron

    async def settled_block(self, confirmations: int) -> int:
        solid, _ = await self.tron.now(solid=True)
        return solid.number

    async def read(
        self, wanted: Sequence[tuple[Currency, str]], block: int | None
    ) -> dict[tuple[str, str], int]:
        async def one(currency: Currency, address: str) -> int:
            if currency.contract is None:
                return await self.tron.trx_balance(address)
            return await self.tron.token_balance(currency.contract, address)

        found = await asyncio.gather(*(one(c, a) for c, a in wanted))
        return {(c.id, a): units for (c, a), units in zip(wanted, found, strict=True)}


async def balances(
    rpc: RpcClient, wanted: Sequence[tuple[Currency, str]], block: str
) -> dict[tuple[str, str], int]:
    calls = [_balance_call(currency, address, block) for currency, address in wanted]
    found: dict[tuple[str, str], int] = {}
    for start in range(0, len(calls), CHUNK):
        results = await rpc.batch(calls[start : start + CHUNK])
        for (currency, address), result in zip(wanted[start : start + CHUNK], results, strict=True):
            found[(currency.id, address)] = int(result or "0x0", 16)
    return found


def _line(
    currency: Currency, kind: str, ledger: int, chain: int, explained: list[dict[str, str]]
) -> dict[str, Any]:
    return {
        "currency_id": currency.id,
        "currency": currency.code,
        "account": kind,
        "ledger": str(ledger),
        "chain": str(chain),
        "difference": str(chain - ledger),
        "addresses": explained,
    }


async def reconcile(
    db: Sql, chain: EvmBalances | TronBalances, network: str, confirmations: int
) -> tuple[int, list]:
    """(block, lines) for `network`: see the module's docstring."""
    block_number = await chain.settled_block(confirmations)
    currencies = [
        Currency(row["id"], row["code"], row["contract"], row["decimals"])
        for row in await repository.network_currencies(db, network)
    ]
    expected: dict[str, dict[str, int]] = defaultdict(dict)  # currency -> address -> units
    for row in await repository.custody_expected(db, network, block_number):
        expected[row["currency_id"]][row["address"]] = int(row["amount"])
    held_by = {
        "hot_wallet": await repository.hot_wallet_addresses(db, network),
        "treasury": await repository.treasury_addresses(db, network),
    }
    ledger = await repository.platform_balances(db, network)
    wanted = [(c, address) for c in currencies for address in expected[c.id]]
    wanted += [(c, a) for c in currencies for addresses in held_by.values() for a in addresses]
    held = await chain.read(wanted, block_number)
    lines = []
    for currency in currencies:
        deposits = expected[currency.id]
        on_chain = sum(held[(currency.id, a)] for a in deposits)
        differing = [
            {"address": a, "expected": str(units), "chain": str(held[(currency.id, a)])}
            for a, units in deposits.items()
            if held[(currency.id, a)] != units
        ]
        lines.append(
            _line(currency, "custody", ledger.get((currency.id, "custody"), 0), on_chain, differing)
        )
        for kind, addresses in held_by.items():
            booked = ledger.get((currency.id, kind), 0)
            found = sum(held[(currency.id, a)] for a in addresses)
            listed = [{"address": a, "chain": str(held[(currency.id, a)])} for a in addresses]
            lines.append(_line(currency, kind, booked, found, listed if booked != found else []))
    return block_number, lines


def status_of(lines: Sequence[dict[str, Any]]) -> str:
    return (
        "ok"
        if all(line["difference"] == "0" and not line["addresses"] for line in lines)
        else "difference"
    )
