"""`nespay sandbox`: a merchant pays an invoice end to end on one machine.

It starts anvil (from the project's npm packages), deploys the test token (`TUSD`, 6 decimals;
on a fresh anvil it always lands at the same address), points the `local` network at the node
and enables it with the token, creates a merchant and an invoice, pays it from anvil's first
account, and scans the chain in-process, printing each state as it changes until the invoice
is confirmed. `nespay dev` uses `start_chain` (with a state file, so its chain survives a
restart) and `prepare_local_chain` to give the three processes the same chain.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncSession

from nespay.apikeys.service import issue
from nespay.auth.principals import Actor
from nespay.auth.scopes import ALL_SCOPES
from nespay.chains import cursors, localchain
from nespay.chains import service as chains
from nespay.chains.scanner import NetworkScanner
from nespay.chains.schemas import CurrencyCreate, CurrencyUpdate, NetworkUpdate
from nespay.config import Settings
from nespay.db import Database
from nespay.invoices import service as invoices
from nespay.invoices.schemas import Invoice, InvoiceCreate
from nespay.merchants.service import create_merchant
from nespay.runtime import Runtime

ACTOR = Actor("system", "sandbox")
NETWORK = "local"
TOKEN_CODE = "TUSD"  # noqa: S105 - a currency code, not a password
# How often a kept chain is saved: a kill -9 loses at most this many seconds of blocks (the
# scanner rolls them back like a reorg); each save writes the whole file (~6 MB an hour of
# one-second blocks), so not every block.
STATE_INTERVAL_S = 10
ANVIL_HINT = (
    "anvil was not found: run `npm ci` in the project folder (it installs @foundry-rs/anvil), "
    "or put anvil on PATH"
)


class SandboxError(RuntimeError):
    pass


@dataclass
class LocalChain:
    url: str
    process: subprocess.Popen[bytes]
    token: str = ""  # the test token's contract, set by `prepare_local_chain`

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_chain(
    port: int, *, block_time: int | None = None, state: Path | None = None
) -> LocalChain:
    """anvil on 127.0.0.1:`port`. With `state`, the chain is loaded from that file if it
    exists and saved to it every STATE_INTERVAL_S and on exit, so it survives a restart."""
    binary = localchain.find_anvil()
    if binary is None:
        raise SandboxError(ANVIL_HINT)
    extra: list[str] = []
    if state is not None:
        state.parent.mkdir(parents=True, exist_ok=True)
        extra = ["--state", str(state), "--state-interval", str(STATE_INTERVAL_S)]
        extra += ["--timestamp", str(_genesis_timestamp(state))]
    try:
        process = localchain.start_anvil(
            port, block_time=block_time, anvil=binary, extra_args=extra
        )
    except localchain.LocalChainError as error:
        raise SandboxError(f"{error} (choose another with --port)") from None
    chain = LocalChain(f"http://127.0.0.1:{port}", process)
    if state is not None:
        _catch_up_with_the_clock(chain)
    return chain


def _genesis_timestamp(state: Path) -> int:
    """The kept chain's block 0 time, fixed at its first start (beside its state file).

    anvil 1.7.1 makes a new genesis block at every start and keeps all of them in the state
    file; unless each start makes the same one (same time), block 0 answers with any of them
    and the restarted chain fails the scanner's genesis check. A new state file (first start,
    or one set aside) gets a new time."""
    marker = state.with_name("genesis-timestamp")
    if state.exists():
        try:
            return int(marker.read_text().strip())
        except (OSError, ValueError):
            pass  # a state file kept by an older nespay: its block 0 cannot be made again
    stamp = int(time.time())
    marker.write_text(f"{stamp}\n")
    return stamp


def _catch_up_with_the_clock(chain: LocalChain) -> None:
    """A fixed genesis time also sets anvil's clock back: restarted, the chain would mine on
    from its last block, behind the wall clock by the downtime (and the expiry job waits for
    chain time to pass `expires_at`). Set the clock to now."""
    now = int(time.time())
    try:
        if int(localchain.get_block(chain.url)["timestamp"], 16) < now:
            localchain.set_time(chain.url, now)
    except Exception:
        chain.stop()
        raise


async def prepare_local_chain(db: Database, chain: LocalChain) -> list[str]:
    """Make `local` the node's network: the test token (deployed only if the node does not
    have the stored one), the node as first RPC endpoint, the network enabled with the
    token; and, in development, a scan cursor left by another chain forgotten. Returns the
    lines worth telling the developer."""
    said = []
    async with db.session() as session:
        stored = await _stored_token(session)
        if stored is not None and await asyncio.to_thread(
            localchain.has_code, chain.url, stored.contract
        ):
            chain.token = stored.contract
        else:
            chain.token = await asyncio.to_thread(
                localchain.deploy_test_token, chain.url, "Sandbox USD", TOKEN_CODE, 6
            )
        await _register(session, chain, stored)
        if db.settings.is_development and await _forget_other_chain(session, chain):
            said.append(
                "local chain: a new chain (the saved one is gone), so the `local` scanner "
                "starts afresh on it; invoices paid on the old chain keep their state"
            )
    return said


async def _stored_token(session: AsyncSession) -> Any:
    found = await chains.list_currencies(session, network=NETWORK)
    return next((c for c in found if c.code == TOKEN_CODE and c.contract), None)


async def _register(session: AsyncSession, chain: LocalChain, stored: Any) -> None:
    """Point `local` at the node (first priority), enable it, offer the token."""
    await chains.set_rpc(session, ACTOR, NETWORK, chain.url, priority=0)
    await chains.update_network(
        session, ACTOR, NETWORK, NetworkUpdate(enabled=True), watch_window_s=0
    )
    if stored is None:
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
    elif stored.contract != chain.token:
        # A fresh chain puts the token where the first one did (account 0's first contract);
        # only a node used for something else first lands elsewhere.
        try:
            await chains.update_currency(
                session, ACTOR, stored.id, CurrencyUpdate(contract=chain.token), watch_window_s=0
            )
        except chains.CurrencyInUse:
            raise SandboxError(
                f"the test token landed at {chain.token}, but {TOKEN_CODE} on `{NETWORK}` is "
                f"{stored.contract}, which invoices refer to: start from a fresh node (remove "
                ".nespay/anvil) or reset the database (`nespay db reset`)"
            ) from None


async def _forget_other_chain(session: AsyncSession, chain: LocalChain) -> bool:
    """Whether `local`'s cursor was made on another chain than the node's (its state file was
    lost, or a fresh sandbox node): then it is forgotten, so the scanner starts on this one
    rather than failing for ever. A chain that only lost its last blocks (anvil killed
    between two saves) is the same chain: the scanner's reorg handling rolls those back."""
    marks = await cursors.chain_marks(await session.connection(), NETWORK)
    if marks is None or await asyncio.to_thread(_same_chain, chain.url, marks):
        return False
    return await chains.reset_cursor(session, ACTOR, NETWORK)


