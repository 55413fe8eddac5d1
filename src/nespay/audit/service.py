"""Writing the audit log.

`record` writes in the caller's transaction, so the entry commits (or not) with the action it
describes. `record_security_event` writes in its own transaction, for events whose request
fails (a refused sign-in rolls back the request's session but must still be logged).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from nespay.audit import repository
from nespay.auth.principals import Actor


def _values(
    actor: Actor,
    action: str,
    *,
    target_type: str | None,
    target_id: str | None,
    merchant_id: str | None,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    detail: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "actor_type": actor.type,
        "actor_id": actor.id,
        "merchant_id": merchant_id if merchant_id is not None else actor.merchant_id,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "ip": actor.ip,
        "request_id": actor.request_id,
        "before": before,
        "after": after,
        "detail": detail,
    }


async def record(
    session: AsyncSession | AsyncConnection,
    actor: Actor,
    action: str,
    *,
    target_type: str | None = None,
    target_id: str | None = None,
    merchant_id: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    await repository.insert_entry(
        session,
        _values(
            actor,
            action,
            target_type=target_type,
            target_id=target_id,
            merchant_id=merchant_id,
            before=before,
            after=after,
            detail=detail,
        ),
    )


async def record_security_event(
    engine: AsyncEngine, actor: Actor, action: str, *, detail: dict[str, Any] | None = None
) -> None:
    async with engine.begin() as conn:
        await repository.insert_entry(
            conn,
            _values(
                actor,
                action,
                target_type=None,
                target_id=None,
                merchant_id=None,
                before=None,
                after=None,
                detail=detail,
            ),
        )


async def list_entries(session: AsyncSession, *, limit: int, **filters: Any) -> Sequence[Any]:
    """Newest first, filtered (see `repository.list_entries`)."""
    return await repository.list_entries(session, limit=limit, **filters)
