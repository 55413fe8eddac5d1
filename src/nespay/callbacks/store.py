"""All SQL of callback delivery (asyncpg, batched: one statement serves a whole batch of
deliveries; the ORM's per-statement cost would be most of a delivery's budget).

The delivery row is the truth. A worker *claims* due rows (a lease, so two workers never POST
the same delivery at once and a crashed worker's rows come back when the lease runs out), sends,
then *records* every attempt and moves the row on, in one transaction per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from nespay.callbacks.events import subscribes
from nespay.kit.ids import new_id

# The relay is one at a time across replicas (it makes delivery rows in commit order).
RELAY_LOCK_KEY = 0x6E65_7370_6179_0001  # "nespay" 1


# --- relay -----------------------------------------------------------------------------------

UNPUBLISHED = """
SELECT id, seq, merchant_id, type, subject_id, created_at, data::text AS data
FROM events WHERE published_at IS NULL ORDER BY seq LIMIT $1
"""

# One row per (event, enabled endpoint subscribed to its type); ids are made in Python.
SUBSCRIBERS = f"""
SELECT e.id AS event_id, w.id AS endpoint_id, e.merchant_id, e.subject_id, e.seq
FROM events e JOIN webhook_endpoints w ON w.merchant_id = e.merchant_id
WHERE e.id = ANY($1::text[]) AND {subscribes("w", "e.type")}
ORDER BY e.seq
"""  # noqa: S608 - no input in the f-string: the rule's SQL, written in one place

INSERT_DELIVERIES = """
INSERT INTO webhook_deliveries (id, event_id, endpoint_id, merchant_id, subject_id, event_seq)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[])
ON CONFLICT (event_id, endpoint_id) DO NOTHING
"""

MARK_PUBLISHED = "UPDATE events SET published_at = now() WHERE id = ANY($1::text[])"

PENDING_OF_EVENTS = """
SELECT id FROM webhook_deliveries
WHERE event_id = ANY($1::text[]) AND status = 'pending' ORDER BY event_seq
"""


async def dispatch(conn: asyncpg.Connection, event_ids: Sequence[str]) -> None:
    """Make the delivery rows of `event_ids`. Idempotent: after a crash between this and the
    publish, the next relay dispatches the same (still unpublished) events again."""
    rows = await conn.fetch(SUBSCRIBERS, event_ids)
    if rows:
        await conn.execute(
            INSERT_DELIVERIES,
            [new_id("whd") for _ in rows],
            [r["event_id"] for r in rows],
            [r["endpoint_id"] for r in rows],
            [r["merchant_id"] for r in rows],
            [r["subject_id"] for r in rows],
            [r["seq"] for r in rows],
        )


# --- claim -----------------------------------------------------------------------------------

# The named deliveries ($1) and those of the named events ($3) that are due, not held by a
# live lease, to an enabled endpoint, and with no earlier pending delivery of the same subject
# (invoice) to the same endpoint: that one goes first and wakes this one when it ends.
CLAIM = """
WITH named AS (
    SELECT id, lease_until FROM webhook_deliveries
    WHERE (id = ANY($1::text[]) OR event_id = ANY($3::text[])) AND status = 'pending'
), claimed AS (
    UPDATE webhook_deliveries d
    SET lease_until = now() + make_interval(secs => $2), attempts = d.attempts + 1
    FROM named, events e, webhook_endpoints w
    WHERE d.id = named.id AND d.status = 'pending'
      AND d.next_attempt_at <= now() + interval '1 second'
      AND (d.lease_until IS NULL OR d.lease_until < now())
      AND e.id = d.event_id AND w.id = d.endpoint_id AND w.enabled
      AND NOT EXISTS (
          SELECT 1 FROM webhook_deliveries p
          WHERE p.endpoint_id = d.endpoint_id AND p.subject_id = d.subject_id
            AND p.status = 'pending' AND p.event_seq < d.event_seq)
    RETURNING d.id, d.lease_until, d.attempts, d.window_started_at, d.manual, d.endpoint_id,
              d.subject_id, e.id AS event_id, e.type, e.created_at, e.data::text AS data,
              w.url, w.secret_encrypted, w.previous_secret_encrypted,
              w.previous_secret_expires_at, now() AS now
)
SELECT false AS leased, * FROM claimed
UNION ALL
-- Why the others were not claimed: only a live lease (another worker on it, or a crashed one)
-- needs a later look; done, blocked, not due or disabled rows are woken by what changes them.
SELECT true, id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL
FROM named WHERE lease_until >= now() AND id NOT IN (SELECT id FROM claimed)
"""


@dataclass(frozen=True, slots=True)
class Claimed:
    id: str
    lease_until: datetime  # also the claim's fencing token (see RECORD)
    attempts: int
    window_started_at: datetime
    manual: bool
    endpoint_id: str
    subject_id: str
    event_id: str
    type: str
    created_at: datetime
    data: str
    url: str
    secret_encrypted: str
    previous_secret_encrypted: str | None
    previous_secret_expires_at: datetime | None
    now: datetime


async def claim(
    conn: asyncpg.Connection,
    delivery_ids: Sequence[str],
    lease_s: int,
    event_ids: Sequence[str] = (),
) -> tuple[list[Claimed], list[str]]:
    """Claim what of `delivery_ids` and of `event_ids`' deliveries can go now, in one
    statement. Returns (claimed rows, ids another claim holds a live lease on)."""
    rows = await conn.fetch(CLAIM, list(delivery_ids), float(lease_s), list(event_ids))
    claimed: list[Claimed] = []
    leased: list[str] = []
    for row in rows:
        if row["leased"]:
            leased.append(row["id"])
        else:
            claimed.append(Claimed(*tuple(row)[1:]))
    return claimed, leased


# --- record ----------------------------------------------------------------------------------

# One statement records a batch: its attempts, each row's next step (only a row still held by
# this claim moves: if its lease ran out and another worker took it, or a redelivery reset it
# meanwhile, the row belongs to them; the attempt is recorded all the same), the endpoints
# that answered cleared of `failing_since`, and the result: the earliest pending delivery per
# (endpoint, subject) of each row that just ended, which may go now.
# v.delay_s: seconds until the next attempt (NULL when the row is done).
RECORD = """
WITH attempt AS (
    INSERT INTO webhook_attempts
        (delivery_id, manual, status_code, latency_ms, response_excerpt, error)
    SELECT * FROM unnest($1::text[], $2::bool[], $3::int[], $4::int[], $5::text[], $6::text[])
), moved AS (
    UPDATE webhook_deliveries d SET
        status = v.status,
        next_attempt_at = CASE WHEN v.status = 'pending'
                               THEN now() + make_interval(secs => v.delay_s) END,
        lease_until = NULL,
        manual = false,
        last_attempt_at = now(),
        last_status_code = v.code,
        last_error = v.error,
        succeeded_at = CASE WHEN v.status = 'succeeded' THEN now() ELSE d.succeeded_at END,
        failed_at = CASE WHEN v.status = 'failed' THEN now() END
    FROM unnest($1::text[], $7::text[], $3::int[], $6::text[], $8::float8[], $9::timestamptz[])
         AS v(id, status, code, error, delay_s, lease)
    WHERE d.id = v.id AND d.status = 'pending' AND d.lease_until = v.lease
    RETURNING d.id, d.endpoint_id, d.subject_id, d.status
), healthy AS (
    UPDATE webhook_endpoints SET failing_since = NULL
    WHERE id = ANY($10::text[]) AND failing_since IS NOT NULL
)
SELECT DISTINCT ON (n.endpoint_id, n.subject_id) n.id
FROM webhook_deliveries n
JOIN moved m ON m.status <> 'pending'
            AND n.endpoint_id = m.endpoint_id AND n.subject_id = m.subject_id
