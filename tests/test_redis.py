"""RedisService and create_client against real servers: standalone, cluster behind NAT, sentinel;
and the fallback (in-process cache, database counters and locks) when Redis is off or down."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.backoff import EqualJitterBackoff
from redis.crc import key_slot
from redis.exceptions import ConnectionError, RedisClusterException
from sqlalchemy import text
from structlog.testing import capture_logs

from nespay.config import Settings
from nespay.db import Database
from nespay.redis import NatSentinel, RedisService, close_client, create_client
from tests.fixtures.database import make_settings
from tests.fixtures.redis_servers import (
    HOST,
    RESTARTABLE_PASSWORD,
    ClusterServers,
    RedisProcess,
    SentinelServers,
    free_port,
)

FAST_RETRIES = {"redis_max_retries": 2, "redis_retry_delay": 10, "redis_max_retry_delay": 50}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def eventually(check: Callable[[], Any], what: str, timeout_s: float = 15.0) -> None:
    """Wait for a state change driven by a background task or the clock (not a timing claim)."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.05)


async def db_scalar(database: Database, sql: str, **params: Any) -> Any:
    async with database.engine.connect() as conn:
        return await conn.scalar(text(sql), params)


def standalone_settings(database_url: str, port: int, **overrides: Any) -> Settings:
    values = {"redis_enabled": True, "redis_host": HOST, "redis_port": port}
    return make_settings(database_url, **(values | FAST_RETRIES | overrides))


@pytest.fixture
async def make_service(database: Database) -> AsyncIterator[Callable[..., Awaitable[RedisService]]]:
    """Start services; each is closed at the end of the test, passed or failed."""
    services: list[RedisService] = []

    async def make(settings: Settings, **kwargs: Any) -> RedisService:
        services.append(RedisService(settings, database, **kwargs))
        await services[-1].start()
        return services[-1]

    yield make
    for svc in services:
        await svc.close()


@pytest.fixture(params=["redis", "database"])
async def service(
    request: pytest.FixtureRequest, database_url: str, make_service: Any, redis_server: RedisProcess
) -> RedisService:
    """The same service on both backends: healthy Redis, or REDIS_ENABLED=false."""
    enabled = request.param == "redis"
    svc = await make_service(
        standalone_settings(database_url, redis_server.port, redis_enabled=enabled)
    )
    assert svc.degraded is not enabled
    return svc


# --- semantics on both backends ---------------------------------------------------------------


async def test_counter_counts_hits_within_a_window(service: RedisService):
    key, other = unique("rl"), unique("rl")
    results = [await service.hit(key, 60) for _ in range(3)]
    assert [count for count, _ in results] == [1, 2, 3]
    assert all(0 < reset_in <= 60 for _, reset_in in results)
    assert [(await service.hit(other, 60))[0] for _ in range(2)] == [1, 2]


async def test_counter_starts_again_in_the_next_window(service: RedisService):
    key = unique("rl")
    assert (await service.hit(key, 1))[0] == 1

    async def restarted() -> bool:
        count, reset_in = await service.hit(key, 1)
        assert 0 < reset_in <= 1
        return count == 1

    await eventually(restarted, "a new window")


async def test_lock_is_exclusive_and_tokens_grow_across_holders(service: RedisService):
    name = unique("lock")
    first = await service.acquire_lock(name, 30, "worker-a")
    assert first is not None
    assert await service.acquire_lock(name, 30, "worker-b") is None
    assert await service.release_lock(name, first)
    second = await service.acquire_lock(name, 30, "worker-b")
    assert second is not None and second > first
    assert await service.acquire_lock(unique("lock"), 30, "worker-a") is not None


async def test_stale_token_cannot_release_or_extend(service: RedisService):
    name = unique("lock")
    stale = await service.acquire_lock(name, 0.2, "worker-a")
    assert stale is not None
    assert not await service.release_lock(name, stale + 1)
    assert await service.extend_lock(name, stale, 0.2)

    async def taken_over() -> int | None:
        return await service.acquire_lock(name, 30, "worker-b")

    await eventually(taken_over, "the lease to expire")
    assert not await service.release_lock(name, stale)
    assert not await service.extend_lock(name, stale, 30)
    assert await service.acquire_lock(name, 30, "worker-a") is None


