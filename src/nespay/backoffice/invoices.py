"""Backoffice routes on invoices: an admin marks one paid or invalid, with a reason."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from nespay.auth.deps import AdminActor, require_admin
from nespay.auth.principals import Principal
from nespay.auth.scopes import ADMIN, FINANCE
from nespay.deps import SessionDep
from nespay.invoices import service
from nespay.invoices.schemas import Invoice

router = APIRouter(tags=["backoffice: invoices"])
Marker = Annotated[Principal, Depends(require_admin(ADMIN, FINANCE))]


class Mark(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500, description="Why; kept in the audit log")


async def _mark(
    invoice_id: str,
    as_: Literal["paid", "invalid"],
    body: Mark,
    actor: AdminActor,
    session: SessionDep,
) -> Invoice:
    return await service.mark(session, actor, invoice_id, as_=as_, reason=body.reason)


@router.post("/invoices/{invoice_id}/mark-paid", response_model=Invoice)
async def mark_paid(
    invoice_id: str, body: Mark, _: Marker, actor: AdminActor, session: SessionDep
) -> Invoice:
    """Settle the invoice by hand (the payer paid in a way Nespay does not watch): it becomes
    `confirmed` (`invoice.paid` first if it was not paid), with the reason in the events and
    the audit log, and no payment moves it any more. Groups `admin` and `finance`; 409
    `invoice_not_markable` for a cancelled, confirmed or already marked invoice."""
    return await _mark(invoice_id, "paid", body, actor, session)


@router.post("/invoices/{invoice_id}/mark-invalid", response_model=Invoice)
async def mark_invalid(
    invoice_id: str, body: Mark, _: Marker, actor: AdminActor, session: SessionDep
) -> Invoice:
    """Declare the invoice invalid (fraud, a payment that will not come back): `invalid`,
    final, with `invoice.invalid` and the reason. Groups `admin` and `finance`; 409
    `invoice_not_markable` for a cancelled or already marked invoice."""
    return await _mark(invoice_id, "invalid", body, actor, session)
