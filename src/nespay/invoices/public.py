"""The payer's view of an invoice: no authentication, so it shows only what paying needs."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from nespay.invoices import repository
from nespay.invoices.schemas import PublicInvoice
from nespay.invoices.service import InvoiceNotFound
from nespay.invoices.views import public_view
from nespay.runtime import Runtime


async def view(session: AsyncSession, runtime: Runtime, invoice_id: str) -> PublicInvoice:
    invoice = await repository.get(session, invoice_id, merchant_id=None)
    if invoice is None:
        raise InvoiceNotFound()
    options = await repository.options_of(session, [invoice.id])
    catalog = await runtime.catalog.get()
    chain_ids = {c.network: c.chain_id for c in catalog.currencies}
    return public_view(invoice, options, chain_ids)
