"""Backoffice routes of this stage: merchants (search, suspend, settings) and the audit log.

Each route names the admin groups (`cognito:groups`) that may use it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from nespay.audit import service as audit
from nespay.audit.schemas import AuditEntry, AuditEntryList
from nespay.auth.deps import AdminActor, require_admin
from nespay.auth.principals import Principal
from nespay.auth.scopes import ADMIN, FINANCE, SUPPORT
from nespay.deps import SessionDep
from nespay.errors import NespayError
from nespay.kit.openapi import BACKOFFICE, errors
from nespay.kit.pagination import PageDep, fetch_size, split_page
from nespay.kit.search import FragmentDep
from nespay.merchants import service as merchants
from nespay.merchants.schemas import Merchant, MerchantSettingsUpdate

router = APIRouter()
AnyAdmin = Annotated[Principal, Depends(require_admin(ADMIN, FINANCE, SUPPORT))]
AdminOnly = Annotated[Principal, Depends(require_admin(ADMIN))]


class MerchantList(BaseModel):
    data: list[Merchant]
    has_more: bool


class MerchantAdminUpdate(MerchantSettingsUpdate):
    model_config = ConfigDict(extra="forbid")

    status: Literal["active", "suspended"] | None = None
    reason: str | None = Field(None, min_length=1, max_length=500)


class ReasonRequired(NespayError):
    status_code = 422
    code = "reason_required"
    message = "Suspending a merchant needs a `reason`."


@router.get(
    "/merchants",
    response_model=MerchantList,
    responses=errors(*BACKOFFICE),
    tags=["backoffice: merchants"],
)
async def search_merchants(
    _: AnyAdmin,
    page: PageDep,
    session: SessionDep,
    q: FragmentDep,
    status: Literal["active", "suspended"] | None = None,
) -> MerchantList:
    """Newest first; `q` finds fragments of the name or email, or the exact id (the rules
    of every backoffice search: docs/backoffice.md)."""
    rows = await merchants.search(
        session, q, status=status, limit=fetch_size(page.limit), starting_after=page.starting_after
    )
    rows, has_more = split_page(rows, page.limit)
    return MerchantList(data=[Merchant.model_validate(row) for row in rows], has_more=has_more)


@router.patch(
    "/merchants/{merchant_id}",
    response_model=Merchant,
    tags=["backoffice: merchants"],
    responses=errors(404, 409),
)
async def update_merchant(
    merchant_id: str,
    body: MerchantAdminUpdate,
    _: AdminOnly,
    actor: AdminActor,
    session: SessionDep,
) -> Merchant:
    """Suspend or reactivate (with a reason), or change a merchant's settings."""
    if body.status == "suspended" and not body.reason:
        raise ReasonRequired()
    settings = MerchantSettingsUpdate(
        **body.model_dump(exclude={"status", "reason"}, exclude_unset=True)
    )
    merchant = await merchants.update_settings(session, merchant_id, actor, settings)
    if body.status is not None and body.status != merchant.status:
        merchant = await merchants.set_status(session, merchant_id, actor, body.status, body.reason)
    return Merchant.model_validate(merchant)


@router.get("/audit-logs", response_model=AuditEntryList, tags=["backoffice: audit"])
async def list_audit_logs(
    _: AdminOnly,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    starting_after: Annotated[int | None, Query(ge=1)] = None,
    merchant_id: Annotated[str | None, Query(max_length=40)] = None,
    actor_id: Annotated[str | None, Query(max_length=100)] = None,
    action: Annotated[str | None, Query(max_length=60)] = None,
    target_id: Annotated[str | None, Query(max_length=100)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> AuditEntryList:
    """Newest first. Filters combine; `starting_after` is the last id of the previous page."""
    rows = await audit.list_entries(
        session,
        limit=fetch_size(limit),
        starting_after=starting_after,
        merchant_id=merchant_id,
        actor_id=actor_id,
        action=action,
        target_id=target_id,
        since=since,
        until=until,
    )
    rows, has_more = split_page(rows, limit)
    return AuditEntryList(data=[AuditEntry.model_validate(row) for row in rows], has_more=has_more)
