"""Raw baselines: plain ASGI callables (no framework, no ORM) that do the same work as the
Nespay endpoint they are compared with, served by the same uvicorn settings.

They show what this machine, Python, uvicorn and asyncpg can do at best, so the ratio
Nespay/baseline is the cost of Nespay itself (FastAPI, middleware, SQLAlchemy, validation).
Each is an app factory: `python -m uvicorn bench.baselines:app_bare --factory ...`.
The database apps read `BENCH_DSN` (a plain libpq DSN) and size their asyncpg pool like
Nespay's SQLAlchemy pool (`DATABASE_POOL_SIZE` 10 + `DATABASE_MAX_OVERFLOW` 10).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
from fastapi import FastAPI, Request
from pydantic import BaseModel

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Handler = Callable[[Scope, Receive, Send], Awaitable[None]]

POOL_MIN = int(os.environ.get("BENCH_POOL_MIN", "10"))
POOL_MAX = int(os.environ.get("BENCH_POOL_MAX", "20"))

OK_BODY = orjson.dumps({"status": "ok"})
# What Nespay's health answers with Redis disabled: the baseline sends the same bytes.
HEALTH_BODY = orjson.dumps(
    {"status": "ok", "info": {"database": {"status": "up"}, "redis": {"status": "disabled"}}}
)
JSON_HEADERS = [(b"content-type", b"application/json")]

# The two reads of Nespay's `GET /api/v1/jobs` (nespay.jobs.repository._LIST and
# nespay.jobs.endpoints._NETWORKS), verbatim, so both sides ask PostgreSQL the same thing.
JOBS_SQL = """
    SELECT name, schedule, enabled, next_run_at, lease_owner, lease_expires_at,
           last_started_at, last_finished_at, last_outcome, last_error, last_duration_ms,
           run_count
    FROM job_schedules ORDER BY name
"""
NETWORKS_SQL = """
    SELECT n.code, max(e.head_block) FILTER (WHERE e.status = 'up') AS head,
           count(*) FILTER (WHERE e.status = 'up') AS endpoints_up,
           count(e.id) AS endpoints_total
    FROM networks n LEFT JOIN rpc_endpoints e ON e.network_code = n.code AND e.enabled
    WHERE n.enabled GROUP BY n.code ORDER BY n.code
"""
INSERT_SQL = "INSERT INTO bench_inserts (payload) VALUES ($1::jsonb) RETURNING id"


async def respond(send: Send, body: bytes, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status, "headers": JSON_HEADERS})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def with_pool(handler: Callable[[asyncpg.Pool, Scope, Receive, Send], Awaitable[None]]) -> Handler:
    """Wrap a handler in an ASGI app that owns an asyncpg pool for its lifespan."""
    state: dict[str, asyncpg.Pool] = {}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(state, receive, send)
        elif scope["type"] == "http":
            await handler(state["pool"], scope, receive, send)

    return app


async def _lifespan(state: dict[str, asyncpg.Pool], receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            state["pool"] = await asyncpg.create_pool(
                os.environ["BENCH_DSN"], min_size=POOL_MIN, max_size=POOL_MAX
            )
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await state["pool"].close()
            await send({"type": "lifespan.shutdown.complete"})
            return


# --- the apps ---------------------------------------------------------------------------------


def app_bare() -> Handler:
    """`{"status":"ok"}` on any request: the floor of Python + uvicorn + httptools."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await respond(send, OK_BODY)
        elif scope["type"] == "lifespan":
            await _lifespan_without_state(receive, send)

    return app


