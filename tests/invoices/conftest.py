"""Invoices through the real api app: a client, merchants with API keys, DB-only networks
(USDT = a fixed test contract, 6 decimals; ETH native, 18), and a few DB helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from nespay.apps import api
from nespay.db import Database
from nespay.rates.service import set_admin_rate
from nespay.runtime import Runtime
from tests.fixtures.app import app_client
from tests.fixtures.factories import (
    TEST_ACTOR,
    MerchantWithKey,
    merchant_with_key,
    register_network,
)
from tests.fixtures.fake_privy import fake_privy  # noqa: F401 - a fixture
from tests.payments.conftest import chain  # noqa: F401 - a fixture

# A mixed-case (EIP-55) contract, so tests can see how the API shows it.
TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
DEAD_RPC = "http://127.0.0.1:9"


@dataclass
class Api:
    app: FastAPI
    client: httpx.AsyncClient
    database: Database

    @property
    def runtime(self) -> Runtime:
        return self.app.state.runtime

    async def network(self) -> str:
        """A new enabled DB-only EVM network (no node behind it), visible to the app now. Its
        cursor says the chain was read far ahead of the clock, so the expiry job never waits
        for a scanner here (tests/payments prove that wait on a real chain)."""
        code = await register_network(self.database, [DEAD_RPC], TOKEN)
        await self.execute(
            "INSERT INTO chain_cursors (network_code, block_number, block_hash, block_timestamp)"
            " VALUES (:n, 0, '0x00', extract(epoch FROM now() + interval '10 years'))",
            n=code,
        )
        self.runtime.catalog.invalidate()
        return code

    async def create(
        self, merchant: MerchantWithKey, body: dict, *, key: str | None = None
    ) -> httpx.Response:
        headers = dict(merchant.headers)
        if key is not None:
            headers["Idempotency-Key"] = key
        return await self.client.post("/api/v1/invoices", json=body, headers=headers)

    async def invoice(self, merchant: MerchantWithKey, network: str, **body) -> dict:
        body = {"amount": "10", "currency": "USDT", "network": network, **body}
        response = await self.create(merchant, body)
        assert response.status_code == 201, response.text
        return response.json()

    async def get(self, merchant: MerchantWithKey, invoice_id: str) -> httpx.Response:
        return await self.client.get(f"/api/v1/invoices/{invoice_id}", headers=merchant.headers)

    async def scalar(self, sql: str, **params):
        async with self.database.engine.connect() as conn:
            return (await conn.execute(text(sql), params)).scalar()

    async def rows(self, sql: str, **params) -> list:
        async with self.database.engine.connect() as conn:
            return list(await conn.execute(text(sql), params))

    async def execute(self, sql: str, **params) -> None:
        async with self.database.engine.begin() as conn:
            await conn.execute(text(sql), params)

    async def invoice_count(self, merchant: MerchantWithKey) -> int:
        return await self.scalar(
            "SELECT count(*) FROM invoices WHERE merchant_id = :m", m=merchant.merchant_id
        )

    async def events(self, invoice_id: str) -> list:
        return await self.rows(
            "SELECT type, data, merchant_id FROM events WHERE subject_id = :s ORDER BY seq",
            s=invoice_id,
        )


@pytest.fixture
async def api_for(database) -> AsyncIterator:
    """`async with api_for(settings) as api:` — the api app built from `settings`."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def build(settings):
        async with app_client(api.create_app, settings) as (app, client):
            yield Api(app, client, database)

    yield build


@pytest.fixture
async def app(settings, api_for) -> AsyncIterator[Api]:
    async with api_for(settings) as value:
        yield value


@pytest.fixture
async def merchant(database) -> MerchantWithKey:
    return await merchant_with_key(database)


@pytest.fixture
async def other_merchant(database) -> MerchantWithKey:
    return await merchant_with_key(database)


@pytest.fixture
async def network(app) -> str:
    return await app.network()


@pytest.fixture
async def admin_rate(database):
    """`await admin_rate(base, quote, rate)` sets an admin rate (committed), removed at the end."""
    pairs = set()

    async def put(base: str, quote: str, rate: str) -> None:
        pairs.add((base, quote))
        async with database.session() as session:
            await set_admin_rate(session, TEST_ACTOR, base, quote, Decimal(rate))

    yield put
    async with database.engine.begin() as conn:
        for base, quote in pairs:
            await conn.execute(
                text("DELETE FROM rates WHERE base = :b AND quote = :q AND source = 'admin'"),
                {"b": base, "q": quote},
            )


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    assert body["error"]["message"]
    return body["error"]["code"]
