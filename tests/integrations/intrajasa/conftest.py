"""Intrajasa through the real apps: the api app (invoices, balances, events) and the webhook
app (callbacks), in-process over HTTP, on a database of the test's own with the seeded
`intrajasa` network enabled, talking to the fake Intrajasa server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from nespay.apps import api
from nespay.chains.seed import seed_reference_data
from nespay.config import Settings
from nespay.db import Database
from tests.callbacks.delivery_rig import eventually
from tests.fixtures.app import app_client, unthrottled
from tests.fixtures.factories import MerchantWithKey, merchant_with_key
from tests.fixtures.fake_intrajasa import FakeIntrajasa, fake_intrajasa, intrajasa_settings
from tests.inbox.rig import HOOKS, inbox_settings, rows, webhook_client

__all__ = ["fake_intrajasa"]
FEE_BPS = 100  # 1 %: the credit less the fee is visible
INVOICES = "/api/v1/invoices"


def rig_settings(database_url: str, fake: FakeIntrajasa, **overrides: Any) -> Settings:
    values = {**intrajasa_settings(fake.url), "platform_fee_bps": FEE_BPS, **overrides}
    return unthrottled(inbox_settings(database_url, **values))


async def enable_intrajasa(database: Database) -> None:
    async with database.engine.begin() as conn:
        await seed_reference_data(conn)
        await conn.execute(text("UPDATE networks SET enabled = true WHERE code = 'intrajasa'"))


@dataclass
class Rig:
    api: httpx.AsyncClient
    hooks: httpx.AsyncClient
    fake: FakeIntrajasa
    database: Database
    merchant: MerchantWithKey

    async def create(
        self, body: dict[str, Any] | None = None, *, key: str | None = None
    ) -> httpx.Response:
        body = body or {
            "amount": "25000",
            "currency": "IDR",
            "payment_options": [{"network": "intrajasa", "currency": "IDR"}],
        }
        headers = dict(self.merchant.headers)
        if key is not None:
            headers["Idempotency-Key"] = key
        return await self.api.post(INVOICES, json=body, headers=headers)

    async def invoice(self, **body: Any) -> dict[str, Any]:
        created = await self.create(
            {
                "amount": "25000",
                "currency": "IDR",
                "payment_options": [{"network": "intrajasa", "currency": "IDR"}],
                **body,
            }
        )
        assert created.status_code == 201, created.text
        return created.json()

    async def get(self, invoice_id: str) -> dict[str, Any]:
        response = await self.api.get(f"{INVOICES}/{invoice_id}", headers=self.merchant.headers)
        assert response.status_code == 200, response.text
        return response.json()

    async def callback(self, raw: bytes, headers: dict[str, str]) -> httpx.Response:
        return await self.hooks.post(f"{HOOKS}/intrajasa", content=raw, headers=headers)

    async def settled(self, webhook_id: str, status: str = "handled") -> Any:
        (row,) = await eventually(
            lambda: rows(self.database, "id = :i AND status = :s", i=webhook_id, s=status),
            what=f"webhook {status}",
        )
        return row

    async def balances(self) -> list[dict[str, Any]]:
        response = await self.api.get("/api/v1/balances", headers=self.merchant.headers)
        assert response.status_code == 200, response.text
        return [b for b in response.json()["data"] if b["network"] == "intrajasa"]

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.database.engine.connect() as conn:
            return (await conn.execute(text(sql), params)).scalar()

    async def events(self, invoice_id: str) -> list[str]:
        async with self.database.engine.connect() as conn:
            result = await conn.execute(
                text("SELECT type FROM events WHERE subject_id = :s ORDER BY seq"),
                {"s": invoice_id},
            )
            return [row[0] for row in result]


@pytest.fixture
async def rig_for(database, database_url, fake_intrajasa) -> AsyncIterator[Any]:
    """`async with rig_for(**settings overrides) as rig:`."""
    from contextlib import asynccontextmanager

    await enable_intrajasa(database)
    merchant = await merchant_with_key(database, name="Toko Kopi Nusantara")

    @asynccontextmanager
    async def build(**overrides: Any) -> AsyncIterator[Rig]:
        settings = rig_settings(database_url, fake_intrajasa, **overrides)
        async with (
            app_client(api.create_app, settings) as (_, api_client),
            webhook_client(settings) as hooks,
        ):
            yield Rig(api_client, hooks, fake_intrajasa, database, merchant)

    yield build


@pytest.fixture
async def rig(rig_for) -> AsyncIterator[Rig]:
    async with rig_for() as value:
        yield value
