"""Balance routes for merchants: balances per currency, and the transfers behind them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from nespay.auth.deps import require_scopes
from nespay.auth.principals import Principal
from nespay.auth.scopes import BALANCES_READ
from nespay.db import sql
from nespay.deps import SessionDep
from nespay.kit.pagination import PageDep, fetch_size, split_page
from nespay.ledger import repository, views
from nespay.ledger.schemas import BalanceList, BalanceTransactionList

router = APIRouter(tags=["balances"])
Reader = Annotated[Principal, Depends(require_scopes(BALANCES_READ))]


@router.get("/balances", response_model=BalanceList)
async def list_balances(principal: Reader, session: SessionDep) -> BalanceList:
    """Per network and currency the merchant has used: available, pending, held, deficit."""
    rows = await repository.balances(sql(session), principal.merchant_id)
    return BalanceList(data=[views.balance(row) for row in rows])


@router.get("/balance-transactions", response_model=BalanceTransactionList)
async def list_balance_transactions(
    principal: Reader,
    page: PageDep,
    session: SessionDep,
    source_id: Annotated[
        str | None, Query(max_length=40, description="Only those of this payment or withdrawal")
    ] = None,
) -> BalanceTransactionList:
    """Every ledger transfer on the merchant's accounts, newest first, each with its source."""
    rows = await repository.transactions(
        sql(session),
        principal.merchant_id,
        starting_after=page.starting_after,
        source_id=source_id,
        limit=fetch_size(page.limit),
    )
    rows, has_more = split_page(rows, page.limit)
    prefix = f"m:{principal.merchant_id}:"
    return BalanceTransactionList(
        data=[views.transaction(row, prefix) for row in rows], has_more=has_more
    )