def _same_chain(url: str, marks: cursors.ChainMarks) -> bool:
    if marks.genesis is not None and localchain.get_block(url, 0)["hash"] != marks.genesis:
        return False
    number, hash_ = marks.oldest or marks.cursor
    found = localchain.rpc(url, "eth_getBlockByNumber", hex(number), False)
    return found is not None and found["hash"] == hash_


async def run(settings: Settings, console: Console, port: int) -> None:
    chain = await asyncio.to_thread(start_chain, port)
    runtime = Runtime(settings, "sandbox")
    try:
        await runtime.start()
        for line in await prepare_local_chain(runtime.db, chain):
            console.print(line)
        console.print(f"anvil on {chain.url}; test token {TOKEN_CODE} at {chain.token}")
        invoice_id, address, key = await _merchant_and_invoice(runtime)
        console.print(f"merchant API key (for curl): {key}")
        console.print(f"invoice {invoice_id}: pay 25 {TOKEN_CODE} to {address}")
        await _pay_and_watch(runtime, chain, invoice_id, address, console)
    finally:
        await runtime.close()
        chain.stop()


async def _merchant_and_invoice(runtime: Runtime, network: str = NETWORK) -> tuple[str, str, str]:
    async with runtime.db.session() as session:
        merchant = await create_merchant(session, ACTOR, "Sandbox Shop", "shop@example.com", "ID")
        _, key = await issue(session, merchant.id, "sandbox", sorted(ALL_SCOPES), None, ACTOR)
    runtime.catalog.invalidate()
    body = InvoiceCreate(amount="25", currency=TOKEN_CODE, network=network, order_id="sandbox-1")
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
        invoice = await invoices.get(
            session, invoice_id, merchant_id=None, base_url=runtime.settings.base_url
        )
    if invoice.status != last:
        console.print(describe(invoice))
    return invoice.status


def describe(invoice: Invoice) -> str:
    """One line per state an invoice reaches, as the sandbox commands print them."""
    return (
        f"  → {invoice.status} (paid {invoice.amount_paid} of {invoice.amount} "
        f"{invoice.currency}, {len(invoice.payments)} payment(s))"
    )
