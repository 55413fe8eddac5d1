"""Redis for the whole app: one client factory (standalone, cluster, sentinel) and `RedisService`,
which serves the cache, rate-limit counters and locks from Redis and keeps serving them from an
in-process cache and PostgreSQL when Redis is disabled or down: losing Redis degrades the app,
it never stops it.

All keys live under `nespay:`. A lock's two keys share a hash tag so its scripts run on a cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from redis import exceptions as redis_errors
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import EqualJitterBackoff
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from nespay.config import Settings, parse_host_port
from nespay.db import Database

log = structlog.get_logger("nespay.redis")

Client = Redis | RedisCluster
Address = tuple[str, int]

# A dead or unreachable server must cost a call little before the fallback serves it.
CONNECT_TIMEOUT_S = 2.0
COMMAND_TIMEOUT_S = 5.0
# What "Redis is unreachable" looks like; anything else (a script error, WRONGTYPE) is a bug and
# propagates instead of silently switching to the fallback.
UNAVAILABLE = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ClusterError,
    redis_errors.RedisClusterException,
    OSError,
)
CACHE = "nespay:cache:"
RATE = "nespay:rate:"
VALUE = "nespay:value:"

# One round trip per counter hit: the window starts with the first hit and its TTL is the reset.
HIT_LUA = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""
# KEYS: lock, fence. The fence key never expires, so tokens keep growing across holders.
ACQUIRE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. ' ' .. ARGV[2], 'PX', ARGV[1])
return token
"""
RELEASE_LUA = """
local value = redis.call('GET', KEYS[1])
if value and string.match(value, '^%d+') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
EXTEND_LUA = """
local value = redis.call('GET', KEYS[1])
if value and string.match(value, '^%d+') == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# Several counters and one plain value in one round trip (the request path's rate limits and
# the auth cache's generation): KEYS = counters…, then the value's key; ARGV = their windows.
# Not for a cluster, where the keys live in different slots.
HITS_LUA = """
local out = {}
for i = 1, #ARGV do
  local count = redis.call('INCR', KEYS[i])
  local ttl = redis.call('PTTL', KEYS[i])
  if ttl < 0 then
    redis.call('PEXPIRE', KEYS[i], ARGV[i])
    ttl = tonumber(ARGV[i])
  end
  out[#out + 1] = count
  out[#out + 1] = ttl
end
out[#out + 1] = redis.call('GET', KEYS[#KEYS])
return out
"""
SCRIPTS = {
    "hit": HIT_LUA,
    "hits": HITS_LUA,
    "acquire": ACQUIRE_LUA,
    "release": RELEASE_LUA,
    "extend": EXTEND_LUA,
}


# --- client -----------------------------------------------------------------------------------


def create_client(settings: Settings) -> Client:
    """The app's Redis client for the configured deployment; nothing is connected yet.

    A command that meets a connection error or timeout is retried REDIS_MAX_RETRIES times, waiting
    REDIS_RETRY_DELAY ms doubling up to REDIS_MAX_RETRY_DELAY ms; equal jitter keeps at least half
    of each wait, so the retry budget has a floor. redis-py's cluster client uses only the count.
    REDIS_DB does not apply to a cluster (database 0 only). REDIS_READY_CHECK, REDIS_LAZY_CONNECT
    and REDIS_OFFLINE_QUEUE are about starting and outages: `RedisService` applies them.
    """
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    common: dict[str, Any] = {
        "username": settings.redis_user,
        "password": password,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_timeout": COMMAND_TIMEOUT_S,
        "retry": Retry(
            EqualJitterBackoff(
                cap=settings.redis_max_retry_delay / 1000, base=settings.redis_retry_delay / 1000
            ),
            settings.redis_max_retries,
        ),
    }
    if settings.redis_cluster_enabled:
        nodes = [ClusterNode(*parse_host_port(node)) for node in settings.redis_cluster_nodes]
        nat = settings.redis_cluster_nat
        remap = (lambda address: _translate(nat, address)) if nat else None
        return _ClusterClient(startup_nodes=nodes, address_remap=remap, **common)
    if settings.redis_sentinel_enabled:
        return _sentinel_client(settings, common)
    return Redis(host=settings.redis_host, port=settings.redis_port, db=settings.redis_db, **common)


