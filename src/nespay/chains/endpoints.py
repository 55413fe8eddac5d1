"""Merchant routes: `GET /networks` and `GET /currencies`, what an invoice can be paid in.

Only enabled networks of a chain family a scanner serves, and their enabled currencies; a
change in the backoffice shows here at the next request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from nespay.auth.deps import require_scopes
from nespay.auth.principals import Principal
from nespay.auth.scopes import INVOICES_READ
from nespay.chains import service
from nespay.chains.schemas import (
    PublicCurrency,
    PublicCurrencyList,
    PublicNetwork,
    PublicNetworkList,
)
from nespay.deps import SessionDep
from nespay.kit.pagination import PageDep, fetch_size, split_page

router = APIRouter(tags=["networks and currencies"])
Reader = Annotated[Principal, Depends(require_scopes(INVOICES_READ))]


@router.get("/networks", response_model=PublicNetworkList)
async def list_networks(_: Reader, page: PageDep, session: SessionDep) -> PublicNetworkList:
    """Enabled networks, by code; `starting_after` is the last code of the previous page."""
    rows = await service.offered_networks(
        session, limit=fetch_size(page.limit), starting_after=page.starting_after
    )
    rows, has_more = split_page(rows, page.limit)
    return PublicNetworkList(
        data=[PublicNetwork.model_validate(row) for row in rows], has_more=has_more
    )


@router.get("/currencies", response_model=PublicCurrencyList)
async def list_currencies(
    _: Reader,
    page: PageDep,
    session: SessionDep,
    network: Annotated[
        str | None, Query(max_length=32, description="Only this network's (code)")
    ] = None,
) -> PublicCurrencyList:
    """Enabled currencies of enabled networks, by network and code, with the confirmations
    each network waits for; `contract` is null for a native coin."""
    rows = await service.offered_currencies(
        session, network=network, limit=fetch_size(page.limit), starting_after=page.starting_after
    )
    rows, has_more = split_page(rows, page.limit)
    return PublicCurrencyList(
        data=[PublicCurrency.model_validate(row, from_attributes=True) for row in rows],
        has_more=has_more,
    )
