"""All SQL of card issuing: `$n` statements on the caller's connection (`nespay.db.sql`), and
the authorisation decision — one statement on the driver pool (`DECIDE`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from nespay.db import Sql

if TYPE_CHECKING:
    from nespay.cards.authorisations import Requested
    from nespay.inbox.verify import Received

# The authorisation, decided and recorded in one statement (see `nespay.cards.authorisations`).
# Every sub-statement sees the same snapshot; the UPDATE of the card user's account row locks
# it and, should a concurrent authorisation have changed it meanwhile, re-checks its WHERE
# (the balance) on the row as committed: no two holds can overdraw it.
DECIDE = """
WITH stored AS (
    INSERT INTO provider_webhooks (id, provider, external_id, event_type, body, headers,
                                   source_ip, status, attempts, handled_at, next_attempt_at)
    VALUES ($1, 'rain', $2, 'transaction.requested', $3, $4::jsonb, $5, 'handled', 1, now(),
            NULL)
    ON CONFLICT (provider, external_id) DO NOTHING
    RETURNING id
), card AS (
    SELECT k.id AS card_id, k.status AS card_status, k.merchant_id, u.id AS card_user_id,
           u.currency_id, u.is_active, m.status AS merchant_status,
           $7::bigint * u.cent_units AS amount,
           'c:' || u.id || ':available:' || u.currency_id AS available_id,
           'c:' || u.id || ':spend:' || u.currency_id AS spend_id
    FROM cards k
    JOIN card_users u ON u.id = k.card_user_id
    JOIN merchants m ON m.id = k.merchant_id
    WHERE k.rain_card_id = $6::text AND $11::text IS NULL
      AND ($17::text IS NULL OR u.rain_user_id = $17::text)
      AND EXISTS (SELECT 1 FROM stored)
), verdict AS (
    SELECT card.*, CASE
        WHEN merchant_status <> 'active' THEN 'merchant_suspended'
        WHEN card_status <> 'active' THEN 'card_' || card_status
        WHEN NOT is_active THEN 'card_user_inactive'
        WHEN currency_id IS NULL THEN 'card_user_not_funded'
        END AS refusal
    FROM card
), debit AS (
    UPDATE ledger_accounts a SET debits_pending = a.debits_pending + v.amount
    FROM verdict v
    WHERE v.refusal IS NULL AND v.amount > 0 AND a.id = v.available_id
      AND a.debits_posted + a.debits_pending + v.amount <= a.credits_posted
      AND EXISTS (SELECT 1 FROM ledger_accounts s WHERE s.id = v.spend_id)
    RETURNING a.id, v.amount
), credit AS (
    UPDATE ledger_accounts a SET credits_pending = a.credits_pending + d.amount
    FROM debit d, verdict v
    WHERE a.id = v.spend_id
    RETURNING a.id
), transfer AS (
    INSERT INTO ledger_transfers (id, key, type, code, debit_account_id, credit_account_id,
                                  currency_id, amount, source_type, source_id)
    SELECT $9, $8 || '/hold', 'pending', 'card_authorisation', d.id, c.id, v.currency_id,
           d.amount, 'card_authorisation', $8
    FROM debit d, credit c, verdict v
    RETURNING amount
), decided AS (
    SELECT CASE
        WHEN $11::text IS NOT NULL THEN $11::text
        WHEN NOT EXISTS (SELECT 1 FROM verdict) THEN 'unknown_card'
        WHEN (SELECT refusal FROM verdict) IS NOT NULL THEN (SELECT refusal FROM verdict)
        WHEN $7::bigint <= 0 THEN NULL
        WHEN EXISTS (SELECT 1 FROM transfer) THEN NULL
        ELSE 'insufficient_funds'
        END AS reason
), auth AS (
    INSERT INTO card_authorisations (id, request_id, rain_transaction_id, rain_card_id,
        merchant_id, card_user_id, card_id, currency_id, amount_cents, held, decision,
        decline_reason, status, merchant_name, merchant_category, merchant_country,
        local_amount, local_currency)
    SELECT $8, $2, $10, $6, v.merchant_id, v.card_user_id, v.card_id, v.currency_id, $7,
           coalesce((SELECT amount FROM transfer), 0),
           CASE WHEN d.reason IS NULL THEN 'approved' ELSE 'declined' END, d.reason,
           CASE WHEN d.reason IS NULL THEN 'pending' ELSE 'declined' END,
           $12, $13, $14, $15, $16
    FROM decided d LEFT JOIN verdict v ON true
    WHERE EXISTS (SELECT 1 FROM stored)
    RETURNING decision, decline_reason
)
SELECT (SELECT id FROM stored) AS stored_id, (SELECT decision FROM auth) AS decision,
       (SELECT decline_reason FROM auth) AS reason
