"""What Rain's asynchronous webhooks do, as inbox handlers (`nespay.inbox.handlers`): each
runs in the transaction that stamps the stored webhook handled, and is idempotent on Rain's
ids (a replay, or Rain's second delivery under another event id, changes nothing twice).

- `user.updated` — the card user's application status (KYC) → `card.application_updated`.
- `card.updated` — a card's status, limit, last4 and expiry → `card.updated`.
- `transaction.created` / `.updated` / `.completed` — what became of an authorisation:
  declined or reversed releases its hold (void); completed posts it (the settled amount, at
  most what was held; more than was held is charged on top, and may leave the card user in
  deficit: Rain settled it); a refund (a negative amount) credits the card user back
  → `card.transaction`.

A webhook about a user, card or transaction Nespay does not know is acknowledged and logged
(`card_webhook_unknown`), never retried: it belongs to no merchant here. A body that is not
Rain's shape is the same: nothing to do, logged (`card_webhook_malformed`)."""

from __future__ import annotations

from typing import Any

import orjson
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from nespay.cards import repository, views
from nespay.cards.authorisations import cents, text
from nespay.cards.service import _apply_card, card_fields
from nespay.db import Sql, sql
from nespay.events.service import emit_all
from nespay.inbox.handlers import HandlerRegistry, StoredWebhook, handlers
from nespay.kit.ids import new_id
from nespay.ledger import accounts
from nespay.ledger.service import InsufficientBalance, Transfer, record
from nespay.models.cards import APPLICATION_STATUSES

log = structlog.get_logger("nespay.cards")


def _body(stored: StoredWebhook) -> dict[str, Any] | None:
    try:
        envelope = orjson.loads(stored.body)
    except orjson.JSONDecodeError:
        return None
    body = envelope.get("body") if isinstance(envelope, dict) else None
    return body if isinstance(body, dict) else None


def _malformed(stored: StoredWebhook, why: str) -> None:
    log.warning(
        "card_webhook_malformed", webhook_id=stored.id, event_type=stored.event_type, why=why
    )


def _unknown(stored: StoredWebhook, what: str) -> None:
    log.info("card_webhook_unknown", webhook_id=stored.id, event_type=stored.event_type, what=what)


async def user_updated(session: AsyncSession, stored: StoredWebhook) -> None:
    body = _body(stored)
    rain_user_id = text(body.get("id"), 100) if body else None
    status = body.get("applicationStatus") if body else None
    if rain_user_id is None or status not in APPLICATION_STATUSES:
        return _malformed(stored, "id or applicationStatus")
    db = sql(session)
    before = await repository.lock_user_by_rain_id(db, rain_user_id)
    if before is None:
        return _unknown(stored, "user")
    reason = text(body.get("applicationReason"), 500)  # type: ignore[union-attr]
    active = body.get("isActive") is not False  # type: ignore[union-attr]
    if (before["application_status"], before["application_reason"], before["is_active"]) == (
        status,
        reason,
        active,
    ):
        return None
    await repository.update_application(db, before["id"], status, reason, active)
    after = views.card_user(await repository.user(db, before["id"], None))
    await emit_all(
        db,
        [
            (
                before["merchant_id"],
                "card.application_updated",
                before["id"],
                after.model_dump(mode="json"),
            )
        ],
    )
    return None


async def card_updated(session: AsyncSession, stored: StoredWebhook) -> None:
    fields = card_fields(_body(stored))
    if fields is None:
        return _malformed(stored, "id or status")
    card = await repository.lock_card_by_rain_id(sql(session), fields["rain_card_id"])
    if card is None:
        return _unknown(stored, "card")
    await _apply_card(session, card["id"], fields, actor=None)
    return None


async def transaction_event(session: AsyncSession, stored: StoredWebhook) -> None:
    body = _body(stored)
    spend = body.get("spend") if body else None
    if not isinstance(spend, dict):
        return _malformed(stored, "spend")
    amount = cents(spend.get("amount"))
    status = spend.get("status")
    rain_card_id = text(spend.get("cardId"), 100)
    if amount is None or rain_card_id is None or not isinstance(status, str):
        return _malformed(stored, "amount, cardId or status")
    if str(spend.get("currency", "usd")).lower() != "usd":
        return _malformed(stored, "currency")
    authorised = cents(spend.get("authorizedAmount"))
    rain_transaction_id = text(body.get("id"), 100)  # type: ignore[union-attr]
    db = sql(session)
    auth = await repository.auth_for_event(
        db, rain_transaction_id, rain_card_id, authorised if authorised is not None else amount
    )
    if auth is None:
        if status in ("declined", "reversed"):
            return _unknown(stored, "transaction")  # nothing held, nothing to release
        auth = await _adopt(db, stored, spend, rain_transaction_id, rain_card_id, amount)
        if auth is None:
            return _unknown(stored, "card")
    changed = await _settle(db, auth, status, amount, rain_transaction_id)
    if changed:
        row = await repository.auth(db, auth["id"])
        await emit_all(
            db,
            [
                (
                    row["merchant_id"],
                    "card.transaction",
                    row["id"],
                    views.transaction(row).model_dump(mode="json"),
                )
            ],
        )
    return None


