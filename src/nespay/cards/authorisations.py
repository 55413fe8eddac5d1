"""Card authorisations (`transaction.requested`): decided synchronously, in one statement.

Rain asks whether to approve a card payment and waits for the answer (200 `{"code":"ok"}`
approves; anything else declines, with a `rejectionCode`). The decision never waits on a
chain or a remote call: it is one PostgreSQL round trip (`repository.DECIDE`) that

1. stores the webhook in the inbox, already `handled` (so it is never queued), unless its
   event id is stored already — a Rain retry, which gets the stored decision and changes
   nothing;
2. finds the card by Rain's card id with its card user and merchant;
3. holds the amount on the card user's account — only if the card is active, the merchant
   not suspended, the card user funded, and its available balance covers it, all in the
   `WHERE` of the UPDATE of that account's row (no read-then-write window: concurrent
   authorisations on one card user queue on the row and each re-checks the balance);
4. records the hold as a pending ledger transfer (`{authorisation}/hold`, card user →
   spend) and the authorisation with its decision.

Amounts are USD cents (Rain's `spend.amount`); the card user's account holds a USD
stablecoin, so a cent is `cent_units` base units (10^(decimals−2)): held at par. An amount
of zero or less (a card check, a refund being authorised) holds nothing and is approved for
an active card. A non-USD `spend.currency` or a body that is not Rain's shape is declined
(`UNKNOWN`), still stored."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
import structlog
from prometheus_client import Counter

from nespay.cards import repository
from nespay.inbox.verify import Received
from nespay.kit.ids import new_id
from nespay.kit.text import printable
from nespay.metrics import PROVIDER_WEBHOOKS_RECEIVED
from nespay.runtime import Runtime

log = structlog.get_logger("nespay.cards")

DECISIONS = Counter(
    "nespay_card_authorisations_total",
    "Card authorisations decided, by decision and reason (`ok` for an approval).",
    ["decision", "reason"],
)
MAX_CENTS = 10**12  # ten billion dollars: anything larger is not Rain's

# Why a decline → Rain's rejectionCode.
REJECTION_CODES = {
    "insufficient_funds": "INSUFFICIENT_FUNDS",
    "malformed": "UNKNOWN",
    "currency_not_usd": "UNKNOWN",
    "unavailable": "UNKNOWN",
}
# The database cannot be reached (down, out of connections, a connection cut): nothing can be
# stored or held, so the request is declined — never approved unchecked, never a 500.
UNREACHABLE = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.InsufficientResourcesError,
    # 57xxx: the server shutting down or cutting the connection (and a statement cancelled).
    asyncpg.exceptions.OperatorInterventionError,
)


@dataclass(frozen=True)
class Decision:
    webhook_id: str | None  # None: not stored (the database could not be reached)
    approved: bool
    reason: str | None  # why it was declined
    duplicate: bool

    @property
    def rejection_code(self) -> str:
        return REJECTION_CODES.get(self.reason or "", "NOT_PERMITTED")

    def answer(self) -> tuple[int, dict[str, Any]]:
        """Rain's answer: 200 approves, 402 declines (503 when nothing could be stored)."""
        if self.approved:
            return 200, {"code": "ok"}
        return 503 if self.webhook_id is None else 402, {
            "code": "declined",
            "rejectionCode": self.rejection_code,
            "reason": self.reason,
            "id": self.webhook_id,
        }


@dataclass(frozen=True)
class Requested:
    """What an authorisation request says, read defensively (`refusal` when unusable)."""

    rain_card_id: str | None
    rain_user_id: str | None
    rain_transaction_id: str | None
    amount_cents: int
    refusal: str | None
    merchant_name: str | None = None
    merchant_category: str | None = None
    merchant_country: str | None = None
    local_amount: int | None = None
    local_currency: str | None = None


def text(value: Any, limit: int) -> str | None:
    """A string field as it may be stored: unstorable characters spelled out, cut to size."""
    if not isinstance(value, str) or not value:
        return None
    return printable(value)[:limit]


