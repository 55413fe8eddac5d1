"""`consolidation.sweep`: one consolidation pass over every EVM and Tron network holding
deposit funds, one network at a time under a lease of its own (`app_locks`,
`consolidation:<network>`), so replicas never plan the same addresses. Importing this module
registers the sweeps' outcome handlers with the sender (`nespay.wallets.tasks.HANDLER_MODULES`)."""

from __future__ import annotations

import httpx
import structlog

from nespay.chains import cursors
from nespay.chains.rpcclient import RpcError
from nespay.db import sql
from nespay.jobs.registry import JobFailed
from nespay.jobs.runner import replica_id
from nespay.kit.urls import mask_urls_in
from nespay.ledger.reconcile import TronBalances
from nespay.ledger.tasks import chain_balances
from nespay.runtime import Runtime
from nespay.sweeps import repository, service
from nespay.wallets import outgoing, txstore

log = structlog.get_logger("nespay.sweeps")
LEASE_S = 300.0
RPC_TIMEOUT_S = 10.0

outgoing.on_outcome(
    service.PURPOSE_TOPUP, confirmed=service.topup_confirmed, failed=service.topup_failed
)
outgoing.on_outcome(
    service.PURPOSE_SWEEP, confirmed=service.sweep_confirmed, failed=service.sweep_failed
)


async def consolidate(runtime: Runtime) -> str:
    async with runtime.db.engine.connect() as conn:
        networks = await repository.networks(sql(conn))
    outcomes: dict[str, str] = {}
    errors: list[str] = []
    owner = replica_id()
    async with httpx.AsyncClient(timeout=RPC_TIMEOUT_S, follow_redirects=False) as http:
        for network in networks:
            code = network["code"]
            name = f"consolidation:{code}"
            async with runtime.db.engine.begin() as conn:
                token = await txstore.acquire_lease(conn, name, owner, LEASE_S)
                endpoints = await cursors.endpoints(conn, code)
            if token is None:
                continue  # another replica is sweeping this network
            report = service.Report()
            try:
                chain = chain_balances(runtime, http, network, endpoints)
                if isinstance(chain, TronBalances):
                    pass_ = service.TronConsolidation(runtime, network, chain.tron, report)
                else:
                    pass_ = service.NetworkConsolidation(runtime, network, chain.rpc, report)
                await pass_.run()
                outcomes[code] = report.summary()
            except RpcError as error:
                message = f"{code}: {mask_urls_in(str(error))}"
                errors.append(message)
                outcomes[code] = "node unreadable"
                log.warning("consolidation_rpc_failed", network=code, error=message)
            finally:
                async with runtime.db.engine.begin() as conn:
                    await txstore.release_lease(conn, name, token)
    if errors and len(errors) == len(networks):
        raise JobFailed("; ".join(errors))
    return "; ".join(f"{code}: {text}" for code, text in outcomes.items()) or "nothing to sweep"
