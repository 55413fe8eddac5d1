"""Backoffice routes for rates: list every row with its age, set or remove an admin rate.

Reading is open to every admin group; setting and removing need `admin` or `finance`.
Rates travel as decimal strings (`"16250.5"`), never JSON numbers."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from nespay.auth.deps import AdminActor, require_admin
from nespay.auth.principals import Principal
from nespay.auth.scopes import ADMIN, FINANCE, SUPPORT
from nespay.deps import SessionDep, SettingsDep
from nespay.kit.openapi import errors
from nespay.rates import repository, service
from nespay.rates.repository import RateRow
from nespay.rates.sources import ADMIN as ADMIN_SOURCE

rates_router = APIRouter(tags=["backoffice: rates"])
AnyAdmin = Annotated[Principal, Depends(require_admin(ADMIN, FINANCE, SUPPORT))]
RateSetter = Annotated[Principal, Depends(require_admin(ADMIN, FINANCE))]
Code = Annotated[str, Path(min_length=2, max_length=16, pattern=r"^[A-Za-z0-9]+$")]
# 20 digits before the point and 18 after: exactly what NUMERIC(38, 18) stores.
RATE_PATTERN = r"^(0|[1-9][0-9]{0,19})(\.[0-9]{1,18})?$"


class RateOut(BaseModel):
    base: str
    quote: str
    source: str
    rate: str = Field(description="Price of 1 base in quote, as a decimal string")
    fetched_at: datetime
    age_s: int
    fresh: bool = Field(description="Usable now: admin rows always, others until max_age_s")
    updated_by: str | None


class RateList(BaseModel):
    data: list[RateOut]
    sources: list[str] = Field(description="RATES_SOURCES, in order of preference")
    max_age_s: int


class RateUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rate: str = Field(
        pattern=RATE_PATTERN,
        examples=["16250.5"],
        description="Price of 1 base in quote, as a decimal string (> 0, ≤ 18 decimals)",
    )

    @field_validator("rate")
    @classmethod
    def _positive(cls, value: str) -> str:
        if Decimal(value) <= 0:
            raise ValueError("must be greater than 0")
        return value


def _out(row: RateRow, max_age_s: int) -> RateOut:
    return RateOut(
        base=row.base,
        quote=row.quote,
        source=row.source,
        rate=service.format_rate(row.rate),
        fetched_at=row.fetched_at,
        age_s=row.age_s,
        fresh=row.source == ADMIN_SOURCE or row.age_s < max_age_s,
        updated_by=row.updated_by,
    )


@rates_router.get("/rates", response_model=RateList)
async def list_rates(_: AnyAdmin, session: SessionDep, settings: SettingsDep) -> RateList:
    """Every stored rate of every source, with its age."""
    rows = await repository.list_all(session)
    return RateList(
        data=[_out(row, settings.rates_max_age_s) for row in rows],
        sources=settings.rates_sources,
        max_age_s=settings.rates_max_age_s,
    )


@rates_router.put("/rates/{base}/{quote}", response_model=RateOut)
async def set_rate(
    base: Code,
    quote: Code,
    body: RateUpdate,
    _: RateSetter,
    actor: AdminActor,
    session: SessionDep,
    settings: SettingsDep,
) -> RateOut:
    """Set the admin rate for base/quote: an override that never expires and is used
    whenever `admin` comes first in RATES_SOURCES. Audit-logged as `rate.set`."""
    row = await service.set_admin_rate(session, actor, base, quote, Decimal(body.rate))
    return _out(row, settings.rates_max_age_s)


@rates_router.delete("/rates/{base}/{quote}", status_code=204, responses=errors(404))
async def delete_rate(
    base: Code, quote: Code, _: RateSetter, actor: AdminActor, session: SessionDep
) -> Response:
    """Remove the admin rate for base/quote (fetched rates apply again). Audit-logged as
    `rate.delete`."""
    await service.delete_admin_rate(session, actor, base, quote)
    return Response(status_code=204)
