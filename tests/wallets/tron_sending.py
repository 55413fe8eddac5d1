"""A rig for the Tron sender's tests: a Tron network on the fake TronGrid (which checks
signatures, expirations, duplicates and balances, and burns energy and bandwidth as
mainnet's chain parameters say), an imported payouts key funded with TRX and test USDT, a
jobs runtime, and helpers to enqueue, run passes and mine until solidified."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from nespay.chains.faketron import FakeTron
from nespay.config import Settings
from nespay.db import Database
from nespay.runtime import Runtime
from nespay.security.encryption import keyring_from_settings
from nespay.wallets import hotkeys, outgoing
from nespay.wallets.tasks import send_transactions
from tests.fixtures.fake_trongrid import register_tron_network
from tests.wallets.sending import PURPOSE, Rig

TRX = 1_000_000  # sun
USDT = 1_000_000  # base units (6 decimals)
PAYEE = "TMVQGm1qAQYVdetCeGRRkTWYYrLXuHK2HC"


async def import_tron_key(
    settings: Settings, db: Database, network: str, role: str = "payouts"
) -> tuple[str, hotkeys.HotWallet]:
    key = "0x" + secrets.token_hex(32)
    async with db.session() as session:
        wallet = await hotkeys.import_local_key(
            session, keyring_from_settings(settings), network=network, role=role, private_key=key
        )
    return key, wallet


@dataclass
class TronRig(Rig):
    fake: FakeTron = None  # type: ignore[assignment]

    async def enqueue(  # type: ignore[override]
        self, to: str = PAYEE, amount: int = 10 * USDT, *, token: str | None = None, **extra: Any
    ) -> str:
        return await super().enqueue(to, amount, token=token, **extra)

    async def usdt(self, to: str = PAYEE, amount: int = 10 * USDT, **extra: Any) -> str:
        return await self.enqueue(to, amount, token=self.token, **extra)

    async def run_until(self, tx_id: str, status: str, *, passes: int = 10, mine: bool = True):
        for _ in range(passes):
            await send_transactions(self.runtime)
            row = await self.tx(tx_id)
            if row["status"] == status:
                return row
            if mine:
                self.fake.mine()
        raise AssertionError(f"{tx_id} is {row['status']} after {passes} passes: {row}")

    def transfers(self, owner: str | None = None) -> list:
        """The broadcast transactions of `owner` (default: the hot wallet) on the chain."""
        return self.fake.signed_from(owner or self.address)


@asynccontextmanager
async def tron_rig(
    fake: FakeTron, settings: Settings, database: Database, *, confirmations: int = 1
) -> AsyncIterator[TronRig]:
    token = fake.new_token("USDT")
    fake.mine(3)
    network = await register_tron_network(
        database, [(fake.url, None)], token, confirmations=confirmations
    )
    key, wallet = await import_tron_key(settings, database, network)
    fake.fund(wallet.address, 100 * TRX)
    fake.mint(token, wallet.address, 1_000 * USDT)
    fake.mine()
    fake.solidify()
    runtime = Runtime(settings, "jobs")
    await runtime.start()
    try:
        yield TronRig(
            None,  # type: ignore[arg-type] - no anvil node
            token,
            network,
            settings,
            database,
            runtime,
            key,
            wallet.address,
            fake,
        )
    finally:
        await runtime.close()


__all__ = ["PURPOSE", "TronRig", "import_tron_key", "outgoing", "tron_rig"]
