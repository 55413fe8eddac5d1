"""`GET /api/v1/jobs` on the jobs process: every job's schedule, last run, outcome, next run,
and each enabled network's RPC state. Operational detail: with `HEALTH_TOKEN` set it needs the
token (admin tokens arrive with the identity issue)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, status

from nespay.audit.service import record
from nespay.auth.deps import AdminActor, require_admin
from nespay.auth.scopes import ADMIN
from nespay.chains import status as scanning
from nespay.deps import RuntimeDep
from nespay.errors import Conflict, NotFound
from nespay.jobs import repository
from nespay.kit.urls import mask_urls_in
from nespay.operator import require_operator

router = APIRouter(tags=["jobs"])


@router.get("/jobs", summary="Jobs and network status", dependencies=[Depends(require_operator)])
async def list_jobs(runtime: RuntimeDep) -> dict[str, Any]:
    """Every job (schedule, last run, outcome, next run); every network that needs a scanner
    (`head`, `cursor`, `lag_blocks`, `last_scan_at`, `last_error` and `failing_since` while
    its scanner fails, who scans it, its RPC endpoints up of total); the callback pipeline's
    backlog."""
    async with runtime.db.engine.connect() as conn:
        jobs = await repository.list_schedules(conn)
        networks = await scanning.network_states(conn)
        callbacks = await repository.callback_backlog(conn)
    return {
        "jobs": [_job_view(job) for job in jobs],
        "networks": [_network_view(state) for state in networks],
        "callbacks": callbacks,
    }


def _network_view(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "code": state["network"],
        "enabled": state["enabled"],
        "head": state["head"],
        "cursor": state["cursor"],
        "lag_blocks": state["lag_blocks"],
        "last_scan_at": state["last_scan_at"],
        "scanned_by": state["scanned_by"] if state["leased"] else None,
        "last_error": _masked(state["last_error"]),
        "failing_since": state["failing_since"],
        "endpoints_up": state["endpoints_up"],
        "endpoints_total": state["endpoints_total"],
    }


def _job_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": row["name"],
        "schedule": row["schedule"],
        "enabled": row["enabled"],
        "running": row["lease_owner"] is not None,
        "running_on": row["lease_owner"],
        "last_started_at": row["last_started_at"],
        "last_finished_at": row["last_finished_at"],
        "last_outcome": _masked(row["last_outcome"]),
        "last_error": _masked(row["last_error"]),
        "last_duration_ms": row["last_duration_ms"],
        "run_count": row["run_count"],
        "next_run_at": row["next_run_at"],
    }


def _masked(text: str | None) -> str | None:
    """Errors and outcomes may quote an RPC URL (a node's message, an HTTP error): never its
    key. Masked where they are made too; this also covers rows written before that."""
    return None if text is None else mask_urls_in(text)


class JobNotFound(NotFound):
    code = "job_not_found"
    message = "No such job; GET /jobs lists them."


class JobDisabled(Conflict):
    code = "job_disabled"
    message = "This job is disabled by its *_JOB_ENABLED setting."


@router.post(
    "/jobs/{name}/run",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Run a job as soon as possible",
    dependencies=[Depends(require_admin(ADMIN))],
)
async def run_job(name: str, runtime: RuntimeDep, actor: AdminActor) -> dict[str, Any]:
    """Makes the job due now: the next tick of whichever jobs replica is free runs it (a run
    already under way is not doubled). Admin group `admin`; audit-logged."""
    async with runtime.db.engine.begin() as conn:
        state = await repository.run_soon(conn, name)
        if state is None:
            raise JobNotFound()
        if not state["enabled"]:
            raise JobDisabled()
        await record(conn, actor, "job.run_requested", target_type="job", target_id=name)
    return {"name": name, "queued": True, "running": state["lease_owner"] is not None}
