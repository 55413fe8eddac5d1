"""An in-process snapshot of the networks and currencies, refreshed every few seconds: invoice
creation and the scanners read it on every call without a query, and an operator's change
reaches every process within `TTL_S` without a restart.

Two parts: what is *offered* on new invoices (enabled currency, enabled network, a chain
family some scanner or provider serves) and what is only *watched* — switched off while
invoices could still be paid in it, scanned until its `watch_until` (see
`nespay.chains.service`)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

TTL_S = 5.0

# The chain families a scanner serves.
SCANNED_FAMILIES = ("evm", "tron")
# Families paid off chain and reported by a provider (`va`: Intrajasa's rupiah virtual
# accounts, docs/intrajasa.md): offered like the scanned ones, never scanned.
PROVIDER_FAMILIES = ("va",)
# Only these are offered on new invoices.
OFFERED_FAMILIES = SCANNED_FAMILIES + PROVIDER_FAMILIES

_QUERY = text(
    """
    SELECT c.id, c.code, c.name, c.contract, c.decimals, c.dust_threshold, n.code AS network,
           n.chain_family, n.chain_id, n.confirmations, n.block_time_ms,
           c.enabled AND n.enabled AS offered,
           extract(epoch FROM GREATEST(c.watch_until,
                                       CASE WHEN c.enabled THEN n.watch_until END)) AS watch_until
    FROM currencies c JOIN networks n ON n.code = c.network_code
    WHERE n.chain_family = ANY(:families)
      AND ((c.enabled AND n.enabled) OR c.watch_until IS NOT NULL
           OR (c.enabled AND n.watch_until IS NOT NULL))
    ORDER BY n.code, c.code
    """
)


_NETWORKS = text(
    """
    SELECT code, name, chain_family, chain_id, confirmations, block_time_ms, enabled,
           extract(epoch FROM watch_until) AS watch_until
    FROM networks WHERE chain_family = ANY(:families) ORDER BY code
    """
)


@dataclass(frozen=True)
class CatalogNetwork:
    code: str
    name: str  # what a payer reads ("Ethereum"), where the code is what the API takes
    chain_family: str
    chain_id: int | None
    confirmations: int
    block_time_ms: int
    enabled: bool
    watch_until: float | None  # epoch seconds (chain time), when switched off while in use


@dataclass(frozen=True)
class CatalogCurrency:
    id: str
    code: str
    name: str
    contract: str | None  # lowercase for EVM; None for the native coin
    decimals: int
    network: str
    chain_family: str
    chain_id: int | None
    confirmations: int
    block_time_ms: int
    dust_threshold: int = 0  # base units; a transfer below it (or of 0) is not a payment
    # None while offered; else the chain time (epoch seconds) until which it is still scanned.
    watch_until: float | None = None


@dataclass(frozen=True)
class Catalog:
    currencies: tuple[CatalogCurrency, ...]  # offered on new invoices
    watched: tuple[CatalogCurrency, ...] = ()  # not offered, still scanned until watch_until
    networks: tuple[CatalogNetwork, ...] = ()  # every network of an offered family

    def network(self, code: str) -> CatalogNetwork | None:
        return next((n for n in self.networks if n.code == code), None)

    def find(self, network: str, code: str) -> CatalogCurrency | None:
        return next((c for c in self.currencies if c.network == network and c.code == code), None)

    def networks_with(self, code: str) -> list[CatalogCurrency]:
        return [c for c in self.currencies if c.code == code]

    def codes(self) -> set[str]:
        return {c.code for c in self.currencies}

    def of_network(self, network: str) -> list[CatalogCurrency]:
        return [c for c in self.currencies if c.network == network]

    def scanned(self, network: str, chain_time: float | None) -> list[CatalogCurrency]:
        """What a scanner of `network` reads at `chain_time` (its cursor's block time; None
        when not known yet): the offered currencies and those watched until then."""
        return self.of_network(network) + [
            c
            for c in self.watched
            if c.network == network and (chain_time is None or (c.watch_until or 0) >= chain_time)
        ]


class CatalogCache:
    def __init__(self, engine: AsyncEngine, ttl_s: float = TTL_S) -> None:
        self.engine = engine
        self.ttl_s = ttl_s
        self._value: Catalog | None = None
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> Catalog:
        if self._value is not None and time.monotonic() - self._loaded_at < self.ttl_s:
            return self._value
        async with self._lock:
            if self._value is None or time.monotonic() - self._loaded_at >= self.ttl_s:
                self._value = await self._load()
                self._loaded_at = time.monotonic()
        return self._value

    def invalidate(self) -> None:
        self._loaded_at = 0.0

    async def _load(self) -> Catalog:
        async with self.engine.connect() as conn:
            families = {"families": list(OFFERED_FAMILIES)}
            rows = (await conn.execute(_QUERY, families)).all()
            networks = (await conn.execute(_NETWORKS, families)).all()
        entries = [
            CatalogCurrency(
                id=row.id,
                code=row.code,
                name=row.name,
                contract=row.contract.lower()
                if row.contract and row.chain_family == "evm"
                else row.contract,
                decimals=row.decimals,
                network=row.network,
                chain_family=row.chain_family,
                chain_id=row.chain_id,
                confirmations=row.confirmations,
                block_time_ms=row.block_time_ms,
                dust_threshold=int(row.dust_threshold),
                watch_until=None if row.offered else float(row.watch_until or 0),
            )
            for row in rows
        ]
        return Catalog(
            tuple(e for e in entries if e.watch_until is None),
            tuple(e for e in entries if e.watch_until is not None),
            tuple(
                CatalogNetwork(
                    n.code,
                    n.name,
                    n.chain_family,
                    n.chain_id,
                    n.confirmations,
                    n.block_time_ms,
                    n.enabled,
                    None if n.watch_until is None else float(n.watch_until),
                )
                for n in networks
            ),
        )
