"""`wallets.send`: the sender's pass over every network with unfinished outgoing
transactions, one network at a time under a lease of its own (`app_locks`, name
`wallets.send:<network>`), so replicas share networks and never work one together."""

from __future__ import annotations

import importlib

import httpx
import structlog

from nespay.chains import cursors
from nespay.chains.rpcclient import ChainIdentity, RpcClient, RpcError
from nespay.chains.tron_adapter import TronAdapter
from nespay.jobs.registry import JobFailed
from nespay.jobs.runner import replica_id
from nespay.kit.urls import mask_urls_in
from nespay.runtime import Runtime
from nespay.security.encryption import keyring_from_settings
from nespay.wallets import txstore
from nespay.wallets.privy_signer import PrivySender
from nespay.wallets.sender import NetworkSender, Report
from nespay.wallets.tron_sender import TronNetworkSender

log = structlog.get_logger("nespay.wallets.sender")
LEASE_S = 90.0  # a pass is seconds; a dead replica's network is free again after this
RPC_TIMEOUT_S = 10.0
# Modules that register outcome handlers (`outgoing.on_outcome`) for their purposes; the jobs
# process imports them before sending, so every outcome finds its handler.
HANDLER_MODULES: tuple[str, ...] = ("nespay.withdrawals.tasks", "nespay.sweeps.tasks")


def load_handlers() -> None:
    for name in HANDLER_MODULES:
        importlib.import_module(name)


async def send_transactions(runtime: Runtime) -> str:
    """One pass of the sender over every network that has work (see nespay.wallets.sender)."""
    load_handlers()
    async with runtime.db.engine.connect() as conn:
        networks = await txstore.busy_networks(conn)
    report = Report()
    owner = replica_id()
    async with httpx.AsyncClient(timeout=RPC_TIMEOUT_S, follow_redirects=False) as http:
        privy = PrivySender(runtime.settings, http)
        for network in networks:
            await _one_network(runtime, network, owner, http, privy, report)
    if report.errors and len(report.errors) == len(networks):
        raise JobFailed("; ".join(report.errors))
    return report.summary()


async def _one_network(
    runtime: Runtime,
    network: txstore.SendingNetwork,
    owner: str,
    http: httpx.AsyncClient,
    privy: PrivySender,
    report: Report,
) -> None:
    name = f"wallets.send:{network.code}"
    async with runtime.db.engine.begin() as conn:
        token = await txstore.acquire_lease(conn, name, owner, LEASE_S)
        endpoints = await cursors.endpoints(conn, network.code)
    if token is None:
        return  # another replica is working this network
    try:
        if network.family == "tron":
            tron = TronAdapter(http)
            # Each endpoint's own TRON-PRO-API-KEY, decrypted (never a shared default).
            tron.set_endpoints(cursors.unsealed(endpoints, keyring_from_settings(runtime.settings)))
            tron.rpc.expect(ChainIdentity(network.chain_id, None))
            await TronNetworkSender(runtime, network, tron, privy, report).run()
        else:
            rpc = RpcClient(http, [])
            rpc.set_endpoints(endpoints)
            rpc.expect(ChainIdentity(network.chain_id, None))
            await NetworkSender(runtime, network, rpc, privy, report).run()
    except RpcError as error:
        message = f"{network.code}: {mask_urls_in(str(error))}"
        report.errors.append(message)
        log.warning("sender_rpc_failed", network=network.code, error=message)
    finally:
        async with runtime.db.engine.begin() as conn:
            await txstore.release_lease(conn, name, token)
