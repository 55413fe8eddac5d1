"""Backoffice routes for the event log: any merchant's events, their deliveries, redelivery.

The same services as the merchant routes, without the merchant scoping. Admins and support
may use them; a redelivery is audit-logged with the admin as actor."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from nespay.auth.deps import AdminActor, require_admin
from nespay.auth.principals import Principal
from nespay.auth.scopes import ADMIN, SUPPORT
from nespay.deps import RuntimeDep, SessionDep
from nespay.events import service
from nespay.events.endpoints import FiltersDep
from nespay.events.schemas import (
    BackofficeEvent,
    BackofficeEventDetail,
    BackofficeEventList,
    DeliveryList,
    Redeliver,
)
from nespay.kit.openapi import errors
from nespay.kit.pagination import PageDep

router = APIRouter(tags=["backoffice: events"])
Support = Annotated[Principal, Depends(require_admin(ADMIN, SUPPORT))]


@router.get("/events", response_model=BackofficeEventList)
async def list_events(
    _: Support,
    page: PageDep,
    session: SessionDep,
    filters: FiltersDep,
    merchant_id: Annotated[str | None, Query(max_length=40)] = None,
) -> BackofficeEventList:
    """Newest first, every merchant's unless `merchant_id` is given; filters combine."""
    rows, has_more = await service.list_events(
        session, merchant_id=merchant_id, filters=filters, page=page
    )
    return BackofficeEventList(
        data=[BackofficeEvent.model_validate(row) for row in rows], has_more=has_more
    )


@router.get("/events/{event_id}", response_model=BackofficeEventDetail, responses=errors(404))
async def get_event(event_id: str, _: Support, session: SessionDep) -> BackofficeEventDetail:
    event, counts = await service.get_with_counts(session, event_id, merchant_id=None)
    return BackofficeEventDetail(
        **BackofficeEvent.model_validate(event).model_dump(), deliveries=counts
    )


@router.get("/events/{event_id}/deliveries", response_model=DeliveryList, responses=errors(404))
async def list_deliveries(event_id: str, _: Support, session: SessionDep) -> DeliveryList:
    return DeliveryList(data=await service.list_deliveries(session, event_id, merchant_id=None))


@router.post(
    "/events/{event_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryList,
    responses=errors(404, 409),
)
async def redeliver(
    event_id: str,
    _: Support,
    actor: AdminActor,
    runtime: RuntimeDep,
    session: SessionDep,
    body: Redeliver | None = None,
) -> DeliveryList:
    """As the merchant's own redelivery: to `endpoint_id` (one of the event's merchant's), or
    to every enabled endpoint of that merchant subscribed to the event type."""
    deliveries = await service.redeliver(
        session, runtime, event_id, actor, merchant_id=None, body=body
    )
    return DeliveryList(data=deliveries)
