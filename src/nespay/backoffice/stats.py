"""`GET /stats`: platform totals (groups `admin` and `finance`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from nespay.auth.deps import require_admin
from nespay.auth.principals import Principal
from nespay.auth.scopes import ADMIN, FINANCE
from nespay.backoffice import service
from nespay.backoffice.schemas import Stats
from nespay.deps import SnapshotDep
from nespay.kit.openapi import BACKOFFICE, errors

router = APIRouter(tags=["backoffice: stats"])
Finance = Annotated[Principal, Depends(require_admin(ADMIN, FINANCE))]


@router.get("/stats", response_model=Stats, responses=errors(*BACKOFFICE))
async def get_stats(
    _: Finance,
    session: SnapshotDep,
    days: Annotated[int, Query(ge=1, le=366, description="UTC days, today included")] = 30,
) -> Stats:
    """Over the last `days`: confirmed volume per UTC day and currency, invoices created by
    status (and open now), callback deliveries by outcome (and endpoints failing or
    disabled), merchants by status, and each scanned network's head, cursor and lag — one
    snapshot."""
    return await service.stats(session, days)
