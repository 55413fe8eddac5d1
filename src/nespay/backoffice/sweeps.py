"""Backoffice route on consolidation: the sweeps, newest first (`status=dust`: what is left on
deposit addresses because sweeping it would cost too much)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from nespay.auth.deps import require_admin
from nespay.auth.principals import Principal
from nespay.auth.scopes import ADMIN, FINANCE, SUPPORT
from nespay.db import sql
from nespay.deps import SessionDep
from nespay.kit.addresses import display_stored
from nespay.kit.money import from_base_units
from nespay.kit.pagination import PageDep, fetch_size, split_page
from nespay.sweeps import repository

router = APIRouter(tags=["backoffice: consolidation"])
Reader = Annotated[Principal, Depends(require_admin(ADMIN, FINANCE, SUPPORT))]
SweepStatus = Literal["dust", "funding", "sending", "confirmed", "failed"]


class Sweep(BaseModel):
    id: str
    network: str
    currency: str
    address: str = Field(description="The deposit address swept (EIP-55)")
    treasury_address: str
    amount: str = Field(description="Whole units (decimal string)")
    status: SweepStatus = Field(
        description="dust (not worth its gas: listed, re-judged every pass), funding (gas "
        "top-up on its way), sending, confirmed, failed"
    )
    gas_cost_wei: str | None = Field(description="The gas estimate it was judged by (wei)")
    topup_wei: str | None = Field(description="Gas sent to the address first, if any (wei)")
    topup_tx_id: str | None
    sweep_tx_id: str | None
    reason: str | None = Field(description="Why it is dust, or why it failed")
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class SweepList(BaseModel):
    data: list[Sweep]
    has_more: bool


def _wei(value: object) -> str | None:
    return None if value is None else str(int(value))  # type: ignore[call-overload]


@router.get("/sweeps", response_model=SweepList)
async def list_sweeps(
    _: Reader,
    page: PageDep,
    session: SessionDep,
    status: SweepStatus | None = None,
    network: Annotated[str | None, Query(max_length=32)] = None,
) -> SweepList:
    """Sweeps of deposit addresses into the treasury, newest first. `status=dust` lists the
    funds left where they are because the gas would cost more than
    CONSOLIDATION_MAX_GAS_SHARE_BPS of their value (or could not be priced)."""
    rows = await repository.list_sweeps(
        sql(session),
        status=status,
        network=network,
        starting_after=page.starting_after,
        limit=fetch_size(page.limit),
    )
    rows, has_more = split_page(rows, page.limit)
    data = [
        Sweep(
            id=row["id"],
            network=row["network_code"],
            currency=row["currency"],
            address=display_stored(row["address"]),
            treasury_address=display_stored(row["treasury_address"]),
            amount=from_base_units(int(row["amount"]), row["decimals"]),
            status=row["status"],
            gas_cost_wei=_wei(row["gas_cost_wei"]),
            topup_wei=_wei(row["topup_wei"]),
            topup_tx_id=row["topup_tx_id"],
            sweep_tx_id=row["sweep_tx_id"],
            reason=row["reason"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            finished_at=row["finished_at"],
        )
        for row in rows
    ]
    return SweepList(data=data, has_more=has_more)