async def _lifespan_without_state(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        await send({"type": message["type"] + ".complete"})
        if message["type"] == "lifespan.shutdown":
            return


def app_select1() -> Handler:
    """One `SELECT 1` per request through an asyncpg pool: what a DB health check must cost."""

    async def handler(pool: asyncpg.Pool, scope: Scope, receive: Receive, send: Send) -> None:
        await pool.fetchval("SELECT 1")
        await respond(send, HEALTH_BODY)

    return with_pool(handler)


def app_jobs_read() -> Handler:
    """Nespay's jobs listing done by hand: the same two queries on one connection, same JSON."""

    async def handler(pool: asyncpg.Pool, scope: Scope, receive: Receive, send: Send) -> None:
        async with pool.acquire() as conn:
            jobs = await conn.fetch(JOBS_SQL)
            networks = await conn.fetch(NETWORKS_SQL)
        body = {"jobs": [_job_view(job) for job in jobs], "networks": [dict(n) for n in networks]}
        await respond(send, orjson.dumps(body, default=str, option=orjson.OPT_UTC_Z))

    return with_pool(handler)


def _job_view(row: asyncpg.Record) -> dict[str, Any]:
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


def app_insert() -> Handler:
    """`POST`: one `INSERT` of the JSON body per request (the floor for invoice creation);
    `GET` answers 200 without touching the database (readiness)."""

    async def handler(pool: asyncpg.Pool, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await respond(send, OK_BODY)
            return
        payload = await read_body(receive)
        orjson.loads(payload)  # a real endpoint parses what it stores
        new_id = await pool.fetchval(INSERT_SQL, payload.decode())
        await respond(send, orjson.dumps({"id": new_id}), status=201)

    return with_pool(handler)


class WithdrawalBody(BaseModel):
    """What the FastAPI baseline validates (module level: FastAPI resolves the annotation)."""

    network: str
    currency: str
    amount: str
    address: str


def app_fastapi_insert() -> Any:
    """FastAPI + asyncpg: `POST /withdrawals` validates its JSON body with a pydantic model and
    does one `INSERT … RETURNING id` (the floor the withdrawal benchmark compares with: the
    same framework, none of Nespay's work); `GET /ready` answers without the database."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        app.state.pool = await asyncpg.create_pool(
            os.environ["BENCH_DSN"], min_size=POOL_MIN, max_size=POOL_MAX
        )
        yield
        await app.state.pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/withdrawals", status_code=201)
    async def create(body: WithdrawalBody, request: Request) -> dict[str, Any]:
        new_id = await request.app.state.pool.fetchval(INSERT_SQL, body.model_dump_json())
        return {"id": new_id}

    return app


INBOX_SQL = (
    "INSERT INTO bench_inbox (provider, external_id, body) VALUES ('rain', $1, $2) "
    "ON CONFLICT (provider, external_id) DO NOTHING RETURNING id"
)


def app_inbox_insert() -> Handler:
    """`POST`: a Rain webhook the least it can be received: the `signature` header checked
    (HMAC-SHA256 of the raw body under `BENCH_RAIN_KEY`, constant-time), the JSON parsed, one
    `INSERT … ON CONFLICT DO NOTHING`; `GET` answers 200 (readiness)."""
    import hashlib
    import hmac

    key = os.environ.get("BENCH_RAIN_KEY", "bench-rain-key").encode()

    async def handler(pool: asyncpg.Pool, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await respond(send, OK_BODY)
            return
        payload = await read_body(receive)
        signature = dict(scope["headers"]).get(b"signature", b"")
        expected = hmac.new(key, payload, hashlib.sha256).hexdigest().encode()
        if not hmac.compare_digest(expected, signature):
            await respond(send, b'{"error":"signature"}', status=401)
            return
        event = orjson.loads(payload)
        new_id = await pool.fetchval(INBOX_SQL, str(event["id"]), payload)
        await respond(send, orjson.dumps({"id": new_id, "duplicate": new_id is None}))

    return with_pool(handler)


def app_card_decide() -> Handler:
    """`POST`: a Rain card authorisation decided the least it can be: the `signature` header
    checked (HMAC-SHA256 of the raw body under `BENCH_RAIN_KEY`), the JSON parsed, the fields
    read, then Nespay's own decision statement (`nespay.cards.repository.DECIDE`: store the
    webhook, check card, merchant and balance, hold) in one round trip; 200 `{"code":"ok"}` or
    402. `GET` answers 200 (readiness)."""
    import hashlib
    import hmac
    import secrets as random_ids

    from nespay.cards.repository import DECIDE

    key = os.environ.get("BENCH_RAIN_KEY", "bench-rain-key").encode()

    async def handler(pool: asyncpg.Pool, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await respond(send, OK_BODY)
            return
        payload = await read_body(receive)
        signature = dict(scope["headers"]).get(b"signature", b"")
        expected = hmac.new(key, payload, hashlib.sha256).hexdigest().encode()
        if not hmac.compare_digest(expected, signature):
            await respond(send, b'{"error":"signature"}', status=401)
            return
        event = orjson.loads(payload)
        spend = event["body"]["spend"]
        nonce = random_ids.token_hex(8)
        row = await pool.fetchrow(
            DECIDE,
            f"pwh_raw{nonce}",
            str(event["id"]),
            payload,
            "{}",
            "127.0.0.1",
            spend["cardId"],
            spend["amount"],
            f"cau_raw{nonce}",
            f"btx_raw{nonce}",
            event["body"].get("id"),
            None,
            spend.get("merchantName"),
            spend.get("merchantCategory"),
            spend.get("merchantCountry"),
            spend.get("localAmount"),
            spend.get("localCurrency"),
            spend.get("userId"),
        )
        if row["decision"] == "approved":
            await respond(send, b'{"code":"ok"}')
        else:
            await respond(send, b'{"code":"declined"}', status=402)

    return with_pool(handler)