WHERE n.status = 'pending' AND n.id NOT IN (SELECT id FROM moved)
ORDER BY n.endpoint_id, n.subject_id, n.event_seq
"""

# Endpoints that just failed: when the first failure happened, and those failing without a
# single success for the whole period are disabled (audit-logged; the merchant is emailed).
FAILED_ENDPOINTS = """
WITH failing AS (
    UPDATE webhook_endpoints SET failing_since = now()
    WHERE id = ANY($1::text[]) AND failing_since IS NULL
), disabled AS (
    UPDATE webhook_endpoints w
    SET enabled = false, disabled_at = now(), updated_at = now(),
        disabled_notice_tried_at = now(), disabled_notice_sent_at = NULL,
        disabled_reason = 'every delivery failed since '
            || to_char(w.failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
    FROM merchants m
    WHERE w.id = ANY($1::text[]) AND w.enabled AND m.id = w.merchant_id
      AND w.failing_since <= now() - make_interval(hours => $2)
    RETURNING w.id, w.merchant_id, w.url, w.failing_since, m.email, m.name
), audit AS (
    INSERT INTO audit_logs
        (actor_type, actor_id, merchant_id, action, target_type, target_id, after)
    SELECT 'system', 'callbacks', merchant_id, 'webhook_endpoint.disabled', 'webhook_endpoint',
           id, jsonb_build_object('enabled', false, 'failing_since', failing_since)
    FROM disabled
)
SELECT * FROM disabled
"""

# Disabled endpoints whose email did not go out (SMTP was down): one replica at a time
# claims them for another try, at most every `$1` seconds.
CLAIM_NOTICES = """
UPDATE webhook_endpoints w SET disabled_notice_tried_at = now()
FROM merchants m
WHERE m.id = w.merchant_id AND NOT w.enabled AND w.disabled_at IS NOT NULL
  AND w.disabled_notice_sent_at IS NULL
  AND w.disabled_notice_tried_at < now() - make_interval(secs => $1)
RETURNING w.id, w.merchant_id, w.url, w.failing_since, m.email, m.name
"""
NOTICE_SENT = "UPDATE webhook_endpoints SET disabled_notice_sent_at = now() WHERE id = $1"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a finished attempt does to its delivery row."""

    delivery: Claimed
    status: str  # succeeded | pending (retry) | failed
    status_code: int | None
    latency_ms: int
    excerpt: str | None
    error: str | None
    delay_s: float | None  # until the next attempt, when pending


async def record(
    conn: asyncpg.Connection, outcomes: Sequence[Outcome], disable_after_h: int
) -> tuple[list[str], list[asyncpg.Record]]:
    """Store the attempts and move the rows: one statement, and a second only when some
    endpoint failed. Returns (deliveries now next in line, endpoints just disabled)."""
    healthy = sorted({o.delivery.endpoint_id for o in outcomes if o.status == "succeeded"})
    failing = sorted({o.delivery.endpoint_id for o in outcomes if o.status != "succeeded"})
    following = await conn.fetch(
        RECORD,
        [o.delivery.id for o in outcomes],
        [o.delivery.manual for o in outcomes],
        [o.status_code for o in outcomes],
        [o.latency_ms for o in outcomes],
        [o.excerpt for o in outcomes],
        [o.error for o in outcomes],
        [o.status for o in outcomes],
        [o.delay_s for o in outcomes],
        [o.delivery.lease_until for o in outcomes],
        healthy,
    )
    disabled: list[asyncpg.Record] = []
    failing = [endpoint for endpoint in failing if endpoint not in healthy]
    if failing:
        disabled = await conn.fetch(FAILED_ENDPOINTS, failing, disable_after_h)
    return [row["id"] for row in following], disabled


# --- sweep -----------------------------------------------------------------------------------

# Due for longer than the grace (their wake-up was lost, or there is no broker), not leased,
# endpoint enabled, first in line for their subject.
DUE = """
SELECT d.id FROM webhook_deliveries d JOIN webhook_endpoints w ON w.id = d.endpoint_id
WHERE d.status = 'pending' AND d.next_attempt_at <= now() - make_interval(secs => $1)
  AND (d.lease_until IS NULL OR d.lease_until < now()) AND w.enabled
  AND NOT EXISTS (
      SELECT 1 FROM webhook_deliveries p
      WHERE p.endpoint_id = d.endpoint_id AND p.subject_id = d.subject_id
        AND p.status = 'pending' AND p.event_seq < d.event_seq)
ORDER BY d.next_attempt_at LIMIT $2
"""


async def due(conn: asyncpg.Connection, grace_s: float, limit: int) -> list[str]:
    return [r["id"] for r in await conn.fetch(DUE, float(grace_s), limit)]