"""

# A Rain retry (the same event id): the stored webhook and the decision it got (its own, or
# that of the Rain transaction it repeated).
_EARLIER = """
SELECT w.id AS stored_id, a.decision, a.decline_reason AS reason
FROM provider_webhooks w
LEFT JOIN card_authorisations a ON a.id = coalesce(
    (SELECT id FROM card_authorisations WHERE request_id = $1),
    (SELECT id FROM card_authorisations WHERE rain_transaction_id = $2))
WHERE w.provider = 'rain' AND w.external_id = $1
"""

# Another event for a Rain transaction already decided: stored (handled), its decision.
_REPEAT = """
WITH stored AS (
    INSERT INTO provider_webhooks (id, provider, external_id, event_type, body, headers,
                                   source_ip, status, attempts, handled_at, next_attempt_at)
    VALUES ($1, 'rain', $2, 'transaction.requested', $3, $4::jsonb, $5, 'handled', 1, now(),
            NULL)
    ON CONFLICT (provider, external_id) DO NOTHING
    RETURNING id
)
SELECT (SELECT id FROM stored) AS stored_id, a.decision, a.decline_reason AS reason
FROM (SELECT 1) one
LEFT JOIN card_authorisations a ON a.rain_transaction_id = $6
"""


async def decide(
    conn: Any,
    *,
    webhook_id: str,
    external_id: str,
    body: bytes,
    headers: str,
    source_ip: str | None,
    authorisation_id: str,
    transfer_id: str,
    request: Requested,
) -> Any:
    return await conn.fetchrow(
        DECIDE,
        webhook_id,
        external_id,
        body,
        headers,
        source_ip,
        request.rain_card_id,
        request.amount_cents,
        authorisation_id,
        transfer_id,
        request.rain_transaction_id,
        request.refusal,
        request.merchant_name,
        request.merchant_category,
        request.merchant_country,
        request.local_amount,
        request.local_currency,
        request.rain_user_id,
    )


async def earlier_decision(conn: Any, external_id: str, rain_transaction_id: str | None) -> Any:
    return await conn.fetchrow(_EARLIER, external_id, rain_transaction_id)


async def repeat(
    conn: Any, webhook_id: str, received: Received, rain_transaction_id: str | None
) -> Any:
    return await conn.fetchrow(
        _REPEAT,
        webhook_id,
        received.external_id,
        received.body,
        orjson.dumps(received.headers).decode(),
        received.source_ip,
        rain_transaction_id,
    )


# --- card users ---------------------------------------------------------------------------

USER_COLUMNS = """
u.id, u.merchant_id, u.rain_user_id, u.reference, u.first_name, u.last_name, u.email,
u.application_status, u.application_reason, u.is_active, u.currency_id, u.cent_units,
u.request_hash, u.created_at, u.updated_at, c.code AS currency, c.network_code, c.decimals
"""

_USER = f"""
SELECT {USER_COLUMNS} FROM card_users u LEFT JOIN currencies c ON c.id = u.currency_id
WHERE u.id = $1 AND ($2::text IS NULL OR u.merchant_id = $2)
"""  # noqa: S608 - constant columns

_USER_BY_KEY = f"""
SELECT {USER_COLUMNS} FROM card_users u LEFT JOIN currencies c ON c.id = u.currency_id
WHERE u.merchant_id = $1 AND u.idempotency_key = $2
"""  # noqa: S608

_USER_BY_RAIN_ID = f"""
SELECT {USER_COLUMNS} FROM card_users u LEFT JOIN currencies c ON c.id = u.currency_id
WHERE u.rain_user_id = $1 FOR UPDATE OF u
"""  # noqa: S608

_INSERT_USER = """
INSERT INTO card_users (id, merchant_id, rain_user_id, reference, first_name, last_name, email,
                        application_status, application_reason, is_active, idempotency_key,
                        request_hash)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT DO NOTHING
RETURNING id
"""

_UPDATE_APPLICATION = """
UPDATE card_users SET application_status = $2, application_reason = $3, is_active = $4,
    updated_at = now()
