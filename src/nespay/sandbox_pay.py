"""`nespay sandbox pay INVOICE_ID [--amount X]`: pay an invoice of the running dev stack.

A payer's view of the invoice says what is due on its `local` option; the funded dev account
(anvil's first) sends it — the test token (minted first when the account holds too little: the
TestToken lets anyone mint) or the native coin — to the invoice's deposit address, on the node
the `local` network's RPC endpoints name. Then the invoice is read from the database, every
state it reaches printed, until the payment is confirmed or the timeout says what is missing.
Nothing here scans: the jobs process of `nespay dev` does, as it would for any payer.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from decimal import Decimal

import httpx
from rich.console import Console

from nespay.chains import cursors, localchain
from nespay.config import Settings
from nespay.invoices import public
from nespay.invoices import service as invoices
from nespay.invoices.schemas import Invoice, InvoicePayment, PublicInvoice, PublicPaymentOption
from nespay.kit.addresses import display_address
from nespay.kit.money import from_base_units, parse_amount, to_base_units
from nespay.runtime import Runtime
from nespay.sandbox import NETWORK, SandboxError, describe

POLL_S = 0.5
CLOSED = ("cancelled",)
SETTLED = ("paid", "confirmed")


@dataclass(frozen=True)
class Payment:
    invoice_id: str
    option: PublicPaymentOption
    amount: int  # base units of the option's currency
    rpc_url: str


async def pay(
    settings: Settings,
    console: Console,
    invoice_id: str,
    *,
    amount: str | None,
    currency: str | None,
    timeout_s: float,
) -> Invoice:
    """Send, watch, and return the invoice as it is once the payment is confirmed."""
    runtime = Runtime(settings, "sandbox")
    try:
        await runtime.start()
        payment = await plan(runtime, invoice_id, amount, currency)
        last = await _read(runtime, invoice_id)
        console.print(describe(last))
        what = (
            f"{from_base_units(payment.amount, payment.option.decimals)} {payment.option.currency}"
        )
        tx_hash, payer = await asyncio.to_thread(send, payment)
        payer = display_address("evm", payer)
        console.print(f"sent {what} to {payment.option.address} from {payer} (tx {tx_hash})")
        return await watch(runtime, console, invoice_id, tx_hash, last, timeout_s)
    finally:
        await runtime.close()


async def plan(
    runtime: Runtime, invoice_id: str, amount: str | None, currency: str | None
) -> Payment:
    """What to send where, or SandboxError saying why not."""
    async with runtime.db.session() as session:
        try:
            view = await public.view(session, runtime, invoice_id)
        except invoices.InvoiceNotFound:
            raise SandboxError(f"there is no invoice {invoice_id}") from None
        endpoints = await cursors.endpoints(await session.connection(), NETWORK)
    option = _local_option(view, currency)
    if view.status in CLOSED:
        raise SandboxError(f"invoice {invoice_id} is {view.status}: nothing can be paid")
    units = _amount(view, option, amount)
    network = (await runtime.catalog.get()).network(NETWORK)
    chain_id = network.chain_id if network is not None else None
    url = await asyncio.to_thread(_answering, [e.url for e in endpoints], chain_id)
    return Payment(invoice_id, option, units, url)


def _local_option(view: PublicInvoice, currency: str | None) -> PublicPaymentOption:
    local = [o for o in view.payment_options if o.network == NETWORK]
    if not local:
        offered = ", ".join(f"{o.currency} on {o.network}" for o in view.payment_options)
        raise SandboxError(
            f"invoice {view.id} is payable in {offered or 'nothing'}, not on the `{NETWORK}` "
            "network: `nespay sandbox pay` only sends on the local development chain"
        )
    if currency is not None:
        chosen = next((o for o in local if o.currency == currency.upper()), None)
        if chosen is None:
            codes = ", ".join(o.currency for o in local)
            raise SandboxError(f"invoice {view.id} is payable on `{NETWORK}` in {codes} only")
        return chosen
    return next((o for o in local if o.currency == view.currency), local[0])


def _amount(view: PublicInvoice, option: PublicPaymentOption, amount: str | None) -> int:
    """`--amount` in whole units of the option's currency, by default what is still due."""
    if amount is None:
        if view.status in SETTLED:
            raise SandboxError(
                f"invoice {view.id} is {view.status}: nothing is due (--amount sends more anyway)"
            )
        return to_base_units(Decimal(option.amount_due), option.decimals)
    try:
        units = to_base_units(parse_amount(amount), option.decimals)
    except ValueError as error:
        raise SandboxError(f"--amount {amount!r}: {error} for {option.currency}") from None
    if units <= 0:
        raise SandboxError("--amount must be more than 0")
    return units


