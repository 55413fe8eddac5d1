"""The job runner: schedules from settings, one run at a time across replicas, fencing."""

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from nespay.jobs.registry import Job
from nespay.jobs.runner import JobBusy, JobRunner
from nespay.runtime import Runtime

_names = itertools.count()


def unique(prefix="test"):
    return f"{prefix}.job{next(_names)}_{datetime.now(UTC).timestamp():.0f}"


@pytest.fixture
async def runtimes(settings):
    made = []

    async def make():
        runtime = Runtime(settings, "jobs")
        await runtime.start()
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        await runtime.close()


async def row(runtime, name):
    async with runtime.db.engine.connect() as conn:
        result = await conn.execute(
            text("SELECT * FROM job_schedules WHERE name = :n"), {"n": name}
        )
        return result.mappings().one()


async def make_due(runtime, name):
    async with runtime.db.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE job_schedules SET next_run_at = now() - interval '1 second' WHERE name = :n"
            ),
            {"n": name},
        )


async def wait_finished(runtime, name, runs=1):
    for _ in range(200):
        current = await row(runtime, name)
        if current["run_count"] >= runs and current["lease_owner"] is None:
            return current
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} did not finish: {dict(current)}")


async def test_register_writes_schedule_and_next_run_from_cron(runtimes):
    runtime = await runtimes()
    name = unique()
    job = Job(name, "*/5 * * * *", True, lambda rt: asyncio.sleep(0))
    await JobRunner(runtime, {name: job}).register()
    current = await row(runtime, name)
    assert current["schedule"] == "*/5 * * * *"
    assert current["next_run_at"].minute % 5 == 0
    assert current["next_run_at"] > datetime.now(UTC)


async def test_a_due_job_runs_once_across_two_replicas(runtimes):
    calls = []

    async def work(runtime):
        calls.append(runtime)
        await asyncio.sleep(0.3)
        return "done"

    name = unique()
    job = Job(name, "0 0 1 1 *", True, work, timeout_s=10)
    first, second = await runtimes(), await runtimes()
    runner_a, runner_b = JobRunner(first, {name: job}), JobRunner(second, {name: job})
    runner_b.owner = "other-replica:1"
    await runner_a.register()
    await make_due(first, name)
    started = await asyncio.gather(runner_a.tick(), runner_b.tick())
    finished = await wait_finished(first, name)
    assert sorted(len(s) for s in started) == [0, 1]
    assert len(calls) == 1
    assert finished["last_outcome"] == "ok"
    assert finished["next_run_at"] > datetime.now(UTC) + timedelta(days=1)


async def test_disabled_job_is_not_run(runtimes):
    calls = []
    name = unique()
    job = Job(name, "* * * * *", False, lambda rt: calls.append(1) or asyncio.sleep(0))
    runtime = await runtimes()
    runner = JobRunner(runtime, {name: job})
    await runner.register()
    await make_due(runtime, name)
    assert await runner.tick() == []
    assert calls == []


async def test_failure_is_recorded_and_the_next_run_scheduled(runtimes):
    async def broken(runtime):
        raise ValueError("node said no")

    name = unique()
    runtime = await runtimes()
    runner = JobRunner(runtime, {name: Job(name, "* * * * *", True, broken)})
    await runner.register()
    await make_due(runtime, name)
    await runner.tick()
    current = await wait_finished(runtime, name)
    assert current["last_outcome"] == "error"
    assert "node said no" in current["last_error"]
    # the next minute after the run (not after now: the run may end just before a minute)
    assert current["next_run_at"] > current["last_finished_at"]


async def test_a_run_past_its_timeout_is_recorded_as_timeout(runtimes):
    async def slow(runtime):
        await asyncio.sleep(30)

    name = unique()
    runtime = await runtimes()
    runner = JobRunner(runtime, {name: Job(name, "* * * * *", True, slow, timeout_s=0.2)})
    await runner.register()
    assert await runner.run_now(name) == "timeout"
    assert (await row(runtime, name))["last_outcome"] == "timeout"


async def test_a_stalled_holder_cannot_record_after_losing_its_lease(runtimes):
    release = asyncio.Event()

    async def stalls(runtime):
        await release.wait()
        return "late"

    name = unique()
    first, second = await runtimes(), await runtimes()
    job = Job(name, "0 0 1 1 *", True, stalls, timeout_s=30)
    stalled = JobRunner(first, {name: job})
    await stalled.register()
    task = asyncio.create_task(stalled.run_now(name))
    await asyncio.sleep(0.2)
    # The stalled holder's lease runs out; another replica takes the job and finishes it.
    async with first.db.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE job_schedules SET lease_expires_at = now() - interval '1 s' WHERE name = :n"
            ),
            {"n": name},
        )
    quick = Job(name, "0 0 1 1 *", True, lambda rt: asyncio.sleep(0, "quick"), timeout_s=30)
    taker = JobRunner(second, {name: quick})
    taker.owner = "taker:2"
    assert await taker.run_now(name) == "ok"
    after_taker = await row(second, name)
    release.set()
    await task
    final = await row(first, name)
    assert final["lease_token"] == after_taker["lease_token"]
    assert final["run_count"] == after_taker["run_count"]


async def test_run_now_refuses_while_another_replica_holds_the_lease(runtimes):
    gate = asyncio.Event()

    async def waits(runtime):
        await gate.wait()

    name = unique()
    first, second = await runtimes(), await runtimes()
    job = Job(name, "0 0 1 1 *", True, waits)
    holder = JobRunner(first, {name: job})
    await holder.register()
    task = asyncio.create_task(holder.run_now(name))
    await asyncio.sleep(0.2)
    with pytest.raises(JobBusy):
        await JobRunner(second, {name: job}).run_now(name)
    gate.set()
    assert await task == "ok"


async def test_a_crashed_holders_lease_expires_and_the_job_runs_elsewhere(runtimes):
    calls = []

    async def work(runtime):
        calls.append(1)

    name = unique()
    runtime = await runtimes()
    runner = JobRunner(runtime, {name: Job(name, "* * * * *", True, work)})
    await runner.register()
    # A replica died mid-run: its lease is still there but expired, and the job is due.
    async with runtime.db.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE job_schedules SET lease_owner = 'dead:1', lease_token = lease_token + 1,"
                " lease_expires_at = now() - interval '1 s', next_run_at = now() - interval '1 m'"
                " WHERE name = :n"
            ),
            {"n": name},
        )
    assert await runner.tick() == [name]
    await wait_finished(runtime, name)
    assert calls == [1]