WHERE id = $1
"""

# The first funding fixes the card user's currency; a later one must name the same.
_FIX_CURRENCY = """
UPDATE card_users SET currency_id = $2, cent_units = $3, updated_at = now()
WHERE id = $1 AND (currency_id IS NULL OR currency_id = $2)
RETURNING id
"""

_LOCK_USER = _USER + " FOR UPDATE OF u"


async def user(db: Sql, card_user_id: str, merchant_id: str | None) -> Any | None:
    rows = await db.fetch(_USER, card_user_id, merchant_id)
    return rows[0] if rows else None


async def lock_user(db: Sql, card_user_id: str, merchant_id: str | None) -> Any | None:
    rows = await db.fetch(_LOCK_USER, card_user_id, merchant_id)
    return rows[0] if rows else None


async def user_by_key(db: Sql, merchant_id: str, key: str) -> Any | None:
    rows = await db.fetch(_USER_BY_KEY, merchant_id, key)
    return rows[0] if rows else None


async def lock_user_by_rain_id(db: Sql, rain_user_id: str) -> Any | None:
    rows = await db.fetch(_USER_BY_RAIN_ID, rain_user_id)
    return rows[0] if rows else None


async def insert_user(db: Sql, values: Sequence[Any]) -> str | None:
    return await db.fetchval(_INSERT_USER, *values)


async def update_application(
    db: Sql, card_user_id: str, status: str, reason: str | None, active: bool
) -> None:
    await db.execute(_UPDATE_APPLICATION, card_user_id, status, reason, active)


async def fix_currency(db: Sql, card_user_id: str, currency_id: str, cent_units: int) -> bool:
    return bool(await db.fetchval(_FIX_CURRENCY, card_user_id, currency_id, cent_units))


async def currency(db: Sql, network: str, code: str) -> Any | None:
    rows = await db.fetch(
        "SELECT c.id, c.code, c.decimals, c.network_code FROM currencies c"
        " JOIN networks n ON n.code = c.network_code WHERE c.network_code = $1 AND c.code = $2",
        network,
        code,
    )
    return rows[0] if rows else None


async def account_balances(db: Sql, account_ids: list[str]) -> Sequence[Any]:
    """The card user's accounts (available, spend) with their currency."""
    return await db.fetch(
        "SELECT a.kind, a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted,"
        " c.code, c.network_code, c.decimals FROM ledger_accounts a"
        " JOIN currencies c ON c.id = a.currency_id"
        " WHERE a.id = ANY($1::text[]) ORDER BY a.id",
        account_ids,
    )


# --- cards ----------------------------------------------------------------------------------

CARD_COLUMNS = """
k.id, k.merchant_id, k.card_user_id, k.rain_card_id, k.type, k.status, k.last4,
k.expiration_month, k.expiration_year, k.limit_cents, k.limit_frequency, k.request_hash,
k.created_at, k.updated_at
"""

_CARD = f"""
SELECT {CARD_COLUMNS} FROM cards k WHERE k.id = $1 AND ($2::text IS NULL OR k.merchant_id = $2)
"""  # noqa: S608

_CARD_BY_KEY = f"""
SELECT {CARD_COLUMNS} FROM cards k WHERE k.merchant_id = $1 AND k.idempotency_key = $2
"""  # noqa: S608

_CARD_BY_RAIN_ID = f"""
SELECT {CARD_COLUMNS} FROM cards k WHERE k.rain_card_id = $1 FOR UPDATE
"""  # noqa: S608

_INSERT_CARD = """
INSERT INTO cards (id, merchant_id, card_user_id, rain_card_id, type, status, last4,
                   expiration_month, expiration_year, limit_cents, limit_frequency,
                   idempotency_key, request_hash)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT DO NOTHING
RETURNING id
"""

_UPDATE_CARD = """
UPDATE cards SET status = $2, limit_cents = $3, limit_frequency = $4,
    last4 = coalesce($5, last4), expiration_month = coalesce($6, expiration_month),
    expiration_year = coalesce($7, expiration_year), updated_at = now()
WHERE id = $1
"""


async def card(db: Sql, card_id: str, merchant_id: str | None) -> Any | None:
    rows = await db.fetch(_CARD, card_id, merchant_id)
    return rows[0] if rows else None


async def lock_card(db: Sql, card_id: str, merchant_id: str | None) -> Any | None:
    rows = await db.fetch(_CARD + " FOR UPDATE", card_id, merchant_id)
    return rows[0] if rows else None


async def card_by_key(db: Sql, merchant_id: str, key: str) -> Any | None:
    rows = await db.fetch(_CARD_BY_KEY, merchant_id, key)
    return rows[0] if rows else None