class _ClusterClient(RedisCluster):
    """RedisCluster that loads the slot map before routing any command.

    redis-py 8.1 sends a keyed command issued before the map is loaded (first use, or after a
    reset) to a random node; that node's MOVED reply names an address the NAT map never sees.
    `initialize` is a no-op once the map is loaded, so this costs no round trip.
    """

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        await self.initialize()
        return await super().execute_command(*args, **kwargs)


def _translate(nat: dict[Address, Address], address: tuple[Any, Any]) -> Address:
    """An address a server reported → the one this process must dial (REDIS_*_NAT_MAP)."""
    host, port = str(address[0]), int(address[1])
    return nat.get((host, port), (host, port))


class NatSentinel(Sentinel):
    """Sentinel whose reported master and replica addresses go through REDIS_SENTINEL_NAT_MAP.

    Sentinels report the addresses the servers have inside their own network; a client outside
    it (Docker, Kubernetes) must dial the mapped ones. The sentinels are dialled as listed.
    """

    def __init__(self, sentinels: list[Address], nat: dict[Address, Address], **kwargs: Any):
        super().__init__(sentinels, **kwargs)
        self.nat = nat

    async def discover_master(self, service_name: str) -> Address:
        return _translate(self.nat, await super().discover_master(service_name))

    def filter_slaves(self, slaves: Any) -> list[Address]:
        return [_translate(self.nat, address) for address in super().filter_slaves(slaves)]


def _sentinel_client(settings: Settings, common: dict[str, Any]) -> Redis:
    # Sentinels get the timeouts and retries but not the servers' credentials or database.
    sentinel_kwargs = {key: common[key] for key in ("socket_connect_timeout", "socket_timeout")}
    sentinel = NatSentinel(
        [parse_host_port(node) for node in settings.redis_sentinel_nodes],
        settings.redis_sentinel_nat,
        sentinel_kwargs=sentinel_kwargs | {"retry": common["retry"]},
        db=settings.redis_db,
        **common,
    )
    return sentinel.master_for(settings.redis_sentinel_name)


async def close_client(client: Client) -> None:
    """Close a client from `create_client`, including a sentinel client's sentinel connections."""
    await client.aclose()
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    if manager is not None:
        await manager.aclose()


async def _connect(client: Client) -> None:
    """Open a connection without sending a command (REDIS_READY_CHECK=false)."""
    if isinstance(client, RedisCluster):
        await client.initialize()
        return
    connection = await client.connection_pool.get_connection()
    await client.connection_pool.release(connection)


# --- fallbacks --------------------------------------------------------------------------------


class LocalCache:
    """The cache while Redis is unavailable: per process, TTL-bound, and capped at `max_entries`
    (oldest write evicted first) so a long outage cannot exhaust memory."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if expires_at > time.monotonic():
            return value
        del self._entries[key]
        return None

    def set(self, key: str, value: bytes, ttl_s: int) -> None:
        self._entries[key] = (time.monotonic() + ttl_s, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def delete(self, key: str) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()


def _fit(value: str, size: int) -> str:
    """Keep a key within its column: long ones become a prefix plus a digest of the whole."""
    if len(value) <= size:
        return value
    digest = hashlib.sha1(value.encode(), usedforsecurity=False).hexdigest()
    return f"{value[: size - 41]}#{digest}"


class DatabaseFallback:
    """Counters and locks in PostgreSQL (`rate_counters`, `app_locks`), shared by all replicas.

    Times come from the database clock so replicas with skewed clocks agree. Counter windows are
    aligned to the epoch (a window of 60 s resets on the minute).
    """

    SWEEP_EVERY_S = 60.0

    def __init__(self, database: Database) -> None:
        self._engine = database.side_engine
        self._sweep_at = 0.0

    async def hit(self, key: str, window_s: int) -> tuple[int, int]:
        async with self._engine.begin() as conn:
            await self._sweep(conn)
            row = (await conn.execute(HIT_SQL, {"key": _fit(key, 200), "window": window_s})).one()
        return int(row.count), int(row.reset_in)

    async def _sweep(self, conn: AsyncConnection) -> None:
        """Delete expired counters at most once a minute per process, on a counter's way."""
        if time.monotonic() < self._sweep_at:
            return
        self._sweep_at = time.monotonic() + self.SWEEP_EVERY_S
        await conn.execute(text("DELETE FROM rate_counters WHERE expires_at < now()"))

    async def acquire_lock(self, name: str, ttl_s: float, holder: str) -> int | None:
        params = {"name": _fit(name, 200), "holder": holder[:100], "ttl": ttl_s}
        async with self._engine.begin() as conn:
            return await conn.scalar(ACQUIRE_SQL, params)

    async def release_lock(self, name: str, token: int) -> bool:
        return await self._update(RELEASE_SQL, {"name": _fit(name, 200), "token": token})

    async def extend_lock(self, name: str, token: int, ttl_s: float) -> bool:
        params = {"name": _fit(name, 200), "token": token, "ttl": ttl_s}
        return await self._update(EXTEND_SQL, params)

    async def _update(self, statement: Any, params: dict[str, Any]) -> bool:
        async with self._engine.begin() as conn:
            return (await conn.execute(statement, params)).rowcount == 1


