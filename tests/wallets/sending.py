"""A rig for the sender's tests: a network on an anvil node, an imported hot key funded with
ETH and test tokens, a jobs runtime, and helpers to enqueue, run passes and read rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from sqlalchemy import text

from nespay.config import Settings
from nespay.db import Database
from nespay.runtime import Runtime
from nespay.security.encryption import keyring_from_settings
from nespay.wallets import hotkeys, outgoing
from nespay.wallets.outgoing import OutgoingTx
from nespay.wallets.tasks import send_transactions
from tests.fixtures.anvil import Anvil
from tests.fixtures.factories import register_network

ETH = 10**18
PURPOSE = "test.payout"


@dataclass
class Outcomes:
    """What the purpose's handlers saw, with the status each read in its own transaction."""

    seen: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, tx id, status)

    def register(self, purpose: str = PURPOSE) -> None:
        def handler(kind: str):
            async def record(session: Any, tx: OutgoingTx) -> None:
                status = await session.scalar(
                    text("SELECT status FROM outgoing_transactions WHERE id = :id"), {"id": tx.id}
                )
                self.seen.append((kind, tx.id, status))

            return record

        outgoing.on_outcome(purpose, confirmed=handler("confirmed"), failed=handler("failed"))
        outgoing.on_mined(purpose, handler("mined"))
        outgoing.on_broadcast(purpose, handler("broadcast"))

    def kinds(self, tx_id: str) -> list[str]:
        return [kind for kind, seen_id, _ in self.seen if seen_id == tx_id]


@dataclass
class Rig:
    node: Anvil
    token: str
    network: str
    settings: Settings
    db: Database
    runtime: Runtime
    key: str
    address: str

    async def enqueue(
        self,
        to: str,
        amount: int,
        *,
        token: str | None = None,
        source_id: str | None = None,
        role: str = "payouts",
        purpose: str = PURPOSE,
    ) -> str:
        from nespay.kit.ids import new_id

        async with self.db.session() as session:
            return await outgoing.enqueue(
                session,
                purpose=purpose,
                source_id=source_id or new_id("src"),
                network=self.network,
                role=role,
                to_address=to,
                token_contract=token,
                amount=amount,
            )

    async def run(self) -> str:
        return await send_transactions(self.runtime)

    async def tx(self, tx_id: str) -> dict[str, Any]:
        async with self.db.engine.connect() as conn:
            row = await conn.execute(
                text("SELECT * FROM outgoing_transactions WHERE id = :id"), {"id": tx_id}
            )
            return dict(row.one()._mapping)

    async def candidates(self, tx_id: str) -> list[dict[str, Any]]:
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT * FROM outgoing_transaction_candidates"
                    " WHERE outgoing_transaction_id = :id ORDER BY number"
                ),
                {"id": tx_id},
            )
            return [dict(r._mapping) for r in rows]

    async def sql(self, statement: str, **params: Any) -> None:
        async with self.db.engine.begin() as conn:
            await conn.execute(text(statement), {"n": self.network, **params})

    async def run_until(self, tx_id: str, status: str, *, passes: int = 10, mine: bool = True):
        for _ in range(passes):
            await self.run()
            row = await self.tx(tx_id)
            if row["status"] == status:
                return row
            if mine:
                self.node.mine(1)
        raise AssertionError(f"{tx_id} is {row['status']} after {passes} passes: {row}")

    def nonce(self, block: str = "latest") -> int:
        return int(self.node.rpc("eth_getTransactionCount", self.address, block), 16)


async def import_key(settings: Settings, db: Database, network: str, role: str = "payouts"):
    account = Account.create()
    key = "0x" + bytes(account.key).hex()
    async with db.session() as session:
        wallet = await hotkeys.import_local_key(
            session, keyring_from_settings(settings), network=network, role=role, private_key=key
        )
    return key, wallet


@asynccontextmanager
async def rig(
    node: Anvil, settings: Settings, database: Database, *, confirmations: int = 2
) -> AsyncIterator[Rig]:
    token = node.deploy_token("Test USD", "TUSD", 6)
    network = await register_network(database, [node.url], token, confirmations)
    key, wallet = await import_key(settings, database, network)
    node.send_native(wallet.address, 10 * ETH)
    node.mint(token, wallet.address, 1_000_000_000)
    runtime = Runtime(settings, "jobs")
    await runtime.start()
    try:
        yield Rig(node, token, network, settings, database, runtime, key, wallet.address)
    finally:
        await runtime.close()