def cents(value: Any) -> int | None:
    """A JSON integer of cents (never a bool, a float or a string), within bounds."""
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) >= MAX_CENTS:
        return None
    return value


def parse(payload: dict[str, Any]) -> Requested:
    body = payload.get("body")
    spend = body.get("spend") if isinstance(body, dict) else None
    if not isinstance(spend, dict):
        return Requested(None, None, None, 0, "malformed")
    amount = cents(spend.get("amount"))
    card_id = text(spend.get("cardId"), 100)
    refusal = None
    if amount is None or card_id is None:
        refusal = "malformed"
    elif str(spend.get("currency", "")).lower() != "usd":
        refusal = "currency_not_usd"
    return Requested(
        rain_card_id=card_id,
        rain_user_id=text(spend.get("userId"), 100),
        rain_transaction_id=text(body.get("id"), 100),  # type: ignore[union-attr]
        amount_cents=amount or 0,
        refusal=refusal,
        merchant_name=text(spend.get("merchantName"), 200),
        merchant_category=text(spend.get("merchantCategory"), 100),
        merchant_country=text(spend.get("merchantCountry"), 8),
        local_amount=cents(spend.get("localAmount")),
        local_currency=text(spend.get("localCurrency"), 8),
    )


async def decide(runtime: Runtime, received: Received) -> Decision:
    """Store `received` (a verified `transaction.requested`) and decide it; see the module
    docstring. One statement on the driver pool, committed by itself."""
    request = parse(received.payload)
    connection = contextlib.AsyncExitStack()
    try:
        # Any failure to get a connection (refused, out of connections, the database not
        # accepting any) or to keep it is the database being unreachable.
        try:
            conn = await connection.enter_async_context(runtime.db.driver())
        except Exception as error:  # noqa: BLE001 - whatever stops us reaching it
            raise _Unreachable() from error
        async with connection:
            return await _decide(conn, received, request)
    except (_Unreachable, *UNREACHABLE) as error:
        cause = error.__cause__ if isinstance(error, _Unreachable) else error
        DECISIONS.labels("declined", "unavailable").inc()
        log.error(
            "card_authorisation_unavailable",
            error=type(cause).__name__,
            event_id=received.external_id,
            amount_cents=request.amount_cents,
        )
        return Decision(webhook_id=None, approved=False, reason="unavailable", duplicate=False)


class _Unreachable(Exception):
    """No connection to the database could be had."""


async def _decide(conn: Any, received: Received, request: Requested) -> Decision:
    webhook_id, authorisation_id = new_id("pwh"), new_id("cau")
    try:
        row = await repository.decide(
            conn,
            webhook_id=webhook_id,
            external_id=received.external_id,
            body=received.body,
            headers=orjson.dumps(received.headers).decode(),
            source_ip=received.source_ip,
            authorisation_id=authorisation_id,
            transfer_id=new_id("btx") + "00000",
            request=request,
        )
    except asyncpg.UniqueViolationError:
        # Another request (another event id) for the same Rain transaction, at once: the
        # unique Rain transaction id refused this one whole. It is a repeat: stored
        # (handled) and answered as the first was; nothing is held twice.
        row = await repository.repeat(conn, webhook_id, received, request.rain_transaction_id)
    if row["stored_id"] is None:
        row = await repository.earlier_decision(
            conn, received.external_id, request.rain_transaction_id
        )
    duplicate = row["stored_id"] != webhook_id
    PROVIDER_WEBHOOKS_RECEIVED.labels("rain", "duplicate" if duplicate else "new").inc()
    decision = Decision(
        webhook_id=row["stored_id"],
        approved=row["decision"] == "approved",
        reason=None if row["decision"] == "approved" else (row["reason"] or "unknown"),
        duplicate=duplicate,
    )
    if not duplicate:
        DECISIONS.labels(
            "approved" if decision.approved else "declined", decision.reason or "ok"
        ).inc()
    log.info(
        "card_authorisation_decided",
        webhook_id=decision.webhook_id,
        approved=decision.approved,
        reason=decision.reason,
        duplicate=duplicate,
        amount_cents=request.amount_cents,
    )
    return decision
