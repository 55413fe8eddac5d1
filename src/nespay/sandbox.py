"""`nespay sandbox`: a merchant pays an invoice end to end on one machine.

It starts anvil (from the project's npm packages), deploys the test token (`TUSD`, 6 decimals;
on a fresh anvil it always lands at the same address), points the `local` network at the node
and enables it with the token, creates a merchant and an invoice, pays it from anvil's first
account, and scans the chain in-process, printing each state as it changes until the invoice
is confirmed. `nespay dev` uses `prepare_local_chain` to give the three processes the same
chain.
"""

from __future__ import annotations

import asyncio
import subprocess
from dataclasses import dataclass
from decimal import Decimal

import httpx
from rich.console import Console

from nespay.apikeys.service import issue
from nespay.auth.principals import Actor
from nespay.auth.scopes import ALL_SCOPES
from nespay.chains import localchain
from nespay.chains import service as chains
from nespay.chains.scanner import NetworkScanner
from nespay.chains.schemas import CurrencyCreate, NetworkUpdate
from nespay.config import Settings
from nespay.db import Database
from nespay.invoices import service as invoices
from nespay.invoices.schemas import InvoiceCreate
from nespay.merchants.service import create_merchant
from nespay.runtime import Runtime

ACTOR = Actor("system", "sandbox")
NETWORK = "local"
TOKEN_CODE = "TUSD"  # noqa: S105 - a currency code, not a password
ANVIL_HINT = (
    "anvil was not found: run `npm ci` in the project folder (it installs @foundry-rs/anvil), "
    "or put anvil on PATH"
)


class SandboxError(RuntimeError):
    pass


@dataclass
class LocalChain:
    url: str
    token: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_chain(port: int, *, block_time: int | None = None) -> LocalChain:
    binary = localchain.find_anvil()
    if binary is None:
        raise SandboxError(ANVIL_HINT)
    try:
        process = localchain.start_anvil(port, block_time=block_time, anvil=binary)
    except localchain.LocalChainError as error:
        raise SandboxError(f"{error} (choose another with --port)") from None
    url = f"http://127.0.0.1:{port}"
    try:
        token = localchain.deploy_test_token(url, "Sandbox USD", TOKEN_CODE, 6)
    except Exception:
        process.terminate()
        raise
    return LocalChain(url, token, process)


async def register_local_chain(db: Database, chain: LocalChain) -> None:
    """Point `local` at the node (first priority), enable it, offer the token."""
    async with db.session() as session:
        await chains.set_rpc(session, ACTOR, NETWORK, chain.url, priority=0)
        await chains.update_network(
            session, ACTOR, NETWORK, NetworkUpdate(enabled=True), watch_window_s=0
        )
        existing = await chains.list_currencies(session, network=NETWORK)
        if not any(c.code == TOKEN_CODE for c in existing):
            await chains.create_currency(
                session,
                ACTOR,
                CurrencyCreate(
                    network=NETWORK,
                    code=TOKEN_CODE,
                    contract=chain.token,
                    decimals=6,
                    name="Sandbox USD",
                ),
            )


async def run(settings: Settings, console: Console, port: int) -> None:
    chain = await asyncio.to_thread(start_chain, port)
    console.print(f"anvil on {chain.url}; test token {TOKEN_CODE} at {chain.token}")
    runtime = Runtime(settings, "sandbox")
    try:
        await runtime.start()
        await register_local_chain(runtime.db, chain)
        invoice_id, address, key = await _merchant_and_invoice(runtime)
        console.print(f"merchant API key (for curl): {key}")
        console.print(f"invoice {invoice_id}: pay 25 {TOKEN_CODE} to {address}")
        await _pay_and_watch(runtime, chain, invoice_id, address, console)
    finally:
        await runtime.close()
        chain.stop()


async def _merchant_and_invoice(runtime: Runtime) -> tuple[str, str, str]:
    async with runtime.db.session() as session:
        merchant = await create_merchant(session, ACTOR, "Sandbox Shop", "shop@example.com", "ID")
        _, key = await issue(session, merchant.id, "sandbox", sorted(ALL_SCOPES), None, ACTOR)
    runtime.catalog.invalidate()
    body = InvoiceCreate(amount="25", currency=TOKEN_CODE, network=NETWORK, order_id="sandbox-1")
    created = await invoices.create(runtime, merchant.id, body, None)
    invoice = created.data
    return invoice["id"], invoice["payment_options"][0]["address"], key


async def _pay_and_watch(
    runtime: Runtime, chain: LocalChain, invoice_id: str, address: str, console: Console
) -> None:
    payer = localchain.accounts(chain.url)[0]
    amount = int(Decimal(25).scaleb(6))
    async with httpx.AsyncClient(timeout=10) as http:
        scanner = NetworkScanner(runtime, NETWORK, "sandbox", http)
        if not await scanner.acquire():
            raise SandboxError("another process is scanning the local network; stop it first")
        try:
            status = await _status(runtime, invoice_id, console, None)
            await asyncio.to_thread(localchain.mint, chain.url, chain.token, payer, amount)
            await asyncio.to_thread(
                localchain.transfer_token, chain.url, chain.token, address, amount
            )
            console.print(f"paid from {payer}")
            for _ in range(20):
                while await scanner.step():
                    pass
                status = await _status(runtime, invoice_id, console, status)
                if status == "confirmed":
                    return
                await asyncio.to_thread(localchain.mine, chain.url, 1)
            raise SandboxError(f"invoice stayed {status}; see the log above")
        finally:
            await scanner.release()


async def _status(runtime: Runtime, invoice_id: str, console: Console, last: str | None) -> str:
    async with runtime.db.session() as session:
        invoice = await invoices.get(session, invoice_id, merchant_id=None)
    if invoice.status != last:
        console.print(
            f"  → {invoice.status} (paid {invoice.amount_paid} of {invoice.amount} "
            f"{invoice.currency}, {len(invoice.payments)} payment(s))"
        )
    return invoice.status
