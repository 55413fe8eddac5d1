"""Backoffice routes searching every merchant's payments and deposit addresses (read only;
groups `admin`, `finance`, `support`)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from nespay.auth.deps import require_admin
from nespay.auth.principals import Principal
from nespay.auth.scopes import ADMIN, FINANCE, SUPPORT
from nespay.backoffice import service
from nespay.backoffice.schemas import BackofficePaymentList, DepositAddressList
from nespay.deps import SnapshotDep
from nespay.kit.openapi import BACKOFFICE, errors
from nespay.kit.pagination import PageDep
from nespay.kit.search import FragmentDep

router = APIRouter()
Reader = Annotated[Principal, Depends(require_admin(ADMIN, FINANCE, SUPPORT))]
MerchantFilter = Annotated[str | None, Query(max_length=40, description="Only this merchant's")]


@router.get(
    "/payments",
    response_model=BackofficePaymentList,
    responses=errors(*BACKOFFICE),
    tags=["backoffice: payments"],
)
async def search_payments(
    _: Reader,
    page: PageDep,
    session: SnapshotDep,
    q: FragmentDep,
    status: Literal["pending", "confirmed", "orphaned"] | None = None,
    merchant_id: MerchantFilter = None,
    network: Annotated[str | None, Query(max_length=32)] = None,
) -> BackofficePaymentList:
    """Payments seen on chain, newest first. `q` finds fragments of the payment id, the tx
    hash, the sender or the receiving address, or an exact invoice id (422
    `search_too_short`, `search_invalid`, `search_too_broad`); the filters narrow."""
    data, has_more = await service.search_payments(
        session, q, page, status=status, merchant_id=merchant_id, network=network
    )
    return BackofficePaymentList(data=data, has_more=has_more)


@router.get(
    "/addresses",
    response_model=DepositAddressList,
    responses=errors(*BACKOFFICE),
    tags=["backoffice: addresses"],
)
async def search_addresses(
    _: Reader,
    page: PageDep,
    session: SnapshotDep,
    q: FragmentDep,
    chain_family: Literal["evm", "tron"] | None = None,
    merchant_id: MerchantFilter = None,
) -> DepositAddressList:
    """Deposit addresses handed out to invoices, newest first. `q` finds fragments of the
    address, or an exact address id or invoice id; the filters narrow."""
    data, has_more = await service.search_addresses(
        session, q, page, chain_family=chain_family, merchant_id=merchant_id
    )
    return DepositAddressList(data=data, has_more=has_more)
