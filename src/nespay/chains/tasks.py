"""Jobs of the chains domain."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from nespay.chains import repository, rpc
from nespay.chains.repository import EndpointProbeTarget, ProbeResult
from nespay.models.reference import RPC_API_KEY
from nespay.runtime import Runtime
from nespay.security.encryption import DecryptionError, keyring_from_settings, unseal

log = structlog.get_logger("nespay.chains")
PROBE_TIMEOUT_S = 5.0
PROBE_CONCURRENCY = 10


async def rpc_health(runtime: Runtime) -> str:
    """`chains.rpc_health`: probe every enabled endpoint of every enabled network.

    No transaction is held open across the network calls: read, probe, then write.
    """
    async with runtime.db.session() as session:
        targets = _unsealed(await repository.endpoints_of_enabled_networks(session), runtime)
    async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_S, follow_redirects=False) as client:
        results = await probe_all(client, targets)
    async with runtime.db.session() as session:
        up = await record_results(session, results)
    return f"{up} of {len(results)} endpoints up"


def _unsealed(targets: list[EndpointProbeTarget], runtime: Runtime) -> list[EndpointProbeTarget]:
    """The targets with their API keys decrypted (a Tron endpoint is probed with its key)."""
    keyring = keyring_from_settings(runtime.settings)
    out = []
    for target in targets:
        key = None
        if target.api_key is not None:
            with contextlib.suppress(DecryptionError):
                key = unseal(keyring, RPC_API_KEY, target.id, target.api_key)
        out.append(replace(target, api_key=key))
    return out


async def probe_all(
    client: httpx.AsyncClient, targets: list[EndpointProbeTarget]
) -> list[tuple[EndpointProbeTarget, ProbeResult]]:
    gate = asyncio.Semaphore(PROBE_CONCURRENCY)

    async def one(target: EndpointProbeTarget) -> tuple[EndpointProbeTarget, ProbeResult]:
        async with gate:
            return target, await rpc.probe(client, target)

    return list(await asyncio.gather(*(one(target) for target in targets)))


async def record_results(
    session: AsyncSession, results: list[tuple[EndpointProbeTarget, ProbeResult]]
) -> int:
    for target, result in results:
        await repository.record_probe(session, target.id, result)
        if not result.ok:
            log.warning("rpc_endpoint_down", endpoint_id=target.id, error=result.error)
    return sum(1 for _, result in results if result.ok)
