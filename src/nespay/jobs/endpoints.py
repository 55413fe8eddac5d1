"""`GET /api/v1/jobs` on the jobs process: every job's schedule, last run, outcome, next run,
and each enabled network's RPC state. Operational detail: with `HEALTH_TOKEN` set it needs the
token (admin tokens arrive with the identity issue)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, status
from sqlalchemy import text

from nespay.audit.service import record
from nespay.auth.deps import AdminActor, require_admin
from nespay.auth.scopes import ADMIN
from nespay.deps import RuntimeDep
from nespay.errors import Conflict, NotFound
from nespay.jobs import repository
from nespay.operator import require_operator

router = APIRouter(tags=["jobs"])

_NETWORKS = text(
    """
    SELECT n.code, max(e.head_block) FILTER (WHERE e.status = 'up') AS head,
           count(*) FILTER (WHERE e.status = 'up') AS endpoints_up,
           count(e.id) AS endpoints_total
    FROM networks n LEFT JOIN rpc_endpoints e ON e.network_code = n.code AND e.enabled
    WHERE n.enabled GROUP BY n.code ORDER BY n.code
    """
)


# The callback pipeline at a glance: a growing backlog means the relay or the workers are
# behind (or RabbitMQ is away); failed deliveries wait for a merchant's redelivery.
_CALLBACKS = text(
    """
    SELECT (SELECT count(*) FROM events WHERE published_at IS NULL) AS events_unpublished,
           (SELECT min(created_at) FROM events WHERE published_at IS NULL) AS oldest_unpublished_at,
           (SELECT count(*) FROM webhook_deliveries WHERE status = 'pending') AS deliveries_pending,
           (SELECT count(*) FROM webhook_deliveries
            WHERE status = 'pending' AND next_attempt_at <= now()) AS deliveries_due,
           (SELECT count(*) FROM webhook_deliveries
            WHERE status = 'failed' AND failed_at > now() - interval '1 day') AS failed_last_day,
           (SELECT count(*) FROM webhook_endpoints WHERE disabled_at IS NOT NULL
            AND NOT enabled) AS endpoints_disabled
    """
)


@router.get("/jobs", summary="Jobs and network status", dependencies=[Depends(require_operator)])
async def list_jobs(runtime: RuntimeDep) -> dict[str, Any]:
    async with runtime.db.engine.connect() as conn:
        jobs = await repository.list_schedules(conn)
        networks = [dict(row._mapping) for row in await conn.execute(_NETWORKS)]
        callbacks = dict((await conn.execute(_CALLBACKS)).one()._mapping)
    return {"jobs": [_job_view(job) for job in jobs], "networks": networks, "callbacks": callbacks}


def _job_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": row["name"],
        "schedule": row["schedule"],
        "enabled": row["enabled"],
        "running": row["lease_owner"] is not None,
        "running_on": row["lease_owner"],
        "last_started_at": row["last_started_at"],
        "last_finished_at": row["last_finished_at"],
        "last_outcome": row["last_outcome"],
        "last_error": row["last_error"],
        "last_duration_ms": row["last_duration_ms"],
        "run_count": row["run_count"],
        "next_run_at": row["next_run_at"],
    }


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
