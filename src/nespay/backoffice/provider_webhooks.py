"""Backoffice routes for the provider inbox: list stored webhooks, replay one.

Admins and support read; only admins replay (it makes a handler run again). A replay is
audit-logged with the admin as actor."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, status

from nespay.auth.deps import AdminActor, require_admin
from nespay.auth.principals import Principal
from nespay.auth.scopes import ADMIN, SUPPORT
from nespay.deps import RuntimeDep, SessionDep
from nespay.inbox import service
from nespay.inbox.schemas import ProviderWebhook, ProviderWebhookList
from nespay.kit.openapi import BACKOFFICE, errors
from nespay.kit.pagination import PageDep

router = APIRouter(tags=["backoffice: provider webhooks"])
Support = Annotated[Principal, Depends(require_admin(ADMIN, SUPPORT))]
AdminOnly = Annotated[Principal, Depends(require_admin(ADMIN))]


@router.get(
    "/provider-webhooks",
    response_model=ProviderWebhookList,
    responses={
        200: {"description": "Stored provider webhooks, newest first."},
        **errors(*BACKOFFICE, e403="`admin_role_missing`: not in the admin or support group."),
    },
)
async def list_provider_webhooks(
    _: Support,
    page: PageDep,
    session: SessionDep,
    provider: Literal["rain", "intrajasa", "privy"] | None = None,
    webhook_status: Annotated[
        Literal["pending", "handled", "ignored", "dead"] | None, Query(alias="status")
    ] = None,
    event_type: Annotated[str | None, Query(max_length=100)] = None,
) -> ProviderWebhookList:
    """Newest first; `provider`, `status`, `event_type` combine; `?limit=&starting_after=`.
    `status=dead` lists what needs an operator (docs/webhooks.md)."""
    rows, has_more = await service.list_webhooks(
        session,
        provider=provider,
        status=webhook_status,
        event_type=event_type,
        limit=page.limit,
        starting_after=page.starting_after,
    )
    return ProviderWebhookList(data=rows, has_more=has_more)


@router.post(
    "/provider-webhooks/{webhook_id}/replay",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ProviderWebhook,
    responses={
        202: {"description": "Pending again, due now; the webhook process handles it shortly."},
        **errors(
            *BACKOFFICE,
            404,
            e403="`admin_role_missing`: not in the admin group.",
            e404="`provider_webhook_not_found`.",
        ),
    },
)
async def replay_provider_webhook(
    webhook_id: str,
    _: AdminOnly,
    actor: AdminActor,
    runtime: RuntimeDep,
    session: SessionDep,
) -> ProviderWebhook:
    """Queue a stored webhook for handling again, whatever its status (`dead`, `handled`,
    `ignored`, `pending`), with a fresh count of tries. Audit-logged
    (`provider_webhook.replayed`)."""
    return await service.replay(session, runtime, webhook_id, actor)
