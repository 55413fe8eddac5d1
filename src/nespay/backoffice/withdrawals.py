"""Backoffice routes on withdrawals: list them, approve or reject those waiting."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from nespay.auth.deps import AdminActor, require_admin
from nespay.auth.principals import Principal
from nespay.auth.scopes import ADMIN, FINANCE, SUPPORT
from nespay.deps import SessionDep
from nespay.kit.openapi import errors
from nespay.kit.pagination import PageDep
from nespay.withdrawals import service
from nespay.withdrawals.schemas import Decision, Status, Withdrawal, WithdrawalList

router = APIRouter(tags=["backoffice: withdrawals"])
Reader = Annotated[Principal, Depends(require_admin(ADMIN, FINANCE, SUPPORT))]
Approver = Annotated[Principal, Depends(require_admin(ADMIN, FINANCE))]


@router.get("/withdrawals", response_model=WithdrawalList)
async def list_withdrawals(
    _: Reader,
    page: PageDep,
    session: SessionDep,
    status: Status | None = None,
    merchant_id: Annotated[str | None, Query(max_length=40)] = None,
) -> WithdrawalList:
    """Every merchant's withdrawals and refunds, newest first (`status=pending_approval`: the
    approval queue)."""
    data, has_more = await service.list_withdrawals(
        session,
        merchant_id=merchant_id,
        status=status,
        invoice_id=None,
        starting_after=page.starting_after,
        limit=page.limit,
    )
    return WithdrawalList(data=data, has_more=has_more)


@router.post(
    "/withdrawals/{withdrawal_id}/approve", response_model=Withdrawal, responses=errors(404, 409)
)
async def approve(
    withdrawal_id: str, body: Decision, principal: Approver, actor: AdminActor, session: SessionDep
) -> Withdrawal:
    """Approve a withdrawal waiting for approval: the jobs process sends it. Groups `admin`
    and `finance`; 403 `own_withdrawal` for one's own request; 409 `withdrawal_not_changeable`
    unless it is `pending_approval`."""
    return await service.decide(
        session, principal, actor, withdrawal_id, approve=True, reason=body.reason
    )


@router.post(
    "/withdrawals/{withdrawal_id}/reject", response_model=Withdrawal, responses=errors(404, 409)
)
async def reject(
    withdrawal_id: str, body: Decision, principal: Approver, actor: AdminActor, session: SessionDep
) -> Withdrawal:
    """Reject a withdrawal waiting for approval: its hold is released. Same rules as approve."""
    return await service.decide(
        session, principal, actor, withdrawal_id, approve=False, reason=body.reason
    )
