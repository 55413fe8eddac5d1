"""All SQL of the chains domain's reference data."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from nespay.models import Network, RpcEndpoint


@dataclass(frozen=True)
class EndpointProbeTarget:
    id: str
    url: str
    chain_family: str
    chain_id: int | None


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    latency_ms: int
    head_block: int | None = None
    error: str | None = None


async def endpoints_of_enabled_networks(session: AsyncSession) -> list[EndpointProbeTarget]:
    rows = await session.execute(
        select(RpcEndpoint.id, RpcEndpoint.url, Network.chain_family, Network.chain_id)
        .join(Network, Network.code == RpcEndpoint.network_code)
        .where(Network.enabled, RpcEndpoint.enabled)
        .order_by(RpcEndpoint.network_code, RpcEndpoint.priority)
    )
    return [EndpointProbeTarget(*row) for row in rows]


async def record_probe(session: AsyncSession, endpoint_id: str, result: ProbeResult) -> None:
    await session.execute(
        update(RpcEndpoint)
        .where(RpcEndpoint.id == endpoint_id)
        .values(
            status="up" if result.ok else "down",
            last_checked_at=func.now(),
            latency_ms=result.latency_ms,
            head_block=result.head_block if result.ok else RpcEndpoint.head_block,
            consecutive_failures=0 if result.ok else RpcEndpoint.consecutive_failures + 1,
            last_error=None if result.ok else (result.error or "unknown error")[:500],
        )
    )


async def list_networks(session: AsyncSession) -> Sequence[Network]:
    return (await session.scalars(select(Network).order_by(Network.code))).all()
