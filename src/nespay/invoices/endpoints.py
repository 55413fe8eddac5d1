"""Invoice routes for merchants, and the payer's public view."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, status

from nespay.auth.deps import require_scopes
from nespay.auth.principals import Principal
from nespay.auth.scopes import INVOICES_READ, INVOICES_WRITE
from nespay.deps import BaseUrlDep, RuntimeDep, SessionDep, SnapshotDep
from nespay.invoices import public, service
from nespay.invoices.schemas import Invoice, InvoiceCreate, InvoiceList, PublicInvoice
from nespay.kit.pagination import PageDep
from nespay.kit.responses import JsonResponse

router = APIRouter(tags=["invoices"])
public_router = APIRouter(tags=["public"])
Reader = Annotated[Principal, Depends(require_scopes(INVOICES_READ))]
Writer = Annotated[Principal, Depends(require_scopes(INVOICES_WRITE))]
Status = Literal[
    "pending", "partially_paid", "paid", "confirmed", "expired", "cancelled", "invalid"
]


@router.post("/invoices", status_code=status.HTTP_201_CREATED, response_model=Invoice)
async def create_invoice(
    body: InvoiceCreate,
    principal: Writer,
    request: Request,
    runtime: RuntimeDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JsonResponse:
    """Create an invoice. With `Idempotency-Key`, the same key and body return the same
    invoice (`Idempotent-Replayed: true`); the same key with another body is a 409."""
    created = await service.create(
        runtime,
        principal.merchant_id,  # type: ignore[arg-type]
        body,
        idempotency_key,
        getattr(request.state, "merchant_settings", None),
    )
    headers = {"Idempotent-Replayed": "true"} if created.replayed else None
    return JsonResponse(created.data, status_code=status.HTTP_201_CREATED, headers=headers)


@router.get("/invoices", response_model=InvoiceList)
async def list_invoices(
    principal: Reader,
    page: PageDep,
    session: SnapshotDep,
    base_url: BaseUrlDep,
    status: Status | None = None,
    order_id: Annotated[str | None, Query(max_length=200)] = None,
    created_gte: datetime | None = None,
    created_lt: datetime | None = None,
) -> InvoiceList:
    data, has_more = await service.list_invoices(
        session,
        principal.merchant_id,  # type: ignore[arg-type]
        limit=page.limit,
        base_url=base_url,
        starting_after=page.starting_after,
        status=status,
        order_id=order_id,
        created_gte=created_gte,
        created_lt=created_lt,
    )
    return InvoiceList(data=data, has_more=has_more)


@router.get("/invoices/{invoice_id}", response_model=Invoice)
async def get_invoice(
    invoice_id: str, principal: Reader, session: SnapshotDep, base_url: BaseUrlDep
) -> Invoice:
    """The invoice with its payment options and payments, read from one snapshot."""
    return await service.get(
        session, invoice_id, merchant_id=principal.merchant_id, base_url=base_url
    )


@router.post("/invoices/{invoice_id}/cancel", response_model=Invoice)
async def cancel_invoice(
    invoice_id: str, principal: Writer, session: SessionDep, base_url: BaseUrlDep
) -> Invoice:
    """Cancel an invoice that has received nothing yet."""
    return await service.cancel(
        session,
        principal.merchant_id,  # type: ignore[arg-type]
        invoice_id,
        base_url=base_url,
    )


@public_router.get("/public/invoices/{invoice_id}", response_model=PublicInvoice)
async def public_invoice(
    invoice_id: str, runtime: RuntimeDep, session: SessionDep
) -> PublicInvoice:
    """What a payer needs: amount due, address, network, token contract, expiry, status."""
    return await public.view(session, runtime, invoice_id)