async def test_cache_set_get_delete(service: RedisService):
    key = unique("cache")
    assert await service.cache_get(key) is None
    await service.cache_set(key, b"\x00value", 60)
    assert await service.cache_get(key) == b"\x00value"
    await service.cache_delete(key)
    assert await service.cache_get(key) is None


# --- where the data goes ------------------------------------------------------------------------

COUNT_SQL = "SELECT count FROM rate_counters WHERE key = :k"
ROWS_SQL = "SELECT count(*) FROM rate_counters WHERE key = :k"
TOKEN_SQL = "SELECT token FROM app_locks WHERE name = :n"


async def test_without_redis_counters_and_locks_live_in_the_database(
    database_url: str, database: Database, make_service: Any
):
    svc = await make_service(make_settings(database_url, redis_enabled=False))
    key, name = unique("rl"), unique("lock")
    assert await svc.health() == ("disabled", None)
    await svc.hit(key, 60)
    await svc.hit(key, 60)
    token = await svc.acquire_lock(name, 30, "worker-a")
    assert await db_scalar(database, COUNT_SQL, k=key) == 2
    assert await db_scalar(database, TOKEN_SQL + " AND holder = 'worker-a'", n=name) == token


async def test_database_counters_sweep_expired_rows(
    database_url: str, database: Database, make_service: Any
):
    expired = unique("old")
    async with database.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO rate_counters (key, window_start, count, expires_at) "
                "VALUES (:k, now() - interval '2 hours', 5, now() - interval '1 hour')"
            ),
            {"k": expired},
        )
    svc = await make_service(make_settings(database_url, redis_enabled=False))
    await svc.hit(unique("rl"), 60)
    assert await db_scalar(database, ROWS_SQL, k=expired) == 0


async def test_local_cache_is_bounded(database_url: str, make_service: Any):
    svc = await make_service(make_settings(database_url), local_cache_size=3)
    for index in range(5):
        await svc.cache_set(f"k{index}", b"v", 60)
    cached = [await svc.cache_get(f"k{index}") for index in range(5)]
    assert cached == [None, None, b"v", b"v", b"v"]


async def test_healthy_redis_serves_every_call_with_one_command(
    database_url: str,
    database: Database,
    redis_server: RedisProcess,
    make_service: Any,
    monkeypatch: pytest.MonkeyPatch,
):
    svc = await make_service(standalone_settings(database_url, redis_server.port))
    key, name = unique("rl"), unique("lock")
    await svc.hit(unique("warm"), 60)  # loads the scripts once
    await svc.acquire_lock(unique("warm"), 30, "w")
    sent: list[bytes] = []
    send = AbstractConnection.send_packed_command

    async def counting_send(self: AbstractConnection, command: Any, *args: Any, **kw: Any) -> None:
        sent.append(command if isinstance(command, bytes) else b"".join(command))
        await send(self, command, *args, **kw)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting_send)
    await svc.hit(key, 60)
    await svc.acquire_lock(name, 30, "worker-a")
    await svc.cache_get(key)
    monkeypatch.undo()
    assert [command.split(b"\r\n")[2] for command in sent] == [b"EVALSHA", b"EVALSHA", b"GET"]
    async with aioredis.Redis(host=HOST, port=redis_server.port) as direct:
        assert await direct.exists(f"nespay:rate:{key}", f"nespay:lock:{{{name}}}") == 2
    assert await db_scalar(database, ROWS_SQL, k=key) == 0
    assert await db_scalar(database, TOKEN_SQL, n=name) is None


# --- client settings ----------------------------------------------------------------------------


async def test_create_client_applies_retry_settings(database_url: str):
    settings = make_settings(
        database_url,
        redis_enabled=True,
        redis_max_retries=7,
        redis_retry_delay=20,
        redis_max_retry_delay=400,
        redis_db=3,
    )
    client = create_client(settings)
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["retry"].get_retries() == 7
    assert kwargs["retry"]._backoff == EqualJitterBackoff(cap=0.4, base=0.02)
    assert kwargs["db"] == 3
    await close_client(client)