def _answering(urls: list[str], chain_id: int | None) -> str:
    """The first of the network's endpoints with a node of its chain behind it."""
    for url in urls:
        try:
            localchain.wait_ready(url, chain_id=chain_id, timeout=2)
        except (localchain.LocalChainError, httpx.HTTPError):
            continue
        return url
    where = ", ".join(urls) or "no RPC endpoint"
    raise SandboxError(
        f"the local chain does not answer ({where}): start the dev stack with `./run`, which "
        f"runs it, or point `{NETWORK}` at a running node with "
        f"`nespay networks set-rpc {NETWORK} URL`"
    )


def send(payment: Payment) -> tuple[str, str]:
    """(tx hash, payer): the amount from the dev account to the deposit address."""
    url, option = payment.rpc_url, payment.option
    try:
        payer = localchain.accounts(url)[0]
    except (IndexError, localchain.LocalChainError):
        raise SandboxError(f"the node at {url} has no funded dev account (is it anvil?)") from None
    if option.token_contract is None:
        have = localchain.native_balance(url, payer)
        if have <= payment.amount:
            shown = from_base_units(have, option.decimals)
            raise SandboxError(f"the dev account holds only {shown} {option.currency}")
        return localchain.send_native(url, option.address, payment.amount, payer), payer
    token = option.token_contract
    have = localchain.token_balance(url, token, payer)
    if have < payment.amount:
        try:
            localchain.mint(url, token, payer, payment.amount - have, sender=payer)
        except localchain.LocalChainError:
            shown = from_base_units(have, option.decimals)
            raise SandboxError(
                f"the dev account holds only {shown} {option.currency} and {token} cannot be "
                "minted (not the test token)"
            ) from None
    return localchain.transfer_token(url, token, option.address, payment.amount, payer), payer


async def watch(
    runtime: Runtime,
    console: Console,
    invoice_id: str,
    tx_hash: str,
    last: Invoice,
    timeout_s: float,
) -> Invoice:
    """Print every state the invoice reaches until the payment `tx_hash` is confirmed."""
    deadline = time.monotonic() + timeout_s
    with console.status("waiting for the jobs process to see the payment…") as status:
        while time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
            invoice = await _read(runtime, invoice_id)
            if invoice.status != last.status:
                console.print(describe(invoice))
            last = invoice
            ours = _payment(invoice, tx_hash)
            if ours is not None and ours.status == "confirmed":
                return invoice
            if ours is not None:
                status.update(
                    f"payment seen in block {ours.block_number}, {ours.confirmations} "
                    "confirmation(s); waiting for more…"
                )
    raise SandboxError(_timed_out(last, tx_hash, timeout_s))


def _payment(invoice: Invoice, tx_hash: str) -> InvoicePayment | None:
    return next((p for p in invoice.payments if p.tx_hash.lower() == tx_hash.lower()), None)


def _timed_out(invoice: Invoice, tx_hash: str, timeout_s: float) -> str:
    ours = _payment(invoice, tx_hash)
    head = f"invoice {invoice.id} is still {invoice.status} {timeout_s:g}s after tx {tx_hash}: "
    if ours is None:
        return head + (
            "no scanner has recorded the payment; is the jobs process running (`./run`)? "
            "`curl localhost:8002/api/v1/jobs` shows the `local` scanner"
        )
    return head + (
        f"its payment has {ours.confirmations} confirmation(s) so far; is the chain mining "
        "(`./run` mines a block a second)?"
    )


async def _read(runtime: Runtime, invoice_id: str) -> Invoice:
    """The invoice and its payments from one snapshot: read statement by statement, the
    scanner's commit could fall between them (a confirmed payment on a still-paid invoice)."""
    async with runtime.db.snapshot() as session:
        return await invoices.get(
            session, invoice_id, merchant_id=None, base_url=runtime.settings.base_url
        )
