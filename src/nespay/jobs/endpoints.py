"""`GET /api/v1/jobs` on the jobs process: every job's schedule, last run, outcome, next run,
and each enabled network's RPC state. Operational detail: with `HEALTH_TOKEN` set it needs the
token (admin tokens arrive with the identity issue)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, status

from nespay.auth.deps import AdminActor, require_admin
from nespay.auth.scopes import ADMIN
from nespay.deps import SessionDep
from nespay.jobs import service
from nespay.operator import require_operator

router = APIRouter(tags=["jobs"])


@router.get("/jobs", summary="Jobs and network status", dependencies=[Depends(require_operator)])
async def list_jobs(session: SessionDep) -> dict[str, Any]:
    """Every job (schedule, last run, outcome, next run); every network that needs a scanner
    (`head`, `cursor`, `lag_blocks`, `last_scan_at`, `last_error` and `failing_since` while
    its scanner fails, who scans it, its RPC endpoints up of total); the callback pipeline's
    backlog. Errors and outcomes show URLs with their keys masked."""
    return await service.overview(session)


@router.post(
    "/jobs/{name}/run",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Run a job as soon as possible",
    dependencies=[Depends(require_admin(ADMIN))],
)
async def run_job(name: str, session: SessionDep, actor: AdminActor) -> dict[str, Any]:
    """Makes the job due now: the next tick of whichever jobs replica is free runs it (a run
    already under way is not doubled). Admin group `admin`; audit-logged."""
    return await service.request_run(session, actor, name)
