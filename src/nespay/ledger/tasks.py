"""The ledger's jobs.

- `ledger.reconcile`: every network the ledger has accounts on, compared with the chain
  (`nespay.ledger.reconcile`), each run stored; a network whose node cannot be read is stored
  as an `error` run and the others go on.
- `ledger.invariants`: the ledger's own invariants on the whole ledger
  (`nespay.ledger.invariants`)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import structlog

from nespay import metrics
from nespay.chains import cursors
from nespay.chains.rpcclient import ChainIdentity, RpcClient, RpcError
from nespay.chains.tron_adapter import TronAdapter
from nespay.db import sql
from nespay.jobs.registry import JobFailed
from nespay.kit.ids import new_id
from nespay.kit.urls import mask_urls_in
from nespay.ledger import invariants, reconcile, repository
from nespay.runtime import Runtime
from nespay.security.encryption import keyring_from_settings

log = structlog.get_logger("nespay.ledger")
RPC_TIMEOUT_S = 10.0


async def reconcile_ledger(runtime: Runtime) -> str:
    async with runtime.db.engine.connect() as conn:
        networks = await repository.reconciled_networks(sql(conn))
    outcomes: dict[str, str] = {}
    async with httpx.AsyncClient(timeout=RPC_TIMEOUT_S, follow_redirects=False) as http:
        for network in networks:
            outcomes[network["code"]] = await _one(runtime, http, network)
    failed = [code for code, outcome in outcomes.items() if outcome == "error"]
    if failed and len(failed) == len(outcomes):
        raise JobFailed(f"no network could be read: {', '.join(failed)}")
    return ", ".join(f"{code}: {outcome}" for code, outcome in outcomes.items()) or "nothing to do"


async def _one(runtime: Runtime, http: httpx.AsyncClient, network: dict) -> str:
    code = network["code"]
    async with runtime.db.engine.connect() as conn:
        endpoints = await cursors.endpoints(conn, code)
    chain = chain_balances(runtime, http, network, endpoints)
    block, lines, error = None, [], None
    try:
        async with runtime.db.engine.connect() as conn:
            block, lines = await reconcile.reconcile(
                sql(conn), chain, code, network["confirmations"]
            )
        status = reconcile.status_of(lines)
    except RpcError as failure:
        status, error = "error", mask_urls_in(str(failure))[:500]
        log.warning("reconciliation_failed", network=code, error=error)
    async with runtime.db.engine.begin() as conn:
        await repository.store_run(
            sql(conn), new_id("rec"), code, block, status, orjson.dumps(lines).decode(), error
        )
    differing = [line for line in lines if line["difference"] != "0" or line["addresses"]]
    metrics.reconciliation(code, len(differing))
    if differing:
        log.warning(
            "reconciliation_difference",
            network=code,
            block=block,
            lines=[(line["currency"], line["account"], line["difference"]) for line in differing],
        )
    return status


def chain_balances(
    runtime: Runtime, http: httpx.AsyncClient, network: Any, endpoints: list
) -> reconcile.EvmBalances | reconcile.TronBalances:
    """The network's balance reader, its endpoints checked against its chain id (Tron's
    with their own API keys, decrypted)."""
    identity = ChainIdentity(network["chain_id"], None)
    if network["chain_family"] == "tron":
        tron = TronAdapter(http)
        tron.set_endpoints(cursors.unsealed(endpoints, keyring_from_settings(runtime.settings)))
        tron.rpc.expect(identity)
        return reconcile.TronBalances(tron)
    rpc = RpcClient(http, [])
    rpc.set_endpoints(endpoints)
    rpc.expect(identity)
    return reconcile.EvmBalances(rpc)


INVARIANTS_JOB = "ledger.invariants"
# The start of a run's outcome when it found the ledger wrong (the jobs health check tells it
# from a run that could not check at all).
VIOLATED = "ledger invariants violated: "


async def check_invariants(runtime: Runtime) -> str:
    """The `ledger.invariants` job: `nespay.ledger.invariants.check` on the whole ledger in one
    read-only snapshot; the gauge set per check, a log line per violated check naming what it
    concerns, and a violation recorded as the run's error (so `GET /jobs` and the jobs health
    check show it)."""
    async with (
        runtime.db.driver() as conn,
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        findings = await invariants.check(conn)
    metrics.ledger_invariants(findings.counts())
    for violation in findings.violations.values():
        log.error(
            "ledger.invariant_violated",
            check=violation.check,
            count=violation.total,
            concerned=violation.names(),
            detail=violation.items[:20],
        )
    if not findings.ok:
        raise JobFailed(VIOLATED + findings.summary())
    return findings.summary()