async def _adopt(
    db: Sql,
    stored: StoredWebhook,
    spend: dict[str, Any],
    rain_transaction_id: str | None,
    rain_card_id: str,
    amount: int,
) -> Any | None:
    """A transaction Rain approved without asking us (a stand-in, a force post, a refund):
    recorded as an approved authorisation with nothing held, to be settled as it comes."""
    card = await repository.lock_card_by_rain_id(db, rain_card_id)
    if card is None:
        return None
    user = await repository.user(db, card["card_user_id"], None)
    log.warning(
        "card_transaction_not_authorised_here",
        webhook_id=stored.id,
        card_id=card["id"],
        amount_cents=amount,
    )
    inserted = await repository.insert_auth(
        db,
        (
            new_id("cau"),
            rain_transaction_id,
            rain_card_id,
            card["merchant_id"],
            card["card_user_id"],
            card["id"],
            user["currency_id"],
            amount,
            text(spend.get("merchantName"), 200),
            text(spend.get("merchantCategory"), 100),
            text(spend.get("merchantCountry"), 8),
            cents(spend.get("localAmount")),
            text(spend.get("localCurrency"), 8),
        ),
    )
    if inserted is None:  # the same Rain transaction, recorded meanwhile
        return await repository.auth_for_event(db, rain_transaction_id, None, amount)
    return await _locked_auth(db, inserted)


async def _locked_auth(db: Sql, auth_id: str) -> Any:
    rows = await db.fetch(
        f"SELECT {repository.AUTH_COLUMNS} FROM card_authorisations a"  # noqa: S608
        " WHERE a.id = $1 FOR UPDATE",
        auth_id,
    )
    return rows[0]


def _accounts(auth: Any) -> tuple[accounts.Account, accounts.Account]:
    merchant, user, currency = auth["merchant_id"], auth["card_user_id"], auth["currency_id"]
    return accounts.card_user(merchant, user, currency), accounts.card_spend(
        merchant, user, currency
    )


async def _settle(
    db: Sql, auth: Any, status: str, amount: int, rain_transaction_id: str | None
) -> bool:
    """Move the authorisation to what Rain says of it; True when anything changed."""
    held = int(auth["held"])
    if auth["status"] == "declined" and status == "completed":
        # Rain settled what Nespay declined (its own stand-in): it has paid, so it is charged.
        log.warning("card_declined_transaction_settled", authorisation_id=auth["id"])
    elif auth["status"] in ("completed", "reversed", "declined"):
        return False  # ended: a replay, or Rain repeating itself
    if status == "pending":
        if rain_transaction_id and auth["rain_transaction_id"] is None:
            await repository.set_auth(
                db, auth["id"], "pending", rain_transaction_id=rain_transaction_id
            )
            return True
        return False
    if status in ("declined", "reversed"):
        if held:
            available, spend = _accounts(auth)
            await record(
                db,
                [
                    Transfer(
                        f"{auth['id']}/void",
                        "card_authorisation",
                        available,
                        spend,
                        None,
                        type="void",
                        pending_key=f"{auth['id']}/hold",
                        source_type="card_authorisation",
                        source_id=auth["id"],
                    )
                ],
            )
        await repository.set_auth(db, auth["id"], status, rain_transaction_id=rain_transaction_id)
        return True
    if status != "completed":
        return False
    if auth["currency_id"] is None:
        log.error("card_transaction_unfunded", authorisation_id=auth["id"], amount_cents=amount)
    else:
        await _post(db, auth, amount, held)
    await repository.set_auth(
        db, auth["id"], "completed", settled_cents=amount, rain_transaction_id=rain_transaction_id
    )
    return True


async def _post(db: Sql, auth: Any, amount: int, held: int) -> None:
    units = int(
        await db.fetchval("SELECT cent_units FROM card_users WHERE id = $1", auth["card_user_id"])
    )
    settled = amount * units
    available, spend = _accounts(auth)
    common = {"source_type": "card_authorisation", "source_id": auth["id"]}
    key = auth["id"]
    if held:
        await record(
            db,
            [
                Transfer(
                    f"{key}/post",
                    "card_authorisation",
                    available,
                    spend,
                    max(0, min(settled, held)),
                    type="post",
                    pending_key=f"{key}/hold",
                    **common,
                )
            ],
        )
    if settled < 0:  # a refund: the spend comes back to the card user
        await record(
            db, [Transfer(f"{key}/refund", "card_refund", spend, available, -settled, **common)]
        )
    elif settled > held:
        await _charge(db, auth, available, spend, settled - held, common)


async def _charge(
    db: Sql,
    auth: Any,
    available: accounts.Account,
    spend: accounts.Account,
    amount: int,
    common: dict[str, Any],
) -> None:
    """Rain settled more than was held (or held nothing): charged from the balance, or, if
    the balance does not cover it, charged anyway (a deficit: Rain has paid it)."""
    key = f"{auth['id']}/charge"
    try:
        await db.execute("SAVEPOINT card_charge")
        await record(db, [Transfer(key, "card_authorisation", available, spend, amount, **common)])
        await db.execute("RELEASE SAVEPOINT card_charge")
    except InsufficientBalance:
        await db.execute("ROLLBACK TO SAVEPOINT card_charge")
        await record(
            db,
            [
                Transfer(
                    key, "card_authorisation", available, spend, amount, may_overdraw=True, **common
                )
            ],
        )
        log.warning("card_settled_beyond_balance", authorisation_id=auth["id"], amount=amount)


def register(registry: HandlerRegistry = handlers) -> None:
    """Put the card handlers in the inbox's registry (once; the webhook app calls this)."""
    wanted = {
        "user.updated": user_updated,
        "card.updated": card_updated,
        "transaction.created": transaction_event,
        "transaction.updated": transaction_event,
        "transaction.completed": transaction_event,
    }
    for event_type, handler in wanted.items():
        if registry.get("rain", event_type) is None:
            registry.add("rain", event_type, handler)
