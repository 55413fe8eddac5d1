"""Runs due jobs, each on one replica at a time.

A run claims the job's row with a lease that carries a fencing token; while it runs, a
heartbeat extends the lease; the outcome is recorded only if the row still carries the token,
so a replica that stalled past its lease cannot overwrite the newer holder's record. A replica
that dies mid-run leaves a lease that expires, and the job runs again on the next tick
somewhere else.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from datetime import UTC, datetime

import structlog

from nespay.jobs import repository
from nespay.jobs.registry import Job, JobFailed
from nespay.kit.urls import mask_urls_in
from nespay.metrics import JOB_DURATION, JOB_RUNS
from nespay.runtime import Runtime

log = structlog.get_logger("nespay.jobs")
LEASE_MARGIN_S = 30.0


class JobBusy(RuntimeError):
    pass


def replica_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class JobRunner:
    def __init__(self, runtime: Runtime, jobs: dict[str, Job], *, tick_s: float = 1.0) -> None:
        self.runtime = runtime
        self.jobs = jobs
        self.tick_s = tick_s
        self.owner = replica_id()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self.last_detail: str | None = None

    async def register(self) -> None:
        """Write each job's schedule and switch; a changed schedule gets a fresh next run."""
        now = datetime.now(UTC)
        async with self.runtime.db.engine.begin() as conn:
            for job in self.jobs.values():
                await repository.upsert_schedule(
                    conn, job.name, job.schedule, job.enabled, job.next_run_after(now)
                )

    async def start(self) -> None:
        await self.register()
        self._loop_task = asyncio.create_task(self._loop(), name="jobs.loop")

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception as error:  # noqa: BLE001 - the loop must outlive a bad tick
                log.warning("jobs_tick_failed", error=str(error)[:200])
            await asyncio.sleep(self.tick_s)

    async def tick(self) -> list[str]:
        """Claim and start every due job not already running here; returns their names."""
        idle = [
            name for name, job in self.jobs.items() if name not in self._running and job.enabled
        ]
        if not idle:
            return []
        started = []
        async with self.runtime.db.engine.begin() as conn:
            due = await repository.due_jobs(conn, idle)
        for name in due:
            token = await self._claim(self.jobs[name], force=False)
            if token is not None:
                task = asyncio.create_task(self._execute(self.jobs[name], token), name=name)
                self._running[name] = task
                task.add_done_callback(lambda _, name=name: self._running.pop(name, None))
                started.append(name)
        return started

    async def _claim(self, job: Job, *, force: bool) -> int | None:
        async with self.runtime.db.engine.begin() as conn:
            return await repository.claim(
                conn, job.name, self.owner, job.timeout_s + LEASE_MARGIN_S, force=force
            )

    async def run_now(self, name: str, *, schedule_next: bool = False) -> str:
        """Run one job once in this process (the CLI's `jobs run`), under the same lease."""
        job = self.jobs[name]
        token = await self._claim(job, force=True)
        if token is None:
            raise JobBusy(f"job {name} is running on another replica; try again when it finishes")
        return await self._execute(job, token, schedule_next=schedule_next)

    async def _execute(self, job: Job, token: int, *, schedule_next: bool = True) -> str:
        started = time.perf_counter()
        heartbeat = asyncio.create_task(self._heartbeat(job, token))
        outcome, error, detail = "ok", None, None
        structlog.contextvars.bind_contextvars(job=job.name, job_run=token)
        try:
            async with asyncio.timeout(job.timeout_s):
                detail = await job.run(self.runtime)
            log.info("job_finished", detail=detail)
        except TimeoutError:
            outcome, error = "timeout", f"did not finish within {job.timeout_s:g}s"
            log.warning("job_timed_out", timeout_s=job.timeout_s)
        except JobFailed as exc:  # expected, and already explained by the job's own lines
            outcome, error = "error", mask_urls_in(str(exc))[:1000]
            log.info("job_failed", error=error)
        except Exception as exc:  # noqa: BLE001 - recorded, and the next run is scheduled
            outcome, error = "error", mask_urls_in(f"{type(exc).__name__}: {exc}")[:1000]
            log.error("job_failed", exc_info=exc)
        finally:
            heartbeat.cancel()
            structlog.contextvars.unbind_contextvars("job", "job_run")
        duration = time.perf_counter() - started
        JOB_RUNS.labels(job.name, outcome).inc()
        JOB_DURATION.labels(job.name).observe(duration)
        await self._record(job, token, outcome, error, duration, schedule_next)
        # What the run said (or why it failed), for `nespay jobs run` to print.
        self.last_detail = detail if error is None else error
        return outcome

    async def _record(
        self,
        job: Job,
        token: int,
        outcome: str,
        error: str | None,
        duration: float,
        schedule_next: bool,
    ) -> None:
        next_run = job.next_run_after(datetime.now(UTC)) if schedule_next else None
        async with self.runtime.db.engine.begin() as conn:
            kept = await repository.finish(
                conn,
                job.name,
                token,
                outcome=outcome,
                error=error,
                duration_ms=int(duration * 1000),
                next_run_at=next_run,
            )
        if not kept:
            log.warning("job_lease_lost", job=job.name, token=token)

    async def _heartbeat(self, job: Job, token: int) -> None:
        ttl = job.timeout_s + LEASE_MARGIN_S
        while True:
            await asyncio.sleep(ttl / 3)
            async with self.runtime.db.engine.begin() as conn:
                if not await repository.extend(conn, job.name, token, ttl):
                    log.warning("job_lease_lost", job=job.name, token=token)
                    return
