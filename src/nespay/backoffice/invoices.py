"""Backoffice routes on invoices: search every merchant's, read one, and mark one paid or
invalid with a reason (audit-logged; see docs/backoffice.md for what a mark does to the
ledger: nothing)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from nespay.auth.deps import AdminActor, require_admin
from nespay.auth.principals import Principal
from nespay.auth.scopes import ADMIN, FINANCE, SUPPORT
from nespay.backoffice import service as backoffice
from nespay.backoffice.schemas import BackofficeInvoice, BackofficeInvoiceList
from nespay.deps import BaseUrlDep, SessionDep, SnapshotDep
from nespay.invoices import service
from nespay.invoices.schemas import Invoice
from nespay.kit.openapi import BACKOFFICE, errors
from nespay.kit.pagination import PageDep
from nespay.kit.search import FragmentDep

router = APIRouter(tags=["backoffice: invoices"])
Reader = Annotated[Principal, Depends(require_admin(ADMIN, FINANCE, SUPPORT))]
Marker = Annotated[Principal, Depends(require_admin(ADMIN, FINANCE))]
InvoiceStatus = Literal[
    "pending", "partially_paid", "paid", "confirmed", "expired", "cancelled", "invalid"
]
MARK_ERRORS = errors(
    *BACKOFFICE,
    404,
    409,
    e404="`invoice_not_found`.",
    e409=("`invoice_not_markable`: cancelled, already marked, or (mark-paid) confirmed."),
)


@router.get("/invoices", response_model=BackofficeInvoiceList, responses=errors(*BACKOFFICE))
async def search_invoices(
    _: Reader,
    page: PageDep,
    session: SnapshotDep,
    q: FragmentDep,
    base_url: BaseUrlDep,
    status: InvoiceStatus | None = None,
    merchant_id: Annotated[str | None, Query(max_length=40)] = None,
) -> BackofficeInvoiceList:
    """Every merchant's invoices, newest first. `q` finds fragments of the invoice id, the
    order id, a deposit address, a payment's tx hash or sender address (422
    `search_too_short`, `search_invalid`, `search_too_broad`: see docs/backoffice.md);
    `status` and `merchant_id` narrow. Groups `admin`, `finance`, `support`."""
    data, has_more = await backoffice.search_invoices(
        session, q, page, base_url, status=status, merchant_id=merchant_id
    )
    return BackofficeInvoiceList(data=data, has_more=has_more)


@router.get(
    "/invoices/{invoice_id}",
    response_model=BackofficeInvoice,
    responses=errors(*BACKOFFICE, 404, e404="`invoice_not_found`."),
)
async def get_invoice(
    invoice_id: str, _: Reader, session: SnapshotDep, base_url: BaseUrlDep
) -> BackofficeInvoice:
    """Any merchant's invoice, with its merchant, options, payments and any admin mark."""
    return await backoffice.get_invoice(session, invoice_id, base_url)


class Mark(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500, description="Why; kept in the audit log")


async def _mark(
    invoice_id: str,
    as_: Literal["paid", "invalid"],
    body: Mark,
    actor: AdminActor,
    session: SessionDep,
    base_url: str,
) -> Invoice:
    return await service.mark(
        session, actor, invoice_id, as_=as_, reason=body.reason, base_url=base_url
    )


@router.post("/invoices/{invoice_id}/mark-paid", response_model=Invoice, responses=MARK_ERRORS)
async def mark_paid(
    invoice_id: str, body: Mark, _: Marker, actor: AdminActor, session: SessionDep, base: BaseUrlDep
) -> Invoice:
    """Settle the invoice by hand (the payer paid in a way Nespay does not watch): it becomes
    `confirmed` (`invoice.paid` first if it was not paid), with the reason in the events and
    the audit log, and no payment moves it any more. The ledger is not touched: it follows
    money on chain only (docs/backoffice.md). Groups `admin` and `finance`; 409
    `invoice_not_markable` for a cancelled, confirmed or already marked invoice."""
    return await _mark(invoice_id, "paid", body, actor, session, base)


@router.post("/invoices/{invoice_id}/mark-invalid", response_model=Invoice, responses=MARK_ERRORS)
async def mark_invalid(
    invoice_id: str, body: Mark, _: Marker, actor: AdminActor, session: SessionDep, base: BaseUrlDep
) -> Invoice:
    """Declare the invoice invalid (fraud, a payment that will not come back): `invalid`,
    final, with `invoice.invalid` and the reason. Groups `admin` and `finance`; 409
    `invoice_not_markable` for a cancelled or already marked invoice."""
    return await _mark(invoice_id, "invalid", body, actor, session, base)