HIT_SQL = text("""
WITH w AS (
    SELECT to_timestamp(floor(extract(epoch FROM now()) / CAST(:window AS integer))
                        * CAST(:window AS integer)) AS start
)
INSERT INTO rate_counters AS c (key, window_start, count, expires_at)
SELECT :key, w.start, 1, w.start + make_interval(secs => CAST(:window AS integer)) FROM w
ON CONFLICT (key, window_start) DO UPDATE SET count = c.count + 1
RETURNING c.count, CAST(ceil(extract(epoch FROM c.expires_at - now())) AS integer) AS reset_in
""")
# The row outlives its holders: the next holder's token is the previous one + 1.
ACQUIRE_SQL = text("""
INSERT INTO app_locks AS l (name, holder, token, expires_at)
VALUES (:name, :holder, 1, now() + make_interval(secs => CAST(:ttl AS double precision)))
ON CONFLICT (name) DO UPDATE
SET holder = EXCLUDED.holder, token = l.token + 1, expires_at = EXCLUDED.expires_at
WHERE l.expires_at <= now()
RETURNING l.token
""")
RELEASE_SQL = text("""
UPDATE app_locks SET expires_at = now()
WHERE name = :name AND token = :token AND expires_at > now()
""")
EXTEND_SQL = text("""
UPDATE app_locks SET expires_at = now() + make_interval(secs => CAST(:ttl AS double precision))
WHERE name = :name AND token = :token AND expires_at > now()
""")


# --- service ----------------------------------------------------------------------------------

_SKIPPED: Any = object()  # "Redis was not used for this call": serve it from the fallback.


