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


async def reconcile(db: Sql, rpc: RpcClient, network: str, confirmations: int) -> tuple[int, list]:
    """(block, lines) for `network`: see the module's docstring."""
    head = int(await rpc.call("eth_blockNumber", []), 16)
    block_number = max(0, head - max(confirmations - 1, 0))
    block = hex(block_number)
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
    chain = await balances(rpc, wanted, block)
    lines = []
    for currency in currencies:
        deposits = expected[currency.id]
        on_chain = sum(chain[(currency.id, a)] for a in deposits)
        differing = [
            {"address": a, "expected": str(units), "chain": str(chain[(currency.id, a)])}
            for a, units in deposits.items()
            if chain[(currency.id, a)] != units
        ]
        lines.append(
            _line(currency, "custody", ledger.get((currency.id, "custody"), 0), on_chain, differing)
        )
        for kind, addresses in held_by.items():
            held = ledger.get((currency.id, kind), 0)
            found = sum(chain[(currency.id, a)] for a in addresses)
            listed = [{"address": a, "chain": str(chain[(currency.id, a)])} for a in addresses]
            lines.append(_line(currency, kind, held, found, listed if held != found else []))
    return block_number, lines


def status_of(lines: Sequence[dict[str, Any]]) -> str:
    return (
        "ok"
        if all(line["difference"] == "0" and not line["addresses"] for line in lines)
        else "difference"
    )
