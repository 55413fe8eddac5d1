"""Withdrawals through the real api app: a merchant with a funded balance (a confirmed payment
posted straight into the ledger) on a DB-only network, and admins of each backoffice group."""

from __future__ import annotations

import os

import pytest

from tests.fixtures.database import make_settings
from tests.fixtures.factories import fund_merchant
from tests.invoices.conftest import (  # noqa: F401 - fixtures
    Api,
    api_for,
    merchant,
    other_merchant,
)
from tests.payments.conftest import chain  # noqa: F401 - a fixture

BO = "/api/backoffice/v1"
# A payer's address, EIP-55 (as a wallet shows it).
PAYEE = "0x8ba1f109551bD432803012645Ac136ddd64DBA72"


@pytest.fixture
async def app(api_for, database_url, cognito):  # noqa: F811
    async with api_for(make_settings(database_url, **cognito.setting_values())) as value:
        yield value


@pytest.fixture
async def network(app) -> str:
    """A DB-only network with a payouts hot wallet (no node: nothing here is sent)."""
    code = await app.network()
    await hot_wallet(app, code)
    return code


async def hot_wallet(app: Api, network: str) -> str:
    """An imported payouts key for `network`; returns its address."""
    from tests.wallets.sending import import_key

    _, wallet = await import_key(app.runtime.settings, app.database, network)
    return wallet.address


async def usdt_id(app: Api, network: str) -> str:
    return await app.scalar(
        "SELECT id FROM currencies WHERE network_code = :n AND code = 'USDT'", n=network
    )


async def fund(app: Api, merchant_id: str, network: str, amount: int) -> None:
    """Credit the merchant's USDT balance as a confirmed payment would."""
    await fund_merchant(app.database, merchant_id, network, amount)


@pytest.fixture(scope="module")
def admins(cognito):
    found = {}
    for group in ("finance", "support", "admin"):
        name = f"wd-{group}-{os.getpid()}@example.com"
        cognito.new_user("admin", name, (group,))
        found[group] = {"authorization": f"Bearer {cognito.tokens('admin', name)['IdToken']}"}
    return found
