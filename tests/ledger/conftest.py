"""Ledger tests: a currency of their own (a fresh network) and a merchant, in the shared
database; each test's transfers use keys of their own."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from nespay.db import Database
from nespay.kit.ids import new_id
from nespay.ledger import accounts
from nespay.ledger.accounts import Account
from tests.fixtures.factories import merchant_with_key, register_network
from tests.payments.conftest import chain  # noqa: F401 - a fixture

TOKEN = "0x" + "ab" * 20


@dataclass
class Books:
    database: Database
    network: str
    currency_id: str
    merchant_id: str

    @property
    def merchant(self) -> Account:
        return accounts.merchant(self.merchant_id, self.currency_id)

    def platform(self, kind: str) -> Account:
        return accounts.platform(kind, self.currency_id)

    async def counters(self, account: Account) -> tuple[int, int, int, int]:
        """(debits_pending, debits_posted, credits_pending, credits_posted); zeros if unused."""
        async with self.database.driver() as db:
            row = await db.fetchrow(
                "SELECT debits_pending, debits_posted, credits_pending, credits_posted"
                " FROM ledger_accounts WHERE id = $1",
                account.id,
            )
        return tuple(int(v) for v in row) if row else (0, 0, 0, 0)  # type: ignore[return-value]


@pytest.fixture
async def books(database: Database) -> Books:
    network = await register_network(database, ["http://127.0.0.1:1"], TOKEN)
    async with database.driver() as db:
        currency_id = await db.fetchval(
            "SELECT id FROM currencies WHERE network_code = $1 AND code = 'USDT'", network
        )
    merchant = await merchant_with_key(database)
    return Books(database, network, currency_id, merchant.merchant_id)


def key(step: str = "t") -> str:
    return f"test/{new_id('k')}/{step}"
