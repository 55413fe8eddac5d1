"""Consolidation on a real chain: the payments rig (anvil, scanner, api) plus what a sweep
needs — the account xprv imported, a treasury, a funded gas wallet known to the ledger, and an
ETH price."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from eth_account import Account
from sqlalchemy import text

from nespay.auth.principals import Actor
from nespay.ledger.funding import record_funding
from nespay.rates.service import set_admin_rate
from nespay.security.encryption import keyring_from_settings
from nespay.sweeps.tasks import consolidate
from nespay.sweeps.treasury import set_treasury
from nespay.wallets import hdkeys
from nespay.wallets.tasks import send_transactions
from tests.fixtures.anvil import run_anvil
from tests.payments.conftest import CONFIRMATIONS, Chain, chain_on, units
from tests.wallets.sending import ETH, import_key

ACTOR = Actor("system", "test")


@dataclass
class Sweeping:
    chain: Chain
    treasury: str
    gas_wallet: str

    @property
    def runtime(self):
        return self.chain.runtime

    async def consolidate(self) -> str:
        return await consolidate(self.runtime)

    async def send(self) -> str:
        return await send_transactions(self.runtime)

    async def sweeps(self) -> list[dict[str, Any]]:
        return await self.rows("SELECT * FROM sweeps WHERE network_code = :n ORDER BY address")

    async def rows(self, statement: str, **params: Any) -> list[dict[str, Any]]:
        async with self.runtime.db.engine.connect() as conn:
            found = await conn.execute(text(statement), {"n": self.chain.network, **params})
            return [dict(row._mapping) for row in found]

    async def account(self, kind: str, code: str) -> int:
        """A debit-normal platform account's posted balance (debits less credits)."""
        rows = await self.rows(
            "SELECT a.debits_posted - a.credits_posted AS balance FROM ledger_accounts a"
            " JOIN currencies c ON c.id = a.currency_id WHERE c.network_code = :n"
            " AND c.code = :code AND a.kind = :kind",
            code=code,
            kind=kind,
        )
        return int(rows[0]["balance"]) if rows else 0

    async def paid(self, count: int, amount: str = "10") -> list[str]:
        """`count` invoices paid in one batch transaction and confirmed; their addresses."""
        invoices = [await self.chain.invoice(amount) for _ in range(count)]
        addresses = [i["payment_options"][0]["address"] for i in invoices]
        self.chain.node.batch_transfer(
            self.chain.token, addresses, [units(amount)] * len(addresses)
        )
        self.chain.node.mine(CONFIRMATIONS)
        await self.chain.scan()
        for invoice in invoices:
            assert (await self.chain.get(invoice["id"]))["status"] == "confirmed"
        return [a.lower() for a in addresses]

    async def run_until_swept(self, passes: int = 30) -> list[dict[str, Any]]:
        """Sender passes (a block mined after each) until no sweep is live."""
        for _ in range(passes):
            await self.send()
            found = await self.sweeps()
            if found and all(s["status"] not in ("funding", "sending") for s in found):
                return found
            self.chain.node.mine(1)
        raise AssertionError(f"sweeps still live: {[s['status'] for s in found]}")


async def prepare(chain: Chain, *, import_xprv: bool = True, eth_usd: str = "1") -> Sweeping:
    settings, db = chain.runtime.settings, chain.runtime.db
    treasury = Account.create().address  # EIP-55, as an operator pastes it
    _, gas_wallet = await import_key(settings, db, chain.network, role="gas")
    chain.node.send_native(gas_wallet.address, 10 * ETH)
    async with db.session() as session:
        await set_treasury(session, ACTOR, chain.network, treasury)
        await record_funding(
            session, ACTOR, network=chain.network, currency="ETH", amount="10", reason="gas"
        )
        await set_admin_rate(session, ACTOR, "ETH", "USD", Decimal(eth_usd))
        if import_xprv:
            await hdkeys.import_xprv(
                session,
                settings,
                keyring_from_settings(settings),
                chain_family="evm",
                xprv=hdkeys.dev_account_xprv(),
            )
    return Sweeping(chain, treasury.lower(), gas_wallet.address)


def tuned_settings(settings, cognito, **overrides: Any):
    """The test's settings with Cognito (for backoffice calls) and room for twenty sweeps."""
    values = {"consolidation_job_max_concurrent": 25, **cognito.setting_values(), **overrides}
    return settings.model_copy(update=values)


@pytest.fixture
async def bare(settings, database, cognito) -> AsyncIterator[Chain]:
    """The chain rig alone: nothing of consolidation prepared."""
    with run_anvil() as node:
        async with chain_on(tuned_settings(settings, cognito), database, node) as chain:
            yield chain


@pytest.fixture
async def sweeping(bare) -> Sweeping:
    return await prepare(bare)


@pytest.fixture(scope="module")
def admin_headers(cognito) -> dict[str, str]:
    import os

    name = f"sweeps-finance-{os.getpid()}@example.com"
    cognito.new_user("admin", name, ("finance",))
    return {"authorization": f"Bearer {cognito.tokens('admin', name)['IdToken']}"}


from tests.fixtures.anvil import fresh_anvil  # noqa: E402, F401 - a fixture
from tests.fixtures.fake_privy import fake_privy  # noqa: E402, F401 - a fixture
