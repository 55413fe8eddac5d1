"""What the payer's page shows, built from the public view of an invoice (the same one
`GET /api/v1/public/invoices/{id}` answers, so the page never shows more than it)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from decimal import Decimal

import segno

from nespay.chains.catalog import Catalog
from nespay.checkout.i18n import Translator
from nespay.checkout.uri import payment_uri
from nespay.invoices.schemas import PublicInvoice, PublicPaymentOption
from nespay.kit.money import to_base_units

LIVE = frozenset({"pending", "partially_paid", "paid"})  # the page still changes by itself
PAYABLE = frozenset({"pending", "partially_paid"})  # payment options are shown


@dataclass(frozen=True)
class Option:
    index: int
    family: str  # evm, tron, or va (a bank virtual account: no QR, no contract)
    network: str
    network_name: str
    currency: str
    address: str
    amount_due: str
    token_contract: str | None
    uri: str
    uri_has_amount: bool


@dataclass(frozen=True)
class Page:
    invoice: PublicInvoice
    options: list[Option]
    message: str
    live: bool
    payable: bool


def status_message(t: Translator, invoice: PublicInvoice) -> str:
    return t(f"status_{invoice.status}", id=invoice.id, due=invoice.amount_due,
             currency=invoice.currency)  # fmt: skip


def build(invoice: PublicInvoice, catalog: Catalog, t: Translator) -> Page:
    options = [
        _option(index, option, catalog) for index, option in enumerate(invoice.payment_options)
    ]
    return Page(
        invoice=invoice,
        options=options,
        message=status_message(t, invoice),
        live=invoice.status in LIVE,
        payable=invoice.status in PAYABLE,
    )


def _option(index: int, option: PublicPaymentOption, catalog: Catalog) -> Option:
    network = catalog.network(option.network)
    family = network.chain_family if network is not None else "evm"
    uri = payment_uri(
        chain_family=family,
        chain_id=option.chain_id,
        address=option.address,
        token_contract=option.token_contract,
        amount_base_units=to_base_units(Decimal(option.amount_due), option.decimals),
    )
    return Option(
        index=index,
        family=family,
        network=option.network,
        network_name=network.name if network is not None else option.network,
        currency=option.currency,
        address=option.address,
        amount_due=option.amount_due,
        token_contract=option.token_contract,
        uri=uri,
        uri_has_amount=uri != option.address,
    )


def qr_svg(data: str, title: str) -> bytes:
    """A QR code of `data` as a standalone SVG (medium error correction, a quiet zone of four
    modules, black on white whatever the page's colours)."""
    out = io.BytesIO()
    segno.make(data, error="m").save(
        out, kind="svg", scale=6, border=4, dark="#000", light="#fff", xmldecl=False, title=title
    )
    return out.getvalue()
