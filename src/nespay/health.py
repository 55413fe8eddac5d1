"""`GET /{PUBLIC_API_PREFIX}/health`, the guide's body, on every process.

PostgreSQL (and RabbitMQ when configured) are required: down gives 503 with the dependency in
`error`. Redis is not: the app runs degraded without it, so Redis down is reported in `info`
with a message and the answer stays 200. On the jobs process, the chain scanners too: one
stuck (failing, or not moving, for `SCANNER_STUCK_AFTER_S`) gives 503 with `scanners` in
`error`; one lagging is reported in `info` (`"status": "lagging"`); a reconciliation that found
a difference and a ledger invariant violated are reported in `info` too. With `HEALTH_TOKEN` set,
only a caller presenting it (`Authorization: Bearer …` or `X-Health-Token`) sees the detail.

`GET …/health/live` answers 200 whenever the process answers at all: what a liveness probe
should restart on (restarting does not mend a database or a chain outage).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from nespay.kit.responses import JsonResponse
from nespay.operator import operator_allowed
from nespay.runtime import Runtime

CHECK_TIMEOUT_S = 2.0


async def _timed(check: Any, name: str) -> tuple[str, str | None]:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            return await check()
    except TimeoutError:
        return "down", f"{name} did not answer within {CHECK_TIMEOUT_S:g}s"
    except Exception as error:  # noqa: BLE001 - any failure is a down dependency
        return "down", f"{name} is unreachable ({type(error).__name__})"


async def _database(runtime: Runtime) -> tuple[str, str | None]:
    await runtime.db.ping()
    return "up", None


async def _scanners(runtime: Runtime) -> tuple[str, str | None]:
    from nespay.chains import status

    async with runtime.db.engine.connect() as conn:
        judged = await status.health(conn, runtime.settings)
    if judged.stuck:
        return "down", "; ".join(judged.stuck)
    if judged.lagging:
        return "lagging", "; ".join(judged.lagging)
    return "up", None


async def _reconciliation(runtime: Runtime) -> tuple[str | None, str | None]:
    """The newest reconciliation of each network: a difference is reported, never a 503 (the
    platform still takes payments; an operator has to look)."""
    from nespay.db import sql
    from nespay.ledger import repository

    async with runtime.db.engine.connect() as conn:
        runs = await repository.latest_runs(sql(conn))
    apart = [f"{run['network_code']}: {run['status']}" for run in runs if run["status"] != "ok"]
    return ("difference", "; ".join(apart)) if apart else (None, None)


async def _ledger_invariants(runtime: Runtime) -> tuple[str | None, str | None]:
    """The last `ledger.invariants` run: a violation (`violated`, naming what is wrong) or a
    run that could not check (`error`, `timeout`) is reported, never a 503 (as with
    reconciliation: an operator has to look, and the platform keeps taking payments)."""
    from nespay.jobs import repository
    from nespay.ledger.tasks import INVARIANTS_JOB, VIOLATED

    async with runtime.db.engine.connect() as conn:
        run = await repository.last_run(conn, INVARIANTS_JOB)
    if run is None or run["last_outcome"] in (None, "ok"):
        return None, None
    error = run["last_error"] or ""
    if error.startswith(VIOLATED):
        return "violated", error.removeprefix(VIOLATED)
    return run["last_outcome"], error or None


async def collect(runtime: Runtime) -> tuple[int, dict[str, Any]]:
    """Checks run one after the other: each is a sub-millisecond round trip, cheaper in
    sequence than as tasks; each has its own timeout."""
    # (name, check, required); a check answering status None has nothing to report and is
    # left out (reconciliation and ledger_invariants, while all agrees).
    checks: list[tuple[str, Any, bool]] = [
        ("database", lambda: _database(runtime), True),
        ("redis", runtime.redis.health, False),
    ]
    if runtime.broker is not None:
        checks.append(("rabbitmq", runtime.broker.health, True))
    if runtime.process == "jobs" and runtime.settings.scanner_enabled:
        checks.append(("scanners", lambda: _scanners(runtime), True))
    if runtime.process == "jobs":
        checks.append(("reconciliation", lambda: _reconciliation(runtime), False))
        checks.append(("ledger_invariants", lambda: _ledger_invariants(runtime), False))
    info: dict[str, Any] = {}
    error: dict[str, Any] = {}
    for name, check, required in checks:
        status, message = await _timed(check, name)
        if status is None:  # nothing to report (the guide's body stays as it is)
            continue
        entry: dict[str, Any] = {"status": status}
        if message:
            entry["message"] = message
        (error if required and status == "down" else info)[name] = entry
    body: dict[str, Any] = {"status": "error" if error else "ok", "info": info}
    if error:
        body["error"] = error
    return (503 if error else 200), body


def health_router(runtime_of: Any) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/health", summary="Liveness and dependency status")
    async def health(request: Request) -> JsonResponse:
        runtime: Runtime = runtime_of(request)
        status, body = await collect(runtime)
        if not operator_allowed(request):
            body = {"status": body["status"]}
        return JsonResponse(body, status_code=status)

    @router.get("/health/live", summary="Liveness: the process answers")
    async def live() -> JsonResponse:
        return JsonResponse({"status": "ok"})

    return router
