"""A real chain for payment tests: a fresh anvil node with a test token, registered as a
network of its own (unique code) with USDT = the token and ETH native, scanned
(tests/fixtures/scanning.py: a runtime, a scanner on that network, a merchant with an API
key)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text

from tests.fixtures.anvil import Anvil, run_anvil
from tests.fixtures.factories import register_network
from tests.fixtures.scanning import ScannedNetwork, scanned_network

CONFIRMATIONS = 3


@dataclass(kw_only=True)
class Chain(ScannedNetwork):
    node: Anvil
    token: str

    def reference_changed(self) -> None:
        """Networks or currencies changed: the scanner's and the api's catalogs reload."""
        self.runtime.catalog.invalidate()
        self.app.state.runtime.catalog.invalidate()

    def pay(self, invoice: dict, amount: int, *, wait: bool = True) -> str:
        address = invoice["payment_options"][0]["address"]
        return self.node.transfer(self.token, address, amount, wait=wait)

    async def expire(self, invoice_id: str) -> None:
        """Make the invoice due (expired a second ago), let the scanner read a block mined
        after that (the expiry job waits for the chain to pass the expiry), run the job."""
        from nespay.invoices.tasks import expire_invoices

        async with self.runtime.db.engine.begin() as conn:
            await conn.execute(
                text("UPDATE invoices SET expires_at = now() - interval '1 s' WHERE id = :i"),
                {"i": invoice_id},
            )
        self.node.mine(1)
        await self.scan()
        await expire_invoices(self.runtime)


@asynccontextmanager
async def chain_on(
    settings, database, node: Anvil, urls: list[str] | None = None
) -> AsyncIterator[Chain]:
    """A Chain on `node`, its network's RPC endpoints `urls` by priority (default: the node)."""
    token = node.deploy_token("Tether Test", "USDT", 6)
    node.mint(token, node.accounts[0], 10**15)

    def register(db: Any) -> Awaitable[str]:
        return register_network(db, urls or [node.url], token, CONFIRMATIONS)

    async with scanned_network(settings, database, register, Chain, node=node, token=token) as rig:
        yield rig


@pytest.fixture
async def chain(settings, database):
    with run_anvil() as node:
        async with chain_on(settings, database, node) as value:
            yield value


def units(amount: str, decimals: int = 6) -> int:
    return int(Decimal(amount).scaleb(decimals))
