"""Webhook endpoint routes: register (the secret is shown once), list, get, change, rotate the
secret (the new one shown once), send a test ping, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status

from nespay.auth.deps import MerchantActor, require_scopes
from nespay.auth.principals import Principal
from nespay.auth.scopes import WEBHOOKS_READ, WEBHOOKS_WRITE
from nespay.callbacks import service
from nespay.callbacks.schemas import (
    PingResult,
    SecretRotated,
    WebhookEndpoint,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointList,
    WebhookEndpointUpdate,
)
from nespay.deps import RuntimeDep, SessionDep, SettingsDep
from nespay.kit.pagination import PageDep

router = APIRouter(tags=["webhook endpoints"])
Reader = Annotated[Principal, Depends(require_scopes(WEBHOOKS_READ))]
Writer = Annotated[Principal, Depends(require_scopes(WEBHOOKS_WRITE))]


@router.post(
    "/webhook-endpoints", status_code=status.HTTP_201_CREATED, response_model=WebhookEndpointCreated
)
async def create_endpoint(
    body: WebhookEndpointCreate,
    principal: Writer,
    actor: MerchantActor,
    settings: SettingsDep,
    session: SessionDep,
) -> WebhookEndpointCreated:
    """Register a callback URL; the answer carries its signing secret, once."""
    endpoint, secret = await service.create(
        session,
        settings,
        principal.merchant_id,
        actor,
        body,  # type: ignore[arg-type]
    )
    return WebhookEndpointCreated(
        **WebhookEndpoint.model_validate(endpoint).model_dump(), secret=secret
    )


@router.get("/webhook-endpoints", response_model=WebhookEndpointList)
async def list_endpoints(
    principal: Reader, page: PageDep, session: SessionDep
) -> WebhookEndpointList:
    rows, has_more = await service.list_endpoints(
        session,
        principal.merchant_id,  # type: ignore[arg-type]
        limit=page.limit,
        starting_after=page.starting_after,
    )
    return WebhookEndpointList(
        data=[WebhookEndpoint.model_validate(row) for row in rows], has_more=has_more
    )


@router.get("/webhook-endpoints/{endpoint_id}", response_model=WebhookEndpoint)
async def get_endpoint(endpoint_id: str, principal: Reader, session: SessionDep) -> WebhookEndpoint:
    endpoint = await service.get(session, principal.merchant_id, endpoint_id)  # type: ignore[arg-type]
    return WebhookEndpoint.model_validate(endpoint)


@router.patch("/webhook-endpoints/{endpoint_id}", response_model=WebhookEndpoint)
async def update_endpoint(
    endpoint_id: str,
    body: WebhookEndpointUpdate,
    principal: Writer,
    actor: MerchantActor,
    runtime: RuntimeDep,
    session: SessionDep,
) -> WebhookEndpoint:
    """Change `url`, `events`, `description` or `enabled`. Enabling a disabled endpoint makes
    its pending deliveries due at once."""
    endpoint = await service.update(
        session,
        runtime,
        principal.merchant_id,  # type: ignore[arg-type]
        endpoint_id,
        actor,
        body,
    )
    return WebhookEndpoint.model_validate(endpoint)


@router.post("/webhook-endpoints/{endpoint_id}/rotate-secret", response_model=SecretRotated)
async def rotate_secret(
    endpoint_id: str,
    principal: Writer,
    actor: MerchantActor,
    settings: SettingsDep,
    session: SessionDep,
) -> SecretRotated:
    """A new signing secret, shown once. For 24 h deliveries carry a signature with the
    previous secret too, so receivers can switch without losing a callback."""
    return await service.rotate_secret(
        session,
        settings,
        principal.merchant_id,  # type: ignore[arg-type]
        endpoint_id,
        actor,
    )


@router.post("/webhook-endpoints/{endpoint_id}/test", response_model=PingResult)
async def test_endpoint(
    endpoint_id: str, principal: Writer, runtime: RuntimeDep, session: SessionDep
) -> PingResult:
    """Send a signed `webhook.test` event now and report the answer (not stored, not retried)."""
    return await service.ping(session, runtime, principal.merchant_id, endpoint_id)  # type: ignore[arg-type]


@router.delete("/webhook-endpoints/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_endpoint(
    endpoint_id: str, principal: Writer, actor: MerchantActor, session: SessionDep
) -> None:
    await service.delete(session, principal.merchant_id, endpoint_id, actor)  # type: ignore[arg-type]