class RedisService:
    """Cache, fixed-window counters and fenced locks, on Redis or on the fallback.

    REDIS_ENABLED=false: always the fallback (`degraded` is true, health "disabled"). Otherwise a
    call whose command still fails after the client's retries (REDIS_MAX_RETRIES) is served by
    the fallback and the service turns degraded: it logs `redis_degraded` and pings Redis every
    `probe_interval_s` until it answers, then logs `redis_recovered` and switches back.

    While degraded, REDIS_OFFLINE_QUEUE decides what a call does. false: it goes straight to the
    fallback, with no Redis round trip (fail fast). true: it still tries Redis first and waits
    for a reconnection up to the retry budget, then falls back; a slow call beats a fallback
    answer. Nothing is carried across a switch: counters restart, a lock held on one side is
    unknown to the other, and tokens from Redis and from the database are separate sequences.
    Cache entries written or deleted while degraded are deleted from Redis on recovery, so it
    cannot serve what the fallback made stale.
    """

    def __init__(
        self,
        settings: Settings,
        database: Database,
        *,
        probe_interval_s: float = 5.0,
        local_cache_size: int = 10_000,
    ) -> None:
        self._settings = settings
        self._fallback = DatabaseFallback(database)
        self._local = LocalCache(local_cache_size)
        self._client = create_client(settings) if settings.redis_enabled else None
        self._scripts = (
            {name: self._client.register_script(lua) for name, lua in SCRIPTS.items()}
            if self._client is not None
            else {}
        )
        self._secret = settings.redis_password.get_secret_value() if settings.redis_password else ""
        self._probe_interval_s = probe_interval_s
        self._degraded = False
        self._last_error: str | None = None
        self._stale: set[str] = set()
        self._pending_bumps: set[str] = set()
        self._probe_task: asyncio.Task[None] | None = None

    @property
    def degraded(self) -> bool:
        return self._client is None or self._degraded

    async def start(self) -> None:
        """Connect (and PING with REDIS_READY_CHECK) unless REDIS_LAZY_CONNECT. Never raises:
        if Redis does not answer, the service starts degraded."""
        if self._client is None or self._settings.redis_lazy_connect:
            return
        try:
            ready_check = self._settings.redis_ready_check
            await (self._client.ping() if ready_check else _connect(self._client))
        except UNAVAILABLE as error:
            self._fail(error)

    async def close(self) -> None:
        if self._probe_task is not None:
            self._probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe_task
        if self._client is not None:
            await close_client(self._client)

    async def health(self) -> tuple[str, str | None]:
        """("disabled", None), ("up", None) or ("down", the last error, without credentials)."""
        if self._client is None:
            return "disabled", None
        if not self._degraded:
            try:
                await self._client.ping()
                return "up", None
            except UNAVAILABLE as error:
                self._fail(error)
        return "down", self._last_error

    # --- cache ---------------------------------------------------------------------------------

    async def cache_get(self, key: str) -> bytes | None:
        value = await self._try(lambda r: r.get(CACHE + key))
        return self._local.get(key) if value is _SKIPPED else value

    async def cache_set(self, key: str, value: bytes, ttl_s: int) -> None:
        if await self._try(lambda r: r.set(CACHE + key, value, ex=ttl_s)) is _SKIPPED:
            self._local.set(key, value, ttl_s)
            self._note_stale(key)

    async def cache_delete(self, key: str) -> None:
        if await self._try(lambda r: r.delete(CACHE + key)) is _SKIPPED:
            self._local.delete(key)
            self._note_stale(key)

    def _note_stale(self, key: str) -> None:
        # Bounded: past the cap, what Redis still holds expires by its own TTL.
        if self._client is not None and len(self._stale) < 10 * self._local.max_entries:
            self._stale.add(key)

    # --- counters and locks --------------------------------------------------------------------

    async def hit(self, key: str, window_s: int) -> tuple[int, int]:
        """Count a hit in `key`'s current window: (hits so far in it, seconds until it resets)."""
        result = await self._try(
            lambda r: self._scripts["hit"](keys=[RATE + key], args=[window_s * 1000], client=r)
        )
        if result is _SKIPPED:
            return await self._fallback.hit(key, window_s)
        count, ttl_ms = result
        return int(count), max(1, math.ceil(int(ttl_ms) / 1000))

    async def hits(
        self, counters: list[tuple[str, int]], value_key: str
    ) -> tuple[list[tuple[int, int]], bytes | None, bool]:
        """Count a hit in each `(key, window_s)` and read the plain value `value_key`, in one
        round trip where Redis serves: (per counter (hits, seconds until reset), the value,
        whether Redis answered). From the fallback the value is None and the flag false: a
        value that only Redis keeps (a cache generation) is unknown there."""
        if self._client is not None and not isinstance(self._client, RedisCluster):
            keys = [RATE + key for key, _ in counters] + [VALUE + value_key]
            args = [window_s * 1000 for _, window_s in counters]
            result = await self._try(lambda r: self._evalsha(r, "hits", keys, args))
            if result is not _SKIPPED:
                pairs = [
                    (int(result[i]), max(1, math.ceil(int(result[i + 1]) / 1000)))
                    for i in range(0, 2 * len(counters), 2)
                ]
                return pairs, result[-1], True
        else:
            value = await self._try(lambda r: r.get(VALUE + value_key))
            if value is not _SKIPPED:
                pairs = [await self.hit(key, window_s) for key, window_s in counters]
                return pairs, value, True
        pairs = [await self._fallback.hit(key, window_s) for key, window_s in counters]
        return pairs, None, False

    async def _evalsha(self, client: Client, name: str, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA straight on the client (redis-py's Script wrapper costs more than the round
        trip on a hot path); the script is loaded when the server does not know it yet."""
        script = self._scripts[name]
        try:
            return await client.evalsha(script.sha, len(keys), *keys, *args)
        except redis_errors.NoScriptError:
            return await script(keys=keys, args=args, client=client)

    async def bump(self, value_key: str) -> bool:
        """Increment the plain counter `value_key` (a cache generation); false if Redis did not
        take it, in which case it is bumped again as soon as Redis is back."""
        if await self._try(lambda r: r.incr(VALUE + value_key)) is _SKIPPED:
            if self._client is not None:
                self._pending_bumps.add(value_key)
            return False
        return True

    async def acquire_lock(self, name: str, ttl_s: float, holder: str) -> int | None:
        """Take the lease `name` for `ttl_s` seconds: its fencing token, or None if it is held.

        Tokens grow with every holder, so a resource can refuse a holder whose lease was lost.
        """
        args = [_ms(ttl_s), holder]
        token = await self._try(
            lambda r: self._scripts["acquire"](keys=_lock_keys(name), args=args, client=r)
        )
        if token is _SKIPPED:
            return await self._fallback.acquire_lock(name, ttl_s, holder)
        return None if token is None else int(token)

    async def release_lock(self, name: str, token: int) -> bool:
        """Give the lease back; false if `token` no longer holds it (expired or taken over)."""
        released = await self._try(
            lambda r: self._scripts["release"](keys=_lock_keys(name)[:1], args=[token], client=r)
        )
        if released is _SKIPPED:
            return await self._fallback.release_lock(name, token)
        return bool(released)

    async def extend_lock(self, name: str, token: int, ttl_s: float) -> bool:
        """Renew the lease for `ttl_s` from now; false if `token` no longer holds it."""
        args = [token, _ms(ttl_s)]
        extended = await self._try(
            lambda r: self._scripts["extend"](keys=_lock_keys(name)[:1], args=args, client=r)
        )
        if extended is _SKIPPED:
            return await self._fallback.extend_lock(name, token, ttl_s)
        return bool(extended)

    # --- availability --------------------------------------------------------------------------

    async def _try(self, command: Callable[[Client], Awaitable[Any]]) -> Any:
        """Run `command` on Redis, or return `_SKIPPED` when the fallback must serve the call."""
        if self._client is None or (self._degraded and not self._settings.redis_offline_queue):
            return _SKIPPED
        try:
            return await command(self._client)
        except UNAVAILABLE as error:
            self._fail(error)
            return _SKIPPED

    def _fail(self, error: BaseException) -> None:
        self._last_error = self._describe(error)
        if self._degraded:
            return
        self._degraded = True
        log.warning("redis_degraded", error=self._last_error)
        self._probe_task = asyncio.get_running_loop().create_task(self._probe(self._client))

    async def _probe(self, client: Client) -> None:
        """While degraded: ping until Redis answers, clear what went stale, switch back."""
        while True:
            await asyncio.sleep(self._probe_interval_s)
            try:
                await client.ping()
                await self._forget_stale(client)
            except (redis_errors.RedisError, *UNAVAILABLE) as error:
                self._last_error = self._describe(error)
                continue
            self._degraded = False
            log.info("redis_recovered")
            return

    async def _forget_stale(self, client: Client) -> None:
        while self._stale:
            batch = set(self._stale)
            await client.delete(*(CACHE + key for key in batch))
            self._stale -= batch
        self._local.clear()
        for key in list(self._pending_bumps):
            await client.incr(VALUE + key)
            self._pending_bumps.discard(key)

    def _describe(self, error: BaseException) -> str:
        """A short, log- and health-safe description: the password never appears in it."""
        message = f"{type(error).__name__}: {error}"
        if self._secret:
            message = message.replace(self._secret, "***")
        return message[:200]


def _lock_keys(name: str) -> list[str]:
    """The lease key and its fencing counter, in one hash slot."""
    return [f"nespay:lock:{{{name}}}", f"nespay:lock:{{{name}}}:token"]


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
