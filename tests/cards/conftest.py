"""Card issuing through the real api and webhook apps, against the fake Rain server: a
merchant with an API key and a funded USDT balance on a DB-only network, and helpers that
walk a card user through Rain (applied, approved by webhook, funded, carded)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from nespay.cards.handlers import register
from tests.callbacks.delivery_rig import eventually
from tests.fixtures.factories import MerchantWithKey, fund_merchant
from tests.fixtures.fake_rain import FakeRain
from tests.fixtures.json_server import json_server
from tests.inbox.rig import HOOKS, inbox_settings, webhook_client
from tests.invoices.conftest import (  # noqa: F401 - fixtures
    Api,
    api_for,
    merchant,
    other_merchant,
)

APPLICATION = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "email": "ada@example.com",
    "birth_date": "1990-12-10",
    "national_id": "123456789",
    "country_of_issue": "US",
    "address": {
        "line1": "1 Main St",
        "city": "New York",
        "region": "NY",
        "postal_code": "10001",
        "country_code": "US",
    },
    "ip_address": "203.0.113.9",
    "occupation": "Engineer",
    "annual_salary": "100000",
    "account_purpose": "spending",
    "expected_monthly_volume": "1000",
    "is_terms_of_service_accepted": True,
}


@pytest.fixture
def fake_rain() -> Any:
    rain = FakeRain()
    with json_server(rain.handle) as url:
        rain.url = url
        yield rain


@pytest.fixture
def card_settings(database_url, fake_rain):
    return inbox_settings(database_url, rain_api_url=fake_rain.url, rain_max_retries=2)


@pytest.fixture
async def app(api_for, card_settings) -> AsyncIterator[Api]:  # noqa: F811
    async with api_for(card_settings) as value:
        yield value


@pytest.fixture
async def hooks(card_settings) -> AsyncIterator[httpx.AsyncClient]:
    register()
    async with webhook_client(card_settings) as client:
        yield client


@pytest.fixture
async def network(app) -> str:
    return await app.network()


@dataclass
class Cards:
    """One merchant's card program, driven over HTTP."""

    app: Api
    hooks: httpx.AsyncClient
    rain: FakeRain
    merchant: MerchantWithKey
    network: str

    @property
    def client(self) -> httpx.AsyncClient:
        return self.app.client

    def headers(self, key: str | None = None) -> dict[str, str]:
        extra = {"Idempotency-Key": key} if key else {}
        return {**self.merchant.headers, **extra}

    async def apply(self, **body: Any) -> dict[str, Any]:
        response = await self.client.post(
            "/api/v1/card-users", json={**APPLICATION, **body}, headers=self.headers()
        )
        assert response.status_code == 201, response.text
        return response.json()

    async def rain_id_of(self, table: str, our_id: str) -> str:
        column = "rain_user_id" if table == "card_users" else "rain_card_id"
        return await self.app.scalar(
            f"SELECT {column} FROM {table} WHERE id = :i",  # noqa: S608 - a test's constant
            i=our_id,
        )

    async def send(self, raw: bytes, headers: dict[str, str]) -> httpx.Response:
        return await self.hooks.post(f"{HOOKS}/rain", content=raw, headers=headers)

    async def approved_user(self) -> dict[str, Any]:
        card_user = await self.apply()
        rain_user = await self.rain_id_of("card_users", card_user["id"])
        response = await self.send(*self.rain.approve(rain_user))
        assert response.status_code == 200, response.text

        async def approved():
            got = await self.client.get(
                f"/api/v1/card-users/{card_user['id']}", headers=self.headers()
            )
            return got.json() if got.json()["application_status"] == "approved" else None

        return await eventually(approved, what="card user approved")

    async def fund(self, card_user_id: str, amount: str, **extra: Any) -> httpx.Response:
        body = {"network": self.network, "currency": "USDT", "amount": amount, **extra}
        return await self.client.post(
            f"/api/v1/card-users/{card_user_id}/fundings", json=body, headers=self.headers()
        )

    async def card(self, card_user_id: str, **body: Any) -> dict[str, Any]:
        body = {
            "type": "virtual",
            "limit": {"amount": "500", "frequency": "per30DayPeriod"},
            **body,
        }
        response = await self.client.post(
            f"/api/v1/card-users/{card_user_id}/cards", json=body, headers=self.headers()
        )
        assert response.status_code == 201, response.text
        return response.json()

    async def funded_card(self, amount: str = "50") -> tuple[dict, dict, str]:
        """(card user, card, Rain's card id) for a card user funded with `amount` USDT."""
        user = await self.approved_user()
        assert (await self.fund(user["id"], amount)).status_code == 201
        card = await self.card(user["id"])
        return user, card, await self.rain_id_of("cards", card["id"])

    async def authorise(self, rain_card: str, cents: int, **extra: Any) -> httpx.Response:
        return await self.send(*self.rain.transaction("requested", rain_card, cents, **extra))

    async def balance(self, card_user_id: str) -> dict[str, Any]:
        response = await self.client.get(
            f"/api/v1/card-users/{card_user_id}/balances", headers=self.headers()
        )
        assert response.status_code == 200, response.text
        (found,) = response.json()["data"]
        return {k: found[k] for k in ("available", "held", "spent")}

    async def merchant_available(self) -> str:
        response = await self.client.get("/api/v1/balances", headers=self.headers())
        found = [b for b in response.json()["data"] if b["network"] == self.network]
        return found[0]["available"] if found else "0"

    async def transactions(self, card_id: str) -> list[dict[str, Any]]:
        response = await self.client.get(
            f"/api/v1/cards/{card_id}/transactions", headers=self.headers()
        )
        assert response.status_code == 200, response.text
        return response.json()["data"]

    async def ledger_holds(self) -> None:
        """The ledger's invariants (`ledger.invariants`) hold over everything done so far."""
        from nespay.ledger.invariants import check

        async with self.app.database.driver() as conn:
            findings = await check(conn)
        assert findings.ok, findings.summary()

    async def transaction_status(self, card_id: str, status: str) -> list[dict[str, Any]] | None:
        found = [t for t in await self.transactions(card_id) if t["status"] == status]
        return found or None


@pytest.fixture
async def cards(app, hooks, fake_rain, merchant, network) -> Cards:  # noqa: F811
    await fund_merchant(app.database, merchant.merchant_id, network, 100_000_000)  # 100 USDT
    return Cards(app, hooks, fake_rain, merchant, network)
