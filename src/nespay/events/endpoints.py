"""Event routes for merchants: the event log, each event's deliveries, redelivery."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from nespay.auth.deps import MerchantActor, require_scopes
from nespay.auth.principals import Principal
from nespay.auth.scopes import EVENTS_READ, WEBHOOKS_WRITE
from nespay.deps import RuntimeDep, SessionDep
from nespay.events import service
from nespay.events.schemas import (
    DeliveryList,
    Event,
    EventDetail,
    EventFilters,
    EventList,
    Redeliver,
)
from nespay.kit.pagination import PageDep

router = APIRouter(tags=["events"])
Reader = Annotated[Principal, Depends(require_scopes(EVENTS_READ))]
Writer = Annotated[Principal, Depends(require_scopes(WEBHOOKS_WRITE))]


async def event_filters(
    type: Annotated[str | None, Query(max_length=40, description="Only this event type")] = None,
    subject_id: Annotated[
        str | None, Query(max_length=40, description="Only events about this object (inv_…)")
    ] = None,
    created_gte: datetime | None = None,
    created_lte: datetime | None = None,
) -> EventFilters:
    return EventFilters(type, subject_id, created_gte, created_lte)


FiltersDep = Annotated[EventFilters, Depends(event_filters)]


@router.get("/events", response_model=EventList)
async def list_events(
    principal: Reader, filters: FiltersDep, page: PageDep, session: SessionDep
) -> EventList:
    """Newest first; filters combine; `starting_after` is the last id of the previous page."""
    rows, has_more = await service.list_events(
        session, merchant_id=principal.merchant_id, filters=filters, page=page
    )
    return EventList(data=[Event.model_validate(row) for row in rows], has_more=has_more)


@router.get("/events/{event_id}", response_model=EventDetail)
async def get_event(event_id: str, principal: Reader, session: SessionDep) -> EventDetail:
    """The event, with how many of its deliveries are pending, succeeded and failed."""
    event, counts = await service.get_with_counts(
        session, event_id, merchant_id=principal.merchant_id
    )
    return EventDetail(**Event.model_validate(event).model_dump(), deliveries=counts)


@router.get("/events/{event_id}/deliveries", response_model=DeliveryList)
async def list_deliveries(event_id: str, principal: Reader, session: SessionDep) -> DeliveryList:
    """One delivery per endpoint, each with its attempts (newest first)."""
    deliveries = await service.list_deliveries(session, event_id, merchant_id=principal.merchant_id)
    return DeliveryList(data=deliveries)


@router.post(
    "/events/{event_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryList,
)
async def redeliver(
    event_id: str,
    principal: Writer,
    actor: MerchantActor,
    runtime: RuntimeDep,
    session: SessionDep,
    body: Redeliver | None = None,
) -> DeliveryList:
    """Send the event again now: to `endpoint_id`, or to every enabled endpoint subscribed to
    its type. The deliveries answered are pending; follow them on `GET …/deliveries`."""
    deliveries = await service.redeliver(
        session, runtime, event_id, actor, merchant_id=principal.merchant_id, body=body
    )
    return DeliveryList(data=deliveries)