# --- outages ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ready_check", "lazy", "degraded_after_start"),
    [(True, False, True), (False, False, True), (True, True, False)],
)
async def test_start_never_raises_when_redis_is_down(
    database_url: str,
    make_service: Any,
    ready_check: bool,
    lazy: bool,
    degraded_after_start: bool,
):
    settings = standalone_settings(
        database_url, free_port(), redis_ready_check=ready_check, redis_lazy_connect=lazy
    )
    svc = await make_service(settings, probe_interval_s=60)
    assert svc.degraded is degraded_after_start
    assert (await svc.hit(unique("rl"), 60))[0] == 1  # served by the database either way
    assert svc.degraded
    status, message = await svc.health()
    assert status == "down" and message and "ConnectionError" in message


async def test_wrong_password_degrades_without_leaking_it(
    database_url: str, restartable_redis: RedisProcess, make_service: Any
):
    port = restartable_redis.port
    settings = standalone_settings(database_url, port, redis_password="wrong-pass-123")
    with capture_logs() as logs:
        svc = await make_service(settings, probe_interval_s=60)
        status, message = await svc.health()
    assert svc.degraded and status == "down"
    assert message and "AuthenticationError" in message and "wrong-pass-123" not in message
    assert [entry["event"] for entry in logs] == ["redis_degraded"]
    assert "wrong-pass-123" not in repr(logs)


async def test_outage_degrades_to_fallback_and_recovers(
    database_url: str, database: Database, restartable_redis: RedisProcess, make_service: Any
):
    port = restartable_redis.port
    settings = standalone_settings(database_url, port, redis_password=RESTARTABLE_PASSWORD)
    key, name, cached = unique("rl"), unique("lock"), unique("cache")
    with capture_logs() as logs:
        svc = await make_service(settings, probe_interval_s=0.05)
        assert await svc.health() == ("up", None) and not svc.degraded
        await svc.cache_set(cached, b"before", 600)
        restartable_redis.stop()  # it saves: `cached` is back after the restart
        assert not svc.degraded

        assert (await svc.hit(key, 60))[0] == 1  # fails on Redis, served by the database
        assert svc.degraded
        status, message = await svc.health()
        assert status == "down" and message and RESTARTABLE_PASSWORD not in message
        assert (await svc.hit(key, 60))[0] == 2
        token = await svc.acquire_lock(name, 30, "worker-a")
        assert token is not None and await svc.acquire_lock(name, 30, "worker-b") is None
        await svc.cache_delete(cached)
        assert await svc.cache_get(cached) is None
        assert await db_scalar(database, COUNT_SQL, k=key) == 2
        assert await db_scalar(database, TOKEN_SQL, n=name) == token

        restartable_redis.start()

        async def recovered() -> bool:
            return not svc.degraded

        await eventually(recovered, "recovery")
    assert await svc.health() == ("up", None)
    async with aioredis.Redis(host=HOST, port=port, password=RESTARTABLE_PASSWORD) as direct:
        assert await direct.get(f"nespay:cache:{cached}") is None  # deleted while down: for good
    assert (await svc.hit(key, 60))[0] == 1  # Redis again: a fresh counter
    assert await db_scalar(database, COUNT_SQL, k=key) == 2
    assert [entry["event"] for entry in logs] == ["redis_degraded", "redis_recovered"]
    assert RESTARTABLE_PASSWORD not in repr(logs)


@pytest.mark.parametrize("offline_queue", [False, True])
async def test_offline_queue_decides_whether_degraded_calls_try_redis(
    database_url: str, restartable_redis: RedisProcess, make_service: Any, offline_queue: bool
):
    port = restartable_redis.port
    settings = standalone_settings(
        database_url, port, redis_password=RESTARTABLE_PASSWORD, redis_offline_queue=offline_queue
    )
    svc = await make_service(settings, probe_interval_s=600)  # no recovery by the probe
    restartable_redis.stop()
    await svc.cache_set(unique("cache"), b"x", 60)
    assert svc.degraded
    restartable_redis.start()

    key = unique("cache")
    await svc.cache_set(key, b"written", 60)
    async with aioredis.Redis(host=HOST, port=port, password=RESTARTABLE_PASSWORD) as direct:
        in_redis = await direct.get(f"nespay:cache:{key}")
    assert in_redis == (b"written" if offline_queue else None)
    assert await svc.cache_get(key) == b"written"


# --- cluster and sentinel -------------------------------------------------------------------------


def cluster_settings(database_url: str, cluster: ClusterServers, nat_map: str) -> Settings:
    return make_settings(
        database_url,
        redis_enabled=True,
        redis_cluster_enabled=True,
        redis_cluster_nodes=cluster.nodes[:1],
        redis_cluster_nat_map=nat_map,
        **FAST_RETRIES,
    )


