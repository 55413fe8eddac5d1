"""Webhook endpoints: registration (URL checked, secret made and stored encrypted, shown
once), listing, removal. Deliveries, retries and secret rotation build on these rows."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from nespay.audit.service import record
from nespay.auth.principals import Actor
from nespay.callbacks import repository
from nespay.callbacks.schemas import WebhookEndpointCreate
from nespay.callbacks.ssrf import check_callback_url
from nespay.config import Settings
from nespay.errors import NotFound
from nespay.kit.ids import new_id
from nespay.models import WebhookEndpoint
from nespay.models.identity import WEBHOOK_SECRET as SECRET_COLUMN
from nespay.security.encryption import keyring_from_settings, seal, unseal


class WebhookEndpointNotFound(NotFound):
    code = "webhook_endpoint_not_found"
    message = "No such webhook endpoint."


def new_secret() -> str:
    """Standard Webhooks' form: `whsec_` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


async def create(
    session: AsyncSession,
    settings: Settings,
    merchant_id: str,
    actor: Actor,
    body: WebhookEndpointCreate,
) -> tuple[WebhookEndpoint, str]:
    url = await check_callback_url(body.url, settings)
    endpoint_id, secret = new_id("we"), new_secret()
    endpoint = WebhookEndpoint(
        id=endpoint_id,
        merchant_id=merchant_id,
        url=url,
        events=body.events,
        description=body.description,
        secret_encrypted=seal(keyring_from_settings(settings), SECRET_COLUMN, endpoint_id, secret),
    )
    session.add(endpoint)
    await session.flush()
    await session.refresh(endpoint)
    await record(
        session,
        actor,
        "webhook_endpoint.created",
        target_type="webhook_endpoint",
        target_id=endpoint_id,
        merchant_id=merchant_id,
        after={"url": url, "events": body.events},
    )
    return endpoint, secret


def signing_secret(settings: Settings, endpoint: WebhookEndpoint) -> str:
    return unseal(
        keyring_from_settings(settings), SECRET_COLUMN, endpoint.id, endpoint.secret_encrypted
    )


async def get(session: AsyncSession, merchant_id: str, endpoint_id: str) -> WebhookEndpoint:
    endpoint = await repository.get(session, merchant_id, endpoint_id)
    if endpoint is None:
        raise WebhookEndpointNotFound()
    return endpoint


async def delete(session: AsyncSession, merchant_id: str, endpoint_id: str, actor: Actor) -> None:
    endpoint = await get(session, merchant_id, endpoint_id)
    await session.delete(endpoint)
    await record(
        session,
        actor,
        "webhook_endpoint.deleted",
        target_type="webhook_endpoint",
        target_id=endpoint_id,
        merchant_id=merchant_id,
        before={"url": endpoint.url, "events": endpoint.events},
    )


async def list_endpoints(
    session: AsyncSession, merchant_id: str, *, limit: int, starting_after: str | None
) -> tuple[Sequence[WebhookEndpoint], bool]:
    rows = await repository.list_for_merchant(
        session, merchant_id, limit=limit + 1, starting_after=starting_after
    )
    return rows[:limit], len(rows) > limit
