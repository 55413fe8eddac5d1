"""Writing events. An event is written in the caller's transaction, so it commits with the
state change it describes; the relay (callbacks issue) publishes what is committed."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from nespay.kit.ids import new_id
from nespay.models import Event
from nespay.requestid import current_request_id


async def emit(
    executor: AsyncSession | AsyncConnection,
    *,
    merchant_id: str,
    type: str,
    subject_id: str,
    data: dict[str, Any],
) -> str:
    event_id = new_id("evt")
    await executor.execute(
        insert(Event).values(
            id=event_id,
            merchant_id=merchant_id,
            type=type,
            subject_id=subject_id,
            data=data,
            request_id=current_request_id(),
        )
    )
    return event_id
