"""A real chain for payment tests: a fresh anvil node with a test token, registered as a
network of its own (unique code) with USDT = the token and ETH native; a runtime, a scanner
on that network, and a merchant with an API key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from nespay.apps import api
from nespay.chains.scanner import NetworkScanner
from nespay.runtime import Runtime
from tests.fixtures.anvil import Anvil, run_anvil
from tests.fixtures.app import app_client
from tests.fixtures.factories import MerchantWithKey, merchant_with_key, register_network
from tests.fixtures.scanning import ScanningSteps

CONFIRMATIONS = 3


@dataclass
class Chain(ScanningSteps):
    node: Anvil
    network: str
    token: str
    runtime: Runtime
    scanner: NetworkScanner
    client: httpx.AsyncClient
    merchant: MerchantWithKey
    app: Any = None

    def reference_changed(self) -> None:
        """Networks or currencies changed: the scanner's and the api's catalogs reload."""
        self.runtime.catalog.invalidate()
        if self.app is not None:
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
    runtime = Runtime(settings, "jobs")
    await runtime.start()
    network = await register_network(runtime.db, urls or [node.url], token, CONFIRMATIONS)
    runtime.catalog.invalidate()
    merchant = await merchant_with_key(database)
    try:
        async with (
            httpx.AsyncClient(timeout=10) as http,
            app_client(api.create_app, settings) as (app, client),
        ):
            app.state.runtime.catalog.invalidate()
            scanner = NetworkScanner(runtime, network, "test-scanner", http)
            assert await scanner.acquire()
            yield Chain(node, network, token, runtime, scanner, client, merchant, app)
            await scanner.release()
    finally:
        await runtime.close()


@pytest.fixture
async def chain(settings, database):
    with run_anvil() as node:
        async with chain_on(settings, database, node) as value:
            yield value


def units(amount: str, decimals: int = 6) -> int:
    return int(Decimal(amount).scaleb(decimals))
