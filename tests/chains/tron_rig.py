"""A Tron network on the fake TronGrid, scanned (tests/fixtures/scanning.py: a runtime, the
api app, a merchant and a scanner stepped by the test; the twin of tests/payments/conftest.py's
`Chain`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from nespay.chains.faketron import FakeTron
from nespay.chains.scanner import NetworkScanner
from tests.fixtures.fake_trongrid import PAYER, register_tron_network
from tests.fixtures.scanning import ScannedNetwork, scanned_network


@dataclass(kw_only=True)
class TronChain(ScannedNetwork):
    fake: FakeTron
    token: str

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

    def register(db: Any) -> Awaitable[str]:
        return register_tron_network(
            db, endpoints or [(fake.url, None)], token, confirmations=confirmations
        )

    async with scanned_network(
        settings, database, register, TronChain, fake=fake, token=token
    ) as rig:
        yield rig
