"""Withdrawal and refund routes for merchants."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, status

from nespay.auth.deps import MerchantActor, require_scopes
from nespay.auth.principals import Principal
from nespay.auth.scopes import WITHDRAWALS_READ, WITHDRAWALS_WRITE
from nespay.deps import SessionDep, SettingsDep
from nespay.kit.pagination import PageDep
from nespay.kit.responses import JsonResponse
from nespay.withdrawals import service
from nespay.withdrawals.schemas import (
    RefundCreate,
    Status,
    Withdrawal,
    WithdrawalCreate,
    WithdrawalList,
)

router = APIRouter(tags=["withdrawals"])
Reader = Annotated[Principal, Depends(require_scopes(WITHDRAWALS_READ))]
Writer = Annotated[Principal, Depends(require_scopes(WITHDRAWALS_WRITE))]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


def _answer(requested: service.Requested) -> JsonResponse:
    headers = {"Idempotent-Replayed": "true"} if requested.replayed else None
    return JsonResponse(
        requested.withdrawal.model_dump(mode="json"),
        status_code=status.HTTP_201_CREATED,
        headers=headers,
    )


@router.post("/withdrawals", status_code=status.HTTP_201_CREATED, response_model=Withdrawal)
async def create_withdrawal(
    body: WithdrawalCreate,
    principal: Writer,
    actor: MerchantActor,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> JsonResponse:
    """Send part of the balance to an external address. The amount is held at once (422
    `insufficient_balance` when the available balance does not cover it). Above the
    merchant's approval threshold (USD) it waits in `pending_approval` for an admin; else it
    starts `approved` and the jobs process sends it. With `Idempotency-Key`, the same key and
    body return the same withdrawal; another body with the key is a 409."""
    return _answer(
        await service.request(session, settings, principal, actor, body, idempotency_key)
    )


@router.post(
    "/invoices/{invoice_id}/refunds", status_code=status.HTTP_201_CREATED, response_model=Withdrawal
)
async def create_refund(
    invoice_id: str,
    body: RefundCreate,
    principal: Writer,
    actor: MerchantActor,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> JsonResponse:
    """Refund up to what the invoice received in confirmed payments (less earlier refunds),
    to the address given, from the merchant's balance: a withdrawal of kind `refund`, held,
    approved and sent like any other. An overpayment can be refunded alone."""
    return _answer(
        await service.refund(session, settings, principal, actor, invoice_id, body, idempotency_key)
    )


@router.get("/withdrawals", response_model=WithdrawalList)
async def list_withdrawals(
    principal: Reader,
    page: PageDep,
    session: SessionDep,
    status: Status | None = None,
    invoice_id: Annotated[str | None, Query(max_length=40, description="Refunds of it")] = None,
) -> WithdrawalList:
    """Newest first."""
    data, has_more = await service.list_withdrawals(
        session,
        merchant_id=principal.merchant_id,
        status=status,
        invoice_id=invoice_id,
        starting_after=page.starting_after,
        limit=page.limit,
    )
    return WithdrawalList(data=data, has_more=has_more)


@router.get("/withdrawals/{withdrawal_id}", response_model=Withdrawal)
async def get_withdrawal(withdrawal_id: str, principal: Reader, session: SessionDep) -> Withdrawal:
    return await service.get(session, withdrawal_id, principal.merchant_id)


@router.post("/withdrawals/{withdrawal_id}/cancel", response_model=Withdrawal)
async def cancel_withdrawal(
    withdrawal_id: str, principal: Writer, actor: MerchantActor, session: SessionDep
) -> Withdrawal:
    """Cancel a withdrawal still waiting for approval; its hold is released. 409
    `withdrawal_not_changeable` once it was approved (it may already be signed)."""
    return await service.cancel(
        session,
        actor,
        principal.merchant_id,
        withdrawal_id,  # type: ignore[arg-type]
    )
