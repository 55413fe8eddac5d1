"""All SQL of the provider inbox (`$n` statements: the ingest runs on the driver pool, the
handler in the session it hands to the handler; see `nespay.db.sql`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from nespay.db import Sql

INSERT = """
INSERT INTO provider_webhooks
    (id, provider, external_id, event_type, body, headers, source_ip)
VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7)
ON CONFLICT (provider, external_id) DO NOTHING
RETURNING id
"""

EXISTING = "SELECT id FROM provider_webhooks WHERE provider = $1 AND external_id = $2"

# The one row a handling may take: still pending and due, not held by another handling (the
# row lock is held until the handling's transaction ends, and dies with its connection).
LOCK_DUE = """
SELECT id, provider, external_id, event_type, body, headers, received_at, attempts
FROM provider_webhooks
WHERE id = $1 AND status = 'pending' AND next_attempt_at <= now()
FOR UPDATE SKIP LOCKED
"""

FINISH = """
UPDATE provider_webhooks
SET status = $2, handled_at = now(), next_attempt_at = NULL, attempts = attempts + 1,
    last_error = NULL
WHERE id = $1
"""

# Rows of a batch that no handler wants, stamped `ignored` at once: the same rows and the same
# stamp as a handling each (pending, due, not held by another handling); returns them.
IGNORE_UNHANDLED = """
WITH due AS (
    SELECT id FROM provider_webhooks
    WHERE id = ANY($1::varchar[]) AND status = 'pending' AND next_attempt_at <= now()
      AND (provider, event_type) NOT IN (SELECT * FROM unnest($2::varchar[], $3::varchar[]))
    FOR UPDATE SKIP LOCKED
)
UPDATE provider_webhooks AS w
SET status = 'ignored', handled_at = now(), next_attempt_at = NULL, attempts = w.attempts + 1,
    last_error = NULL
FROM due WHERE w.id = due.id
RETURNING w.id, w.provider, w.event_type
"""

# A failed try: due again after `$3` seconds, or `dead` when that was the last one allowed.
FAIL = """
UPDATE provider_webhooks
SET attempts = attempts + 1, last_error = $2,
    status = CASE WHEN attempts + 1 >= $4 THEN 'dead' ELSE 'pending' END,
    next_attempt_at = CASE WHEN attempts + 1 >= $4 THEN NULL
                           ELSE now() + make_interval(secs => $3) END
WHERE id = $1
RETURNING status, attempts
"""

# A row never tried has a message on its way: it waits out the grace; a retry has none.
DUE = """
SELECT id FROM provider_webhooks
WHERE status = 'pending'
  AND next_attempt_at <= now() - make_interval(secs => CASE WHEN attempts = 0 THEN $1 ELSE 0 END)
ORDER BY next_attempt_at
LIMIT $2
"""

# A replay: pending and due now, with a fresh count of tries, whatever its status was.
REPLAY = """
UPDATE provider_webhooks
SET status = 'pending', next_attempt_at = now(), attempts = 0, handled_at = NULL,
    replayed_at = now()
WHERE id = $1
RETURNING id
"""

COLUMNS = (
    "id, provider, external_id, event_type, body, headers, source_ip, received_at, status, "
    "attempts, last_error, next_attempt_at, handled_at, replayed_at"
)


async def insert(
    conn: Sql,
    webhook_id: str,
    provider: str,
    external_id: str,
    event_type: str,
    body: bytes,
    headers: dict[str, str],
    source_ip: str | None,
) -> str | None:
    """The new row's id, or None when (provider, external_id) is already stored."""
    return await conn.fetchval(
        INSERT,
        webhook_id,
        provider,
        external_id,
        event_type,
        body,
        orjson.dumps(headers).decode(),
        source_ip,
    )


async def existing_id(conn: Sql, provider: str, external_id: str) -> str | None:
    return await conn.fetchval(EXISTING, provider, external_id)


async def lock_due(conn: Sql, webhook_id: str) -> Any | None:
    rows = await conn.fetch(LOCK_DUE, webhook_id)
    return rows[0] if rows else None


async def finish(conn: Sql, webhook_id: str, status: str) -> None:
    await conn.execute(FINISH, webhook_id, status)


async def ignore_unhandled(
    conn: Sql, webhook_ids: Sequence[str], handled: Sequence[tuple[str, str]]
) -> list[Any]:
    """Stamp `ignored` the rows of `webhook_ids` whose (provider, event type) is not in
    `handled`; returns (id, provider, event_type) of each row stamped."""
    providers = [provider for provider, _ in handled]
    event_types = [event_type for _, event_type in handled]
    return list(await conn.fetch(IGNORE_UNHANDLED, list(webhook_ids), providers, event_types))


async def fail(conn: Sql, webhook_id: str, error: str, retry_in_s: float, max_attempts: int) -> Any:
    return (await conn.fetch(FAIL, webhook_id, error[:500], float(retry_in_s), max_attempts))[0]


async def due(conn: Sql, grace_s: float, limit: int) -> list[str]:
    return [row["id"] for row in await conn.fetch(DUE, float(grace_s), limit)]


async def get(conn: Sql, webhook_id: str, *, for_update: bool = False) -> Any | None:
    lock = " FOR UPDATE" if for_update else ""
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM provider_webhooks WHERE id = $1{lock}",  # noqa: S608
        webhook_id,
    )
    return rows[0] if rows else None


async def replay(conn: Sql, webhook_id: str) -> str | None:
    return await conn.fetchval(REPLAY, webhook_id)


async def search(
    conn: Sql,
    *,
    provider: str | None,
    status: str | None,
    event_type: str | None,
    limit: int,
    starting_after: str | None,
) -> Sequence[Any]:
    """Newest first; filters combine; `starting_after` is the last id of the previous page."""
    return await conn.fetch(
        f"SELECT {COLUMNS} FROM provider_webhooks "  # noqa: S608 - constant columns
        "WHERE ($1::varchar IS NULL OR provider = $1) "
        "AND ($2::varchar IS NULL OR status = $2) "
        "AND ($3::varchar IS NULL OR event_type = $3) "
        "AND ($4::varchar IS NULL OR id < $4) "
        "ORDER BY id DESC LIMIT $5",
        provider,
        status,
        event_type,
        starting_after,
        limit,
    )


def headers_of(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return orjson.loads(value)
    return dict(value or {})