async def lock_card_by_rain_id(db: Sql, rain_card_id: str) -> Any | None:
    rows = await db.fetch(_CARD_BY_RAIN_ID, rain_card_id)
    return rows[0] if rows else None


async def insert_card(db: Sql, values: Sequence[Any]) -> str | None:
    return await db.fetchval(_INSERT_CARD, *values)


async def update_card(db: Sql, card_id: str, fields: dict[str, Any]) -> None:
    await db.execute(
        _UPDATE_CARD,
        card_id,
        fields["status"],
        fields["limit_cents"],
        fields["limit_frequency"],
        fields.get("last4"),
        fields.get("expiration_month"),
        fields.get("expiration_year"),
    )


async def cards_of_user(db: Sql, card_user_id: str) -> Sequence[Any]:
    return await db.fetch(
        f"SELECT {CARD_COLUMNS} FROM cards k WHERE k.card_user_id = $1 ORDER BY k.id",  # noqa: S608
        card_user_id,
    )


# --- authorisations (card transactions) -----------------------------------------------------

AUTH_COLUMNS = """
a.id, a.request_id, a.rain_transaction_id, a.rain_card_id, a.merchant_id, a.card_user_id,
a.card_id, a.currency_id, a.amount_cents, a.held, a.settled_cents, a.decision,
a.decline_reason, a.status, a.merchant_name, a.merchant_category, a.merchant_country,
a.local_amount, a.local_currency, a.created_at, a.updated_at
"""

# The authorisation a later transaction event is about: by Rain's transaction id, else (a
# request that carried none) the oldest approved one still pending on that card for the same
# amount that no Rain transaction claimed yet.
_AUTH_FOR_EVENT = f"""
SELECT {AUTH_COLUMNS} FROM card_authorisations a
WHERE a.id = coalesce(
    (SELECT id FROM card_authorisations WHERE rain_transaction_id = $1),
    (SELECT id FROM card_authorisations
     WHERE rain_transaction_id IS NULL AND rain_card_id = $2 AND amount_cents = $3
       AND decision = 'approved' AND status = 'pending'
     ORDER BY id LIMIT 1))
FOR UPDATE
"""  # noqa: S608

_INSERT_AUTH = """
INSERT INTO card_authorisations (id, rain_transaction_id, rain_card_id, merchant_id,
    card_user_id, card_id, currency_id, amount_cents, decision, status, merchant_name,
    merchant_category, merchant_country, local_amount, local_currency)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'approved', 'pending', $9, $10, $11, $12, $13)
ON CONFLICT DO NOTHING
RETURNING id
"""

_SET_AUTH = """
UPDATE card_authorisations SET status = $2, settled_cents = coalesce($3, settled_cents),
    rain_transaction_id = coalesce(rain_transaction_id, $4), updated_at = now()
WHERE id = $1
"""

_TRANSACTIONS = f"""
SELECT {AUTH_COLUMNS}, c.code AS currency, c.network_code, c.decimals
FROM card_authorisations a LEFT JOIN currencies c ON c.id = a.currency_id
WHERE a.card_id = $1 AND ($2::text IS NULL OR a.id < $2)
ORDER BY a.id DESC LIMIT $3
"""  # noqa: S608


async def auth_for_event(
    db: Sql, rain_transaction_id: str | None, rain_card_id: str | None, amount_cents: int
) -> Any | None:
    rows = await db.fetch(_AUTH_FOR_EVENT, rain_transaction_id, rain_card_id, amount_cents)
    return rows[0] if rows else None


async def insert_auth(db: Sql, values: Sequence[Any]) -> str | None:
    return await db.fetchval(_INSERT_AUTH, *values)


async def set_auth(
    db: Sql,
    auth_id: str,
    status: str,
    *,
    settled_cents: int | None = None,
    rain_transaction_id: str | None = None,
) -> None:
    await db.execute(_SET_AUTH, auth_id, status, settled_cents, rain_transaction_id)


async def auth(db: Sql, auth_id: str) -> Any | None:
    """The authorisation with its currency (for its view)."""
    rows = await db.fetch(
        f"SELECT {AUTH_COLUMNS}, c.code AS currency, c.network_code, c.decimals"  # noqa: S608
        " FROM card_authorisations a LEFT JOIN currencies c ON c.id = a.currency_id"
        " WHERE a.id = $1",
        auth_id,
    )
    return rows[0] if rows else None


async def transactions(
    db: Sql, card_id: str, *, starting_after: str | None, limit: int
) -> Sequence[Any]:
    return await db.fetch(_TRANSACTIONS, card_id, starting_after, limit)