def keys_on_every_node() -> list[str]:
    """One key in each third of the slots: `redis-cli --cluster create` gives each master one."""
    found: dict[int, str] = {}
    while len(found) < 3:
        key = unique("k")
        slot = key_slot(key.encode())
        found.setdefault((slot > 5460) + (slot > 10922), key)
    return list(found.values())


async def test_cluster_nodes_are_unreachable_without_the_nat_map(
    database_url: str, redis_cluster: ClusterServers, make_service: Any
):
    settings = cluster_settings(database_url, redis_cluster, "")
    client = create_client(settings)
    with pytest.raises((ConnectionError, RedisClusterException)):
        for key in keys_on_every_node():
            await client.set(key, b"v")
    await close_client(client)
    assert (await make_service(settings, probe_interval_s=60)).degraded


async def moved_replies(cluster: ClusterServers) -> int:
    total = 0
    for port in cluster.ports:
        async with aioredis.Redis(host=HOST, port=port) as node:
            stats = await node.info("errorstats")
            total += stats.get("errorstat_MOVED", {}).get("count", 0)
    return total


async def test_cluster_with_nat_map_reaches_every_node(
    database_url: str, redis_cluster: ClusterServers, make_service: Any
):
    settings = cluster_settings(database_url, redis_cluster, redis_cluster.nat_map)
    keys = keys_on_every_node() * 3
    moved_before = await moved_replies(redis_cluster)
    for key in keys:  # each on a fresh client: its first command must go to the right node
        client = create_client(settings)
        await client.set(key, key)
        assert await client.get(key) == key.encode()
        await close_client(client)
    assert await moved_replies(redis_cluster) == moved_before
    owners = set()
    for port in redis_cluster.ports:
        async with aioredis.Redis(host=HOST, port=port) as node:
            for key in keys:
                if await node.execute_command("CLUSTER", "COUNTKEYSINSLOT", key_slot(key.encode())):
                    owners.add(port)
    assert owners == set(redis_cluster.ports)

    svc = await make_service(settings)
    assert await svc.health() == ("up", None)
    name = unique("lock")
    first = await svc.acquire_lock(name, 30, "worker-a")
    assert first is not None and await svc.release_lock(name, first)
    assert (await svc.acquire_lock(name, 30, "worker-b") or 0) > first
    assert [(await svc.hit(key, 60))[0] for key in keys[:3]] == [1, 1, 1]
    assert not svc.degraded


@pytest.mark.parametrize("mapped", [False, True])
async def test_sentinel_nat_map_rewrites_the_reported_master(
    database_url: str, redis_sentinels: SentinelServers, make_service: Any, mapped: bool
):
    master, decoy = redis_sentinels.master, redis_sentinels.decoy
    nat_map = f"{HOST}:{master.port}=>{HOST}:{decoy.port}" if mapped else ""
    settings = make_settings(
        database_url,
        redis_enabled=True,
        redis_sentinel_enabled=True,
        redis_sentinel_nodes=redis_sentinels.nodes,
        redis_sentinel_name=redis_sentinels.name,
        redis_sentinel_nat_map=nat_map,
        **FAST_RETRIES,
    )
    svc = await make_service(settings)
    assert await svc.health() == ("up", None)
    key = unique("cache")
    await svc.cache_set(key, b"here", 60)
    landed = {}
    for server in (master, decoy):
        async with aioredis.Redis(host=HOST, port=server.port) as node:
            landed[server.port] = await node.get(f"nespay:cache:{key}")
    target, other = (decoy, master) if mapped else (master, decoy)
    assert landed == {target.port: b"here", other.port: None}


def test_sentinel_nat_map_rewrites_reported_replicas():
    sentinel = NatSentinel([], {("10.0.0.7", 6379): ("127.0.0.1", 16379)})
    replicas = [
        {"ip": "10.0.0.7", "port": 6379, "is_odown": False, "is_sdown": False},
        {"ip": "10.0.0.8", "port": 6379, "is_odown": False, "is_sdown": False},
        {"ip": "10.0.0.9", "port": 6379, "is_odown": False, "is_sdown": True},
    ]
    assert sentinel.filter_slaves(replicas) == [("127.0.0.1", 16379), ("10.0.0.8", 6379)]
