"""Backoffice route on reconciliation: the runs, newest first, with their lines."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from nespay.auth.deps import require_admin
from nespay.auth.principals import Principal
from nespay.auth.scopes import ADMIN, FINANCE, SUPPORT
from nespay.db import sql
from nespay.deps import SessionDep
from nespay.kit.pagination import PageDep, fetch_size, split_page
from nespay.ledger import repository

router = APIRouter(tags=["backoffice: reconciliation"])
Reader = Annotated[Principal, Depends(require_admin(ADMIN, FINANCE, SUPPORT))]


class ReconciliationRun(BaseModel):
    id: str
    network: str
    block_number: int | None
    status: str
    lines: list[dict[str, Any]]
    error: str | None
    created_at: datetime


class ReconciliationRunList(BaseModel):
    data: list[ReconciliationRun]
    has_more: bool


@router.get("/reconciliation-runs", response_model=ReconciliationRunList)
async def list_runs(
    _: Reader,
    page: PageDep,
    session: SessionDep,
    network: Annotated[str | None, Query(max_length=32)] = None,
) -> ReconciliationRunList:
    """Each run compared one network's custody and hot wallets with the chain at one block:
    per currency and account the ledger's amount, the chain's, the difference (base units) and
    the addresses that explain it (`status`: ok, difference, error)."""
    rows = await repository.list_runs(
        sql(session),
        network=network,
        starting_after=page.starting_after,
        limit=fetch_size(page.limit),
    )
    rows, has_more = split_page(rows, page.limit)
    runs = [
        ReconciliationRun(
            id=row["id"],
            network=row["network_code"],
            block_number=row["block_number"],
            status=row["status"],
            lines=row["lines"] if isinstance(row["lines"], list) else orjson.loads(row["lines"]),
            error=row["error"],
            created_at=row["created_at"],
        )
        for row in rows
    ]
    return ReconciliationRunList(data=runs, has_more=has_more)
