"""Webhook endpoints: registration (URL checked, secret made and stored encrypted, shown
once), listing, changes (re-enabling resumes pending deliveries), secret rotation (the previous
secret keeps signing for 24 h), a signed test ping, removal. Deliveries build on these rows."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from nespay.audit.service import record
from nespay.auth.principals import Actor
from nespay.callbacks import messages, repository
from nespay.callbacks.schemas import (
    PingResult,
    SecretRotated,
    WebhookEndpointCreate,
    WebhookEndpointUpdate,
)
from nespay.callbacks.ssrf import check_callback_url
from nespay.config import Settings
from nespay.db import after_commit
from nespay.errors import NotFound
from nespay.kit.ids import new_id
from nespay.kit.pagination import fetch_size, split_page
from nespay.models import WebhookEndpoint
from nespay.models.identity import WEBHOOK_PREVIOUS_SECRET as PREVIOUS_SECRET_COLUMN
from nespay.models.identity import WEBHOOK_SECRET as SECRET_COLUMN
from nespay.security.encryption import keyring_from_settings, seal, unseal

if TYPE_CHECKING:
    from nespay.runtime import Runtime

PREVIOUS_SECRET_VALIDITY = timedelta(hours=24)
TEST_EVENT_TYPE = "webhook.test"
DISABLED_BY_MERCHANT = "Disabled through the API (PATCH enabled=false)."
# What a change is audited with (never the secrets).
AUDITED_FIELDS = ("url", "events", "enabled", "description")


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


async def get(
    session: AsyncSession, merchant_id: str, endpoint_id: str, *, for_update: bool = False
) -> WebhookEndpoint:
    endpoint = await repository.get(session, merchant_id, endpoint_id, for_update=for_update)
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


async def update(
    session: AsyncSession,
    runtime: Runtime,
    merchant_id: str,
    endpoint_id: str,
    actor: Actor,
    body: WebhookEndpointUpdate,
) -> WebhookEndpoint:
    """Change what is sent. Disabling stops deliveries (pending ones wait); enabling clears the
    disabled and failing marks and makes the pending deliveries due at once."""
    endpoint = await get(session, merchant_id, endpoint_id, for_update=True)
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    if "url" in changes:
        changes["url"] = await check_callback_url(changes["url"], runtime.settings)
    before = {name: getattr(endpoint, name) for name in AUDITED_FIELDS}
    resumed = await _set_enabled(session, endpoint, changes.pop("enabled", endpoint.enabled))
    for name, value in changes.items():
        setattr(endpoint, name, value)
    after = {name: getattr(endpoint, name) for name in AUDITED_FIELDS}
    if after != before:
        await session.flush()
        await record(
            session,
            actor,
            "webhook_endpoint.updated",
            target_type="webhook_endpoint",
            target_id=endpoint_id,
            merchant_id=merchant_id,
            before={k: v for k, v in before.items() if after[k] != v},
            after={k: v for k, v in after.items() if before[k] != v},
            detail={"deliveries_resumed": len(resumed)} if resumed else None,
        )
        await session.refresh(endpoint)
    if resumed:
        after_commit(session, lambda: messages.wake(runtime, resumed))
    return endpoint


async def _set_enabled(
    session: AsyncSession, endpoint: WebhookEndpoint, enabled: bool
) -> list[str]:
    """Apply `enabled`; the ids of the pending deliveries a re-enabling made due."""
    if enabled == endpoint.enabled:
        return []
    endpoint.enabled = enabled
    if not enabled:
        endpoint.disabled_at = datetime.now(UTC)
        endpoint.disabled_reason = DISABLED_BY_MERCHANT
        return []
    endpoint.disabled_at = endpoint.disabled_reason = endpoint.failing_since = None
    return await repository.resume_pending(session, endpoint.id)


async def rotate_secret(
    session: AsyncSession, settings: Settings, merchant_id: str, endpoint_id: str, actor: Actor
) -> SecretRotated:
    """A new secret (returned, once); the current one becomes the previous one and keeps
    signing beside it for 24 h. A secret rotated out earlier is dropped at once."""
    endpoint = await get(session, merchant_id, endpoint_id, for_update=True)
    keyring = keyring_from_settings(settings)
    current, secret = signing_secret(settings, endpoint), new_secret()
    expires_at = datetime.now(UTC) + PREVIOUS_SECRET_VALIDITY
    endpoint.previous_secret_encrypted = seal(keyring, PREVIOUS_SECRET_COLUMN, endpoint.id, current)
    endpoint.previous_secret_expires_at = expires_at
    endpoint.secret_encrypted = seal(keyring, SECRET_COLUMN, endpoint.id, secret)
    await session.flush()
    await record(
        session,
        actor,
        "webhook_endpoint.secret_rotated",
        target_type="webhook_endpoint",
        target_id=endpoint_id,
        merchant_id=merchant_id,
        detail={"previous_secret_expires_at": expires_at.isoformat()},
    )
    return SecretRotated(secret=secret, previous_secret_expires_at=expires_at)


async def ping(
    session: AsyncSession, runtime: Runtime, merchant_id: str, endpoint_id: str
) -> PingResult:
    """POST a signed `webhook.test` event to the endpoint now (enabled or not) and report how
    it answered. Nothing is stored."""
    endpoint = await get(session, merchant_id, endpoint_id)
    signer = {
        "url": endpoint.url,
        "endpoint_id": endpoint.id,
        "secret_encrypted": endpoint.secret_encrypted,
        "previous_secret_encrypted": endpoint.previous_secret_encrypted,
        "previous_secret_expires_at": endpoint.previous_secret_expires_at,
    }
    # Nothing was written: end the read transaction so that the pool connection is not held
    # through a POST that may take 10 s.
    await session.rollback()
    now = datetime.now(UTC)
    result = await runtime.callback_sender.post_event(
        **signer,
        now=now,
        event_id=new_id("evt"),
        type=TEST_EVENT_TYPE,
        created_at=now,
        data=json.dumps({"endpoint_id": endpoint_id}, separators=(",", ":")),
    )
    return PingResult(
        success=result.ok,
        status_code=result.status_code,
        latency_ms=result.latency_ms,
        response_excerpt=result.excerpt,
        error=result.error,
    )


async def list_endpoints(
    session: AsyncSession, merchant_id: str, *, limit: int, starting_after: str | None
) -> tuple[Sequence[WebhookEndpoint], bool]:
    rows = await repository.list_for_merchant(
        session, merchant_id, limit=fetch_size(limit), starting_after=starting_after
    )
    return split_page(rows, limit)
