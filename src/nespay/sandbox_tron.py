"""`nespay sandbox --chain tron`: a merchant pays a Tron invoice end to end on one machine.

No Tron node runs here, so the chain is the fake TronGrid of the test suite
(`nespay.chains.faketron`: java-tron's HTTP API and JSON shapes, a block a second, solidified
three blocks behind the head), served on 127.0.0.1:`port` (java-tron's 8090 by default, the
seeded `tron-local` endpoint). The sandbox points `tron-local` at it and enables it with a
test TRC-20 token (`TUSD`, 6 decimals; the fake puts it at the same address every start),
creates a merchant and a USDT-style invoice, pays it with a TRC-20 transfer, and scans the
chain in-process with the real Tron scanner, printing each state until the invoice is
confirmed (solidified). The chain lives in memory: every start is a new chain, so the
`tron-local` cursor of the previous one is forgotten first (development only).
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
from rich.console import Console

from nespay.chains import service as chains
from nespay.chains.faketron import SANDBOX_PORT, FakeTron
from nespay.chains.scanner import NetworkScanner
from nespay.chains.schemas import CurrencyCreate, CurrencyUpdate, NetworkUpdate
from nespay.config import Settings
from nespay.runtime import Runtime
from nespay.sandbox import ACTOR, TOKEN_CODE, SandboxError, _merchant_and_invoice, _status

NETWORK = "tron-local"
PAYER = "TPX6HK2NRN4XKRX1JAhbC827bm7gMmy5w1"  # any address: the fake checks no balance
BLOCK_EVERY_S = 1.0
SOLID_LAG = 3


def start_fake_tron(port: int = SANDBOX_PORT) -> FakeTron:
    """The fake TronGrid on 127.0.0.1:`port`, producing a block every BLOCK_EVERY_S."""
    chain = FakeTron(solid_lag=SOLID_LAG)
    try:
        chain.serve(port)
    except OSError as error:
        raise SandboxError(
            f"cannot serve the fake TronGrid on port {port} ({error.strerror}); choose another "
            "with --port"
        ) from None
    chain.produce_every(BLOCK_EVERY_S)
    return chain


async def prepare_tron_local(runtime: Runtime, chain: FakeTron) -> str:
    """Point `tron-local` at the fake (first priority), enable it with the test token, and
    forget the cursor of an earlier (gone) fake chain. Returns the token's address."""
    token = chain.new_token(TOKEN_CODE)
    async with runtime.db.session() as session:
        if not runtime.settings.is_development:
            raise SandboxError("the Tron sandbox runs in development only (APP_ENV)")
        await chains.set_rpc(session, ACTOR, NETWORK, chain.url, priority=0)
        await chains.update_network(
            session, ACTOR, NETWORK, NetworkUpdate(enabled=True), watch_window_s=0
        )
        found = await chains.list_currencies(session, network=NETWORK)
        stored = next((c for c in found if c.code == TOKEN_CODE and c.contract), None)
        if stored is None:
            body = CurrencyCreate(
                network=NETWORK, code=TOKEN_CODE, contract=token, decimals=6, name="Sandbox USD"
            )
            await chains.create_currency(session, ACTOR, body)
        elif stored.contract != token:
            update = CurrencyUpdate(contract=token)
            await chains.update_currency(session, ACTOR, stored.id, update, watch_window_s=0)
        await chains.reset_cursor(session, ACTOR, NETWORK)
    runtime.catalog.invalidate()
    return token


async def run(settings: Settings, console: Console, port: int) -> None:
    chain = await asyncio.to_thread(start_fake_tron, port)
    runtime = Runtime(settings, "sandbox")
    try:
        await runtime.start()
        token = await prepare_tron_local(runtime, chain)
        console.print(f"fake TronGrid on {chain.url}; test token {TOKEN_CODE} at {token}")
        invoice_id, address, key = await _merchant_and_invoice(runtime, NETWORK)
        console.print(f"merchant API key (for curl): {key}")
        console.print(f"invoice {invoice_id}: pay 25 {TOKEN_CODE} to {address}")
        await _pay_and_watch(runtime, chain, token, invoice_id, address, console)
    finally:
        await runtime.close()
        chain.stop()


async def _pay_and_watch(
    runtime: Runtime,
    chain: FakeTron,
    token: str,
    invoice_id: str,
    address: str,
    console: Console,
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        scanner = NetworkScanner(runtime, NETWORK, "sandbox", http)
        if not await scanner.acquire():
            raise SandboxError("another process is scanning tron-local; stop it first")
        try:
            status = await _status(runtime, invoice_id, console, None)
            tx = chain.send_trc20(token, PAYER, address, int(Decimal(25).scaleb(6)))
            console.print(f"paid from {PAYER} (transaction {tx})")
            for _ in range(60):
                while await scanner.step():
                    pass
                status = await _status(runtime, invoice_id, console, status)
                if status == "confirmed":
                    return
                await asyncio.sleep(BLOCK_EVERY_S / 2)
            raise SandboxError(f"invoice stayed {status}; see the log above")
        finally:
            await scanner.release()
