"""`GET /api/v1/jobs` on the jobs process."""

import logging
import os
import time

import httpx
import pytest
from sqlalchemy import text

from nespay.apps import jobs
from nespay.jobs.registry import Job
from nespay.jobs.runner import JobRunner
from tests.fixtures.app import app_client
from tests.fixtures.database import make_settings


async def test_jobs_lists_each_job_with_schedule_and_next_run(database_url):
    settings = make_settings(database_url, rpc_health_job_schedule="*/10 * * * *")
    async with app_client(jobs.create_app, settings) as (_, client):
        response = await client.get("/api/v1/jobs")
    assert response.status_code == 200
    by_name = {job["name"]: job for job in response.json()["jobs"]}
    rpc = by_name["chains.rpc_health"]
    assert rpc["schedule"] == "*/10 * * * *"
    assert rpc["enabled"] is True
    assert rpc["next_run_at"].endswith("Z") or "+00:00" in rpc["next_run_at"]
    assert isinstance(response.json()["networks"], list)


async def test_jobs_needs_the_health_token_when_one_is_set(database_url):
    settings = make_settings(database_url, health_token="tok-abcdef123456")
    async with app_client(jobs.create_app, settings) as (_, client):
        anonymous = await client.get("/api/v1/jobs")
        allowed = await client.get(
            "/api/v1/jobs", headers={"authorization": "Bearer tok-abcdef123456"}
        )
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "token_required"
    assert allowed.status_code == 200


async def test_metrics_need_the_health_token_when_one_is_set(database_url):
    settings = make_settings(database_url, health_token="tok-abcdef123456")
    async with app_client(jobs.create_app, settings) as (_, client):
        anonymous = await client.get("/metrics")
        allowed = await client.get("/metrics", headers={"x-health-token": "tok-abcdef123456"})
    assert anonymous.status_code == 401
    assert allowed.status_code == 200 and "nespay_http_requests_total" in allowed.text


async def rpc_health_due(database) -> bool:
    async with database.engine.connect() as conn:
        return await conn.scalar(
            text("SELECT next_run_at <= now() FROM job_schedules WHERE name = 'chains.rpc_health'")
        )


@pytest.mark.own_database  # the schedule and the audit log are the test's alone
async def test_an_admin_can_make_a_job_run_now_and_it_is_audited(database_url, cognito, database):
    cognito_values = cognito.settings().model_dump(
        include={
            "cognito_admin_pool_id",
            "cognito_admin_client_id",
            "cognito_endpoint_url",
            "aws_region",
        }
    )
    settings = make_settings(database_url, **cognito_values)
    admin_token = cognito.tokens("admin")["IdToken"]
    sub = cognito.new_user("admin", "jobs-support@example.com", ("support",))
    support_token = cognito.tokens("admin", "jobs-support@example.com")["IdToken"]
    async with app_client(jobs.create_app, settings) as (app, client):
        await app.state.runner.stop()  # keep the runner from taking the job during the test
        not_due = await rpc_health_due(database)
        anonymous = await client.post("/api/v1/jobs/chains.rpc_health/run")
        support = await client.post(
            "/api/v1/jobs/chains.rpc_health/run",
            headers={"authorization": f"Bearer {support_token}"},
        )
        queued = await client.post(
            "/api/v1/jobs/chains.rpc_health/run", headers={"authorization": f"Bearer {admin_token}"}
        )
        unknown = await client.post(
            "/api/v1/jobs/nope/run", headers={"authorization": f"Bearer {admin_token}"}
        )
    assert anonymous.status_code == 401
    assert support.status_code == 403 and sub
    assert queued.status_code == 202 and queued.json()["queued"] is True
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "job_not_found"
    async with database.engine.connect() as conn:
        audited = (
            await conn.execute(
                text("SELECT actor_type, target_id FROM audit_logs WHERE action = :a"),
                {"a": "job.run_requested"},
            )
        ).all()
    assert not_due is False and await rpc_health_due(database) is True
    assert audited == [("admin", "chains.rpc_health")]  # once: the refused ones wrote nothing


async def test_a_job_failing_on_a_url_with_a_key_shows_and_logs_it_masked(database_url, caplog):
    """An HTTP error quotes the URL it was for (httpx: "… for url '…'"): GET /jobs and the
    job_failed line show it without the key."""
    key = "SECRETKEY123456789"

    async def calls_a_provider(runtime):
        request = httpx.Request("POST", f"https://eth-mainnet.g.alchemy.com/v2/{key}")
        httpx.Response(401, request=request).raise_for_status()

    name = f"test.masked_{os.getpid()}_{time.time_ns()}"
    settings = make_settings(database_url, log_level="info")
    async with app_client(jobs.create_app, settings) as (app, client):
        runner = JobRunner(
            app.state.runtime, {name: Job(name, "0 0 1 1 *", True, calls_a_provider)}
        )
        await runner.register()
        with caplog.at_level(logging.INFO):
            assert await runner.run_now(name) == "error"
        listed = (await client.get("/api/v1/jobs")).json()["jobs"]
    (job,) = [job for job in listed if job["name"] == name]
    assert "HTTPStatusError" in job["last_error"] and "/v2/***" in job["last_error"]
    assert key not in job["last_error"]
    handler = next(h for h in logging.getLogger().handlers if getattr(h, "_nespay", False))
    lines = "\n".join(handler.formatter.format(record) for record in caplog.records)
    assert "job_failed" in lines and "/v2/***" in lines and key not in lines
