"""What the jobs process says about its work — every job's schedule and last run, every
scanned network's state, the callback backlog — and an admin's request to run a job now.

Errors and outcomes are answered with any URL in them masked (`nespay.kit.urls`): they may
quote an RPC URL, key and all (a node's message, an HTTP error). They are masked where they
are made too; this also covers rows written before that.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from nespay.audit.service import record
from nespay.auth.principals import Actor
from nespay.chains import status as scanning
from nespay.errors import Conflict, NotFound
from nespay.jobs import repository
from nespay.kit.urls import mask_urls_in


class JobNotFound(NotFound):
    code = "job_not_found"
    message = "No such job; GET /jobs lists them."


class JobDisabled(Conflict):
    code = "job_disabled"
    message = "This job is disabled by its *_JOB_ENABLED setting."


async def overview(session: AsyncSession) -> dict[str, Any]:
    """`GET /jobs`: jobs, networks that need a scanner, the callback pipeline's backlog,
    unfinished outgoing transactions (money out) per network and status."""
    conn = await session.connection()
    jobs = await repository.list_schedules(conn)
    networks = await scanning.network_states(conn)
    callbacks = await repository.callback_backlog(conn)
    outgoing = await repository.outgoing_backlog(conn)
    return {
        "jobs": [_job_view(job) for job in jobs],
        "networks": [_network_view(state) for state in networks],
        "callbacks": callbacks,
        "outgoing": outgoing,
    }


async def request_run(session: AsyncSession, actor: Actor, name: str) -> dict[str, Any]:
    """Make the job due now (audit-logged); the next free replica's tick runs it."""
    conn = await session.connection()
    state = await repository.run_soon(conn, name)
    if state is None:
        raise JobNotFound()
    if not state["enabled"]:
        raise JobDisabled()
    await record(conn, actor, "job.run_requested", target_type="job", target_id=name)
    return {"name": name, "queued": True, "running": state["lease_owner"] is not None}


def _masked(text: str | None) -> str | None:
    return None if text is None else mask_urls_in(text)


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
