"""An in-process snapshot of the enabled networks and currencies, refreshed every few
seconds: invoice creation and the scanners read it on every call without a query, and an
operator's change reaches every process within `TTL_S` without a restart."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

TTL_S = 5.0

_QUERY = text(
    """
    SELECT c.id, c.code, c.name, c.contract, c.decimals, n.code AS network, n.chain_family,
           n.chain_id, n.confirmations, n.block_time_ms
    FROM currencies c JOIN networks n ON n.code = c.network_code
    WHERE c.enabled AND n.enabled
    ORDER BY n.code, c.code
    """
)


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


@dataclass(frozen=True)
class Catalog:
    currencies: tuple[CatalogCurrency, ...]

    def find(self, network: str, code: str) -> CatalogCurrency | None:
        return next((c for c in self.currencies if c.network == network and c.code == code), None)

    def networks_with(self, code: str) -> list[CatalogCurrency]:
        return [c for c in self.currencies if c.code == code]

    def codes(self) -> set[str]:
        return {c.code for c in self.currencies}

    def of_network(self, network: str) -> list[CatalogCurrency]:
        return [c for c in self.currencies if c.network == network]


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
            rows = (await conn.execute(_QUERY)).all()
        return Catalog(
            tuple(
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
                )
                for row in rows
            )
        )
