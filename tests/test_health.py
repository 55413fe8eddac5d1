"""`GET /api/v1/health` on every process: the guide's body, 503 naming a required dependency
that is down, Redis reported but not fatal, detail hidden behind HEALTH_TOKEN."""

import asyncio
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from nespay.apps import api, jobs, webhook
from tests.fixtures.app import app_client
from tests.fixtures.database import make_settings
from tests.fixtures.processes import base_env, nespay_process
from tests.fixtures.tcpproxy import TcpProxy

GUIDE_BODY = {"status": "ok", "info": {"database": {"status": "up"}, "redis": {"status": "up"}}}
RABBITMQ = "amqp://guest:guest@127.0.0.1:5672/"


def through(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


async def eventually(client, path, status, timeout_s=15.0):
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        response = await client.get(path)
        if response.status_code == status or asyncio.get_running_loop().time() > deadline:
            return response
        await asyncio.sleep(0.2)


# A database of its own, so the jobs process's scanners are judged on its networks alone (none).
@pytest.mark.own_database
async def test_every_process_answers_the_guides_exact_body_with_redis_up(database_url, tmp_path):
    env = base_env(database_url, REDIS_ENABLED="true", REDIS_HOST="127.0.0.1", REDIS_PORT="6379")
    for process in ("api", "webhook", "jobs"):
        with nespay_process(process, env, tmp_path) as running:
            response = httpx.get(running.base_url + "/api/v1/health")
        assert response.status_code == 200, running.log()
        # The jobs process runs the chain scanners, and says how they are (SPEC §13).
        scanners = {"scanners": {"status": "up"}} if process == "jobs" else {}
        assert response.json() == {**GUIDE_BODY, "info": GUIDE_BODY["info"] | scanners}


async def test_redis_disabled_is_reported_and_does_not_fail(database_url):
    async with app_client(api.create_app, make_settings(database_url)) as (_, client):
        response = await client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json()["info"]["redis"] == {"status": "disabled"}


async def test_database_down_gives_503_naming_it_and_recovers(database_url):
    proxy = TcpProxy("127.0.0.1", 5432)
    port = await proxy.start()
    settings = make_settings(through(database_url, port))
    try:
        async with app_client(webhook.create_app, settings) as (_, client):
            assert (await client.get("/api/v1/health")).status_code == 200
            await proxy.cut()
            down = await client.get("/api/v1/health")
            await proxy.start(port)
            back = await eventually(client, "/api/v1/health", 200)
    finally:
        await proxy.cut()
    assert down.status_code == 503
    body = down.json()
    assert body["status"] == "error"
    assert body["error"]["database"]["status"] == "down"
    assert body["error"]["database"]["message"]
    assert "database" not in body["info"]
    assert back.status_code == 200


async def test_configured_rabbitmq_is_checked_and_its_outage_is_503(database_url):
    proxy = TcpProxy("127.0.0.1", 5672)
    port = await proxy.start()
    settings = make_settings(database_url, rabbitmq_url=through(RABBITMQ, port))
    try:
        async with app_client(jobs.create_app, settings) as (_, client):
            up = await client.get("/api/v1/health")
            await proxy.cut()
            down = await eventually(client, "/api/v1/health", 503)
            await proxy.start(port)
            back = await eventually(client, "/api/v1/health", 200, timeout_s=30)
    finally:
        await proxy.cut()
    assert up.json()["info"]["rabbitmq"] == {"status": "up"}
    assert down.status_code == 503
    assert down.json()["error"]["rabbitmq"]["status"] == "down"
    assert back.json()["info"]["rabbitmq"] == {"status": "up"}


async def test_health_token_hides_detail_but_not_liveness(database_url):
    settings = make_settings(database_url, health_token="tok-0123456789")
    async with app_client(api.create_app, settings) as (_, client):
        anonymous = await client.get("/api/v1/health")
        wrong = await client.get("/api/v1/health", headers={"x-health-token": "nope"})
        bearer = await client.get(
            "/api/v1/health", headers={"authorization": "Bearer tok-0123456789"}
        )
    assert anonymous.status_code == 200 and anonymous.json() == {"status": "ok"}
    assert wrong.json() == {"status": "ok"}
    assert bearer.json()["info"]["database"] == {"status": "up"}


async def test_health_token_hides_which_dependency_is_down(database_url):
    proxy = TcpProxy("127.0.0.1", 5432)
    port = await proxy.start()
    settings = make_settings(through(database_url, port), health_token="tok-0123456789")
    try:
        async with app_client(api.create_app, settings) as (_, client):
            await proxy.cut()
            response = await client.get("/api/v1/health")
    finally:
        await proxy.cut()
    assert response.status_code == 503
    assert response.json() == {"status": "error"}
