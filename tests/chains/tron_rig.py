"""A Tron network on the fake TronGrid, with a runtime, the api app, a merchant and a scanner
stepped by the test (the in-process twin of tests/payments/conftest.py's `Chain`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import text

from nespay.apps import api
from nespay.chains.faketron import FakeTron
from nespay.chains.scanner import NetworkScanner
from nespay.runtime import Runtime
from tests.fixtures.app import app_client
from tests.fixtures.factories import MerchantWithKey, merchant_with_key
from tests.fixtures.fake_trongrid import PAYER, register_tron_network
from tests.fixtures.scanning import ScanningSteps


@dataclass
class TronChain(ScanningSteps):
    fake: FakeTron
    network: str
    token: str
    runtime: Runtime
    scanner: NetworkScanner
    client: httpx.AsyncClient
    merchant: MerchantWithKey
    http: httpx.AsyncClient

    def pay(self, invoice: dict, amount: int, *, mine: bool = True) -> str:
        """A TRC-20 USDT transfer to the invoice's address (in the next block)."""
        tx = self.fake.send_trc20(self.token, PAYER, address(invoice), amount)
        if mine:
            self.fake.mine()
        return tx

    async def payments(self, invoice_id: str) -> list[dict]:
        async with self.runtime.db.engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT tx_hash, log_index, status, amount, from_address, to_address,"
                    " confirmations FROM payments WHERE invoice_id = :i ORDER BY block_number"
                ),
                {"i": invoice_id},
            )
            return [dict(row._mapping) for row in rows]

    def another_scanner(self, owner: str) -> NetworkScanner:
        return NetworkScanner(self.runtime, self.network, owner, self.http)


def address(invoice: dict) -> str:
    return invoice["payment_options"][0]["address"]


@asynccontextmanager
async def tron_chain_on(
    settings: Any,
    database: Any,
    fake: FakeTron,
    endpoints: list[tuple[str, str | None]] | None = None,
    *,
    confirmations: int = 1,
) -> AsyncIterator[TronChain]:
    token = fake.new_token("USDT")
    fake.mine(3)
    runtime = Runtime(settings, "jobs")
    await runtime.start()
    network = await register_tron_network(
        runtime.db, endpoints or [(fake.url, None)], token, confirmations=confirmations
    )
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
            yield TronChain(fake, network, token, runtime, scanner, client, merchant, http)
            await scanner.release()
    finally:
        await runtime.close()
