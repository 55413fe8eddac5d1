"""All SQL of the job runner: schedule rows, lease claims with fencing tokens, outcomes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_UPSERT = text(
    """
    INSERT INTO job_schedules (name, schedule, enabled, next_run_at)
    VALUES (:name, :schedule, :enabled, :next_run_at)
    ON CONFLICT (name) DO UPDATE SET
        enabled = excluded.enabled,
        schedule = excluded.schedule,
        next_run_at = CASE WHEN job_schedules.schedule <> excluded.schedule
                           THEN excluded.next_run_at ELSE job_schedules.next_run_at END
    """
)

_DUE = text(
    """
    SELECT name FROM job_schedules
    WHERE enabled AND name = ANY(:names) AND next_run_at <= now()
      AND (lease_expires_at IS NULL OR lease_expires_at < now())
    ORDER BY next_run_at
    """
)

_CLAIM = text(
    """
    UPDATE job_schedules SET
        lease_owner = :owner,
        lease_token = lease_token + 1,
        lease_expires_at = now() + make_interval(secs => CAST(:ttl_s AS double precision)),
        last_started_at = now()
    WHERE name = :name AND (CAST(:force AS boolean) OR (enabled AND next_run_at <= now()))
      AND (lease_expires_at IS NULL OR lease_expires_at < now())
    RETURNING lease_token
    """
)

_EXTEND = text(
    """
    UPDATE job_schedules
    SET lease_expires_at = now() + make_interval(secs => CAST(:ttl_s AS double precision))
    WHERE name = :name AND lease_token = :token
    """
)

_FINISH = text(
    """
    UPDATE job_schedules SET
        lease_owner = NULL,
        lease_expires_at = NULL,
        last_finished_at = now(),
        last_outcome = :outcome,
        last_error = :error,
        last_duration_ms = :duration_ms,
        run_count = run_count + 1,
        next_run_at = COALESCE(:next_run_at, next_run_at)
    WHERE name = :name AND lease_token = :token
    """
)

_RUN_SOON = text(
    """
    UPDATE job_schedules SET next_run_at = now()
    WHERE name = :name RETURNING enabled, lease_owner
    """
)

_LIST = text(
    """
    SELECT name, schedule, enabled, next_run_at, lease_owner, lease_expires_at,
           last_started_at, last_finished_at, last_outcome, last_error, last_duration_ms,
           run_count
    FROM job_schedules ORDER BY name
    """
)


async def upsert_schedule(
    conn: AsyncConnection, name: str, schedule: str, enabled: bool, next_run_at: datetime
) -> None:
    await conn.execute(
        _UPSERT,
        {"name": name, "schedule": schedule, "enabled": enabled, "next_run_at": next_run_at},
    )


async def due_jobs(conn: AsyncConnection, names: list[str]) -> list[str]:
    return list((await conn.execute(_DUE, {"names": names})).scalars())


async def claim(
    conn: AsyncConnection, name: str, owner: str, ttl_s: float, *, force: bool = False
) -> int | None:
    row = await conn.execute(_CLAIM, {"name": name, "owner": owner, "ttl_s": ttl_s, "force": force})
    return row.scalar_one_or_none()


async def extend(conn: AsyncConnection, name: str, token: int, ttl_s: float) -> bool:
    result = await conn.execute(_EXTEND, {"name": name, "token": token, "ttl_s": ttl_s})
    return result.rowcount == 1


async def finish(conn: AsyncConnection, name: str, token: int, **outcome: Any) -> bool:
    result = await conn.execute(_FINISH, {"name": name, "token": token, **outcome})
    return result.rowcount == 1


async def list_schedules(conn: AsyncConnection) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in await conn.execute(_LIST)]


async def run_soon(conn: AsyncConnection, name: str) -> dict[str, Any] | None:
    """Make a job due now; the next tick of any replica runs it."""
    row = (await conn.execute(_RUN_SOON, {"name": name})).one_or_none()
    return None if row is None else dict(row._mapping)


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


async def callback_backlog(conn: AsyncConnection) -> dict[str, Any]:
    return dict((await conn.execute(_CALLBACKS)).one()._mapping)


# Money out at a glance: unfinished outgoing transactions per network and status, how many
# are held back (last_error: fee cap, funds, a refused broadcast), and the oldest.
_OUTGOING = text(
    """
    SELECT network_code AS network, status, count(*) AS count,
           count(*) FILTER (WHERE last_error IS NOT NULL) AS with_error,
           min(created_at) AS oldest_created_at
    FROM outgoing_transactions WHERE status NOT IN ('confirmed', 'failed')
    GROUP BY network_code, status ORDER BY network_code, status
    """
)


async def outgoing_backlog(conn: AsyncConnection) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in await conn.execute(_OUTGOING)]


async def last_run(conn: AsyncConnection, name: str) -> dict[str, Any] | None:
    """A job's last outcome and error (None: no such job)."""
    row = (
        await conn.execute(
            text("SELECT last_outcome, last_error FROM job_schedules WHERE name = :name"),
            {"name": name},
        )
    ).one_or_none()
    return None if row is None else dict(row._mapping)
