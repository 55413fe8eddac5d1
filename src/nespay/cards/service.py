"""Card issuing for merchants: card users (a KYC application at Rain), their cards, and the
money they spend — funded from the merchant's balance by ledger transfers.

A call to Rain is never made inside an open transaction: what it needs is read first (a
unit of work of its own, read-only), then Rain is called with no connection held, then the
answer is recorded in one transaction with its event and audit entry. Should that last
transaction fail after Rain acted, Rain's webhooks (`user.updated`, `card.updated`) carry the
state again; the orphan is at Rain, never a half-written row here.

Currency model (docs/cards.md): a card user's balance is one USD stablecoin on one network,
fixed by its first funding; Rain's amounts are US cents, held at par (a cent is
10^(decimals−2) base units)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from nespay.audit import service as audit
from nespay.auth.principals import Actor, Principal
from nespay.cards import repository, views
from nespay.cards.authorisations import text as _text
from nespay.cards.rain import RainClient, RainUnavailable
from nespay.cards.schemas import (
    Card,
    CardCreate,
    CardTransaction,
    CardUpdate,
    CardUser,
    CardUserBalance,
    CardUserCreate,
    Funding,
    FundingCreate,
)
from nespay.db import Sql, sql
from nespay.errors import Conflict, NespayError, NotFound
from nespay.events.service import emit_all
from nespay.invoices.service import IdempotencyKeyReused, check_idempotency_key
from nespay.kit.ids import new_id
from nespay.kit.money import from_base_units, parse_amount, to_base_units
from nespay.ledger import accounts
from nespay.ledger import repository as ledger_repository
from nespay.ledger.service import (
    InsufficientBalance,
    InvalidAmount,
    Transfer,
    TransferKeyReused,
    record,
)
from nespay.models.cards import APPLICATION_STATUSES, CARD_STATUSES, LIMIT_FREQUENCIES
from nespay.runtime import Runtime

log = structlog.get_logger("nespay.cards")

# The stablecoins a card user may be funded in: one dollar each, held at par.
USD_STABLECOINS = frozenset({"USDC", "USDT"})


class CardUserNotFound(NotFound):
    code = "card_user_not_found"
    message = "No such card user."


class CardNotFound(NotFound):
    code = "card_not_found"
    message = "No such card."


class CardUserNotApproved(Conflict):
    code = "card_user_not_approved"
    message = "The card issuer has not approved this card user (yet): no card can be issued."


class CardCanceled(Conflict):
    code = "card_canceled"
    message = "This card is canceled; a canceled card never changes again."


class CurrencyNotAllowed(NespayError):
    status_code = 422
    code = "card_currency_not_allowed"


class CardUserCurrencyFixed(Conflict):
    code = "card_user_currency_fixed"


@dataclass(frozen=True)
class Answer:
    value: BaseModel
    replayed: bool


def _digest(body: BaseModel, *context: str) -> str:
    canonical = orjson.dumps(
        {"body": body.model_dump(mode="json"), "context": list(context)},
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(canonical).hexdigest()


def _replay(row: Any, digest: str, view: Any) -> Answer:
    if row["request_hash"] != digest:
        raise IdempotencyKeyReused()
    return Answer(view(row), replayed=True)


def cents(amount: str) -> int:
    """A USD decimal string → cents (a validation error beyond two decimals)."""
    try:
        return to_base_units(parse_amount(amount), 2)
    except ValueError as exc:
        raise InvalidAmount(f"limit.amount: {amount} {exc} (USD).") from None


# --- card users -------------------------------------------------------------------------------


def _application(body: CardUserCreate) -> dict[str, Any]:
    """Rain's `POST /applications/user` body (camelCase, only what was given)."""
    names = {
        "first_name": "firstName",
        "last_name": "lastName",
        "email": "email",
        "national_id": "nationalId",
        "country_of_issue": "countryOfIssue",
        "phone_country_code": "phoneCountryCode",
        "phone_number": "phoneNumber",
        "wallet_address": "walletAddress",
        "sumsub_share_token": "sumsubShareToken",
        "persona_share_token": "personaShareToken",
        "ip_address": "ipAddress",
        "occupation": "occupation",
        "annual_salary": "annualSalary",
        "account_purpose": "accountPurpose",
        "expected_monthly_volume": "expectedMonthlyVolume",
        "is_terms_of_service_accepted": "isTermsOfServiceAccepted",
    }
    out: dict[str, Any] = {
        rain: getattr(body, ours) for ours, rain in names.items() if getattr(body, ours) is not None
    }
    if body.birth_date is not None:
        out["birthDate"] = body.birth_date.isoformat()
    if body.address is not None:
        out["address"] = _address(body.address)
    return out


def _address(address: Any) -> dict[str, Any]:
    out = {
        "line1": address.line1,
        "city": address.city,
        "region": address.region,
        "postalCode": address.postal_code,
        "countryCode": address.country_code,
    }
    if address.line2:
        out["line2"] = address.line2
    return out


async def create_card_user(
    runtime: Runtime,
    principal: Principal,
    actor: Actor,
    body: CardUserCreate,
    idempotency_key: str | None,
    rain: RainClient,
) -> Answer:
    """Submit the user's application to Rain and keep the card user (never its documents)."""
    merchant_id = principal.merchant_id
    assert merchant_id is not None
    key = check_idempotency_key(idempotency_key)
    digest = _digest(body)
    if key is not None:
        async with runtime.db.session() as session:
            earlier = await repository.user_by_key(sql(session), merchant_id, key)
        if earlier is not None:
            return _replay(earlier, digest, views.card_user)
    answer = await rain.create_user_application(_application(body))
    rain_user_id = _text(answer.get("id"), 100) if isinstance(answer, dict) else None
    status = answer.get("applicationStatus") if isinstance(answer, dict) else None
    if rain_user_id is None or status not in APPLICATION_STATUSES:
        log.error("rain_application_answer_unusable")
        raise RainUnavailable("The card issuer's answer could not be read.")
    card_user_id = new_id("cu")
    async with runtime.db.session() as session:
        db = sql(session)
        inserted = await repository.insert_user(
            db,
            (
                card_user_id,
                merchant_id,
                rain_user_id,
                body.reference,
                body.first_name or _text(answer.get("firstName"), 100),
                body.last_name or _text(answer.get("lastName"), 100),
                body.email or _text(answer.get("email"), 320),
                status,
                _text(answer.get("applicationReason"), 500),
                answer.get("isActive") is not False,
                key,
                digest,
            ),
        )
        if inserted is None:  # the same key, committed by a concurrent request meanwhile
            assert key is not None
            return _replay(
                await repository.user_by_key(db, merchant_id, key), digest, views.card_user
            )
        row = await repository.user(db, card_user_id, merchant_id)
        view = views.card_user(row)
        await audit.record(
            session,
            actor,
            "card_user.created",
            target_type="card_user",
            target_id=card_user_id,
            merchant_id=merchant_id,
            after={"application_status": status, "reference": body.reference},
        )
    return Answer(view, replayed=False)


async def get_card_user(
    session: AsyncSession, merchant_id: str | None, card_user_id: str
) -> CardUser:
    row = await repository.user(sql(session), card_user_id, merchant_id)
    if row is None:
        raise CardUserNotFound()
    return views.card_user(row)


async def list_cards(
    session: AsyncSession, merchant_id: str | None, card_user_id: str
) -> list[Card]:
    db = sql(session)
    if await repository.user(db, card_user_id, merchant_id) is None:
        raise CardUserNotFound()
    return [views.card(row) for row in await repository.cards_of_user(db, card_user_id)]


# --- cards ------------------------------------------------------------------------------------


async def get_card(session: AsyncSession, merchant_id: str | None, card_id: str) -> Card:
    row = await repository.card(sql(session), card_id, merchant_id)
    if row is None:
        raise CardNotFound()
    return views.card(row)


def card_fields(answer: Any) -> dict[str, Any] | None:
    """What we keep of a Rain card (its answer or a `card.updated` body); None if unusable."""
    if not isinstance(answer, dict):
        return None
    status = answer.get("status")
    if _text(answer.get("id"), 100) is None or status not in CARD_STATUSES:
        return None
    limit = answer.get("limit") if isinstance(answer.get("limit"), dict) else {}
    amount = limit.get("amount")
    frequency = limit.get("frequency")
    ok_amount = isinstance(amount, int) and not isinstance(amount, bool) and 0 <= amount < 10**12
    last4 = _text(answer.get("last4"), 4)
    return {
        "rain_card_id": _text(answer.get("id"), 100),
        "type": answer.get("type") if answer.get("type") in ("virtual", "physical") else None,
        "status": status,
        "last4": last4 if last4 and last4.isdigit() else None,
        "expiration_month": _text(answer.get("expirationMonth"), 2),
        "expiration_year": _text(answer.get("expirationYear"), 4),
        "limit_cents": amount if ok_amount and frequency in LIMIT_FREQUENCIES else None,
        "limit_frequency": frequency if ok_amount and frequency in LIMIT_FREQUENCIES else None,
    }


async def create_card(
    runtime: Runtime,
    principal: Principal,
    actor: Actor,
    card_user_id: str,
    body: CardCreate,
    idempotency_key: str | None,
    rain: RainClient,
) -> Answer:
    """Issue a virtual or physical card to an approved card user, with its spending limit."""
    merchant_id = principal.merchant_id
    assert merchant_id is not None
    key = check_idempotency_key(idempotency_key)
    digest = _digest(body, card_user_id)
    async with runtime.db.session() as session:
        db = sql(session)
        user = await repository.user(db, card_user_id, merchant_id)
        earlier = await repository.card_by_key(db, merchant_id, key) if key else None
    if user is None:
        raise CardUserNotFound()
    if earlier is not None:
        return _replay(earlier, digest, views.card)
    if user["application_status"] != "approved" or not user["is_active"]:
        raise CardUserNotApproved(
            f"The card issuer's decision on this card user is {user['application_status']}: "
            "a card is issued once it is approved (the card_user's `application_status`)."
        )
    request: dict[str, Any] = {
        "type": body.type,
        "limit": {"amount": cents(body.limit.amount), "frequency": body.limit.frequency},
    }
    if body.display_name:
        request["configuration"] = {"displayName": body.display_name}
    if body.shipping is not None:
        request["shipping"] = {
            **_address(body.shipping),
            "phoneNumber": body.shipping.phone_number,
            **({"method": body.shipping.method} if body.shipping.method else {}),
        }
    fields = card_fields(await rain.create_card(user["rain_user_id"], request))
    if fields is None:
        log.error("rain_card_answer_unusable")
        raise RainUnavailable("The card issuer's answer could not be read.")
    card_id = new_id("card")
    async with runtime.db.session() as session:
        db = sql(session)
        inserted = await repository.insert_card(
            db,
            (
                card_id,
                merchant_id,
                card_user_id,
                fields["rain_card_id"],
                fields["type"] or body.type,
                fields["status"],
                fields["last4"],
                fields["expiration_month"],
                fields["expiration_year"],
                fields["limit_cents"],
                fields["limit_frequency"],
                key,
                digest,
            ),
        )
        if inserted is None:
            assert key is not None
            return _replay(await repository.card_by_key(db, merchant_id, key), digest, views.card)
        card = views.card(await repository.card(db, card_id, merchant_id))
        await emit_all(db, [(merchant_id, "card.created", card_id, card.model_dump(mode="json"))])
        await audit.record(
            session,
            actor,
            "card.created",
            target_type="card",
            target_id=card_id,
            merchant_id=merchant_id,
            after=card.model_dump(mode="json"),
        )
    return Answer(card, replayed=False)


async def update_card(
    runtime: Runtime,
    principal: Principal,
    actor: Actor,
    card_id: str,
    body: CardUpdate,
    rain: RainClient,
) -> Card:
    """Lock, unlock or cancel a card, or change its limit: at Rain, then here."""
    merchant_id = principal.merchant_id
    async with runtime.db.session() as session:
        current = await repository.card(sql(session), card_id, merchant_id)
    if current is None:
        raise CardNotFound()
    if current["status"] == "canceled":
        raise CardCanceled()
    change: dict[str, Any] = {}
    if body.status is not None:
        change["status"] = body.status
    if body.limit is not None:
        change["limit"] = {"amount": cents(body.limit.amount), "frequency": body.limit.frequency}
    fields = card_fields(await rain.update_card(current["rain_card_id"], change))
    if fields is None:  # Rain acted, but its answer is unusable: take what was asked for
        fields = {
            "status": body.status or current["status"],
            "limit_cents": change.get("limit", {}).get("amount", current["limit_cents"]),
            "limit_frequency": change.get("limit", {}).get("frequency", current["limit_frequency"]),
        }
    async with runtime.db.session() as session:
        return await _apply_card(session, card_id, fields, actor=actor)


async def _apply_card(
    session: AsyncSession, card_id: str, fields: dict[str, Any], *, actor: Actor | None
) -> Card:
    """Record the card's state (Rain's answer or webhook), with `card.updated` if it changed."""
    db = sql(session)
    before = await repository.lock_card(db, card_id, None)
    assert before is not None
    if before["status"] == "canceled":
        fields = {**fields, "status": "canceled"}  # canceled is final, whatever comes later
    await repository.update_card(db, card_id, fields)
    after = await repository.card(db, card_id, None)
    view = views.card(after)
    old = views.card(before).model_dump(mode="json", exclude={"updated_at"})
    new = view.model_dump(mode="json", exclude={"updated_at"})
    if old != new:
        await emit_all(
            db, [(after["merchant_id"], "card.updated", card_id, view.model_dump(mode="json"))]
        )
    if actor is not None:
        await audit.record(
            session,
            actor,
            "card.updated",
            target_type="card",
            target_id=card_id,
            merchant_id=after["merchant_id"],
            before=old,
            after=new,
        )
    return view


async def card_transactions(
    session: AsyncSession,
    merchant_id: str | None,
    card_id: str,
    *,
    starting_after: str | None,
    limit: int,
) -> tuple[list[CardTransaction], bool]:
    db = sql(session)
    if await repository.card(db, card_id, merchant_id) is None:
        raise CardNotFound()
    rows = await repository.transactions(
        db, card_id, starting_after=starting_after, limit=limit + 1
    )
    return [views.transaction(row) for row in rows[:limit]], len(rows) > limit


# --- balances and fundings ----------------------------------------------------------------


async def balances(
    session: AsyncSession, merchant_id: str | None, card_user_id: str
) -> list[CardUserBalance]:
    db = sql(session)
    user = await repository.user(db, card_user_id, merchant_id)
    if user is None:
        raise CardUserNotFound()
    if user["cent_units"] is None:
        return []
    names = (user["merchant_id"], card_user_id, user["currency_id"])
    ids = [accounts.card_user(*names).id, accounts.card_spend(*names).id]
    found = views.balance(list(await repository.account_balances(db, ids)), user["cent_units"])
    return [found] if found else []


async def move(
    session: AsyncSession,
    principal: Principal,
    actor: Actor,
    card_user_id: str,
    body: FundingCreate,
    idempotency_key: str | None,
    *,
    direction: str,
) -> Answer:
    """Fund a card user from the merchant's available balance (`funding`), or return its
    balance to the merchant (`defunding`): one posted ledger transfer, refused (422
    `insufficient_balance`) when the side it leaves does not cover it — a card user's held
    authorisations included. With `Idempotency-Key`, the same key and body return the same
    transfer; another body with the key is a 409."""
    merchant_id = principal.merchant_id
    assert merchant_id is not None
    key = check_idempotency_key(idempotency_key)
    db = sql(session)
    user = await repository.lock_user(db, card_user_id, merchant_id)
    if user is None:
        raise CardUserNotFound()
    currency = await _usd_currency(db, body)
    amount = _base_units(body.amount, currency)
    await _fix_currency(db, user, currency, funding=direction == "funding")
    merchant = accounts.merchant(merchant_id, currency["id"])
    available = accounts.card_user(merchant_id, card_user_id, currency["id"])
    spend = accounts.card_spend(merchant_id, card_user_id, currency["id"])
    await ledger_repository.create_accounts(
        db, [(a.id, a.merchant_id, a.kind, a.currency_id, a.limited) for a in (available, spend)]
    )
    debit, credit = (merchant, available) if direction == "funding" else (available, merchant)
    transfer_key = (
        f"card_{direction}/{merchant_id}/" + hashlib.sha256(key.encode()).hexdigest()[:32]
        if key
        else f"card_{direction}/{new_id('cf')}"
    )
    try:
        (recorded,) = await record(
            db,
            [
                Transfer(
                    transfer_key,
                    f"card_{direction}",
                    debit,
                    credit,
                    amount,
                    merchant_id=merchant_id,
                    source_type="card_user",
                    source_id=card_user_id,
                )
            ],
        )
    except InsufficientBalance:
        side = "merchant's" if direction == "funding" else "card user's"
        raise InsufficientBalance(
            f"amount: the {side} available {currency['code']} balance on "
            f"{currency['network_code']} does not cover it."
        ) from None
    except TransferKeyReused:
        raise IdempotencyKeyReused() from None
    created_at = await db.fetchval(
        "SELECT created_at FROM ledger_transfers WHERE id = $1", recorded.id
    )
    funding = Funding(
        id=recorded.id,
        card_user_id=card_user_id,
        direction=direction,  # type: ignore[arg-type]
        network=currency["network_code"],
        currency=currency["code"],
        amount=from_base_units(amount, currency["decimals"]),
        created_at=created_at,
    )
    if recorded.created:
        await audit.record(
            session,
            actor,
            f"card_user.{direction}",
            target_type="card_user",
            target_id=card_user_id,
            merchant_id=merchant_id,
            after=funding.model_dump(mode="json"),
        )
    return Answer(funding, replayed=not recorded.created)


async def _usd_currency(db: Sql, body: FundingCreate) -> Any:
    currency = await repository.currency(db, body.network, body.currency)
    if currency is None or currency["code"] not in USD_STABLECOINS or currency["decimals"] < 2:
        raise CurrencyNotAllowed(
            f"A card user is funded in a USD stablecoin ({', '.join(sorted(USD_STABLECOINS))}) "
            f"Nespay knows; there is no {body.currency} on network {body.network!r} for that."
        )
    return currency


def _base_units(amount: str, currency: Any) -> int:
    """Whole units → base units, in whole cents (authorisations are held in cents)."""
    try:
        value = parse_amount(amount)
        to_base_units(value, 2)
        return to_base_units(value, currency["decimals"])
    except ValueError as exc:
        raise InvalidAmount(
            f"amount: {amount} {exc} (a card balance moves in whole cents)."
        ) from None


async def _fix_currency(db: Sql, user: Any, currency: Any, *, funding: bool) -> None:
    if user["currency_id"] == currency["id"]:
        return
    if user["currency_id"] is not None or not funding:
        held = (
            f"{user['currency']} on {user['network_code']}"
            if user["currency_id"]
            else "nothing yet"
        )
        raise CardUserCurrencyFixed(
            f"This card user's balance is held in {held}; it moves only in that currency."
        )
    cent_units = 10 ** (int(currency["decimals"]) - 2)
    if not await repository.fix_currency(db, user["id"], currency["id"], cent_units):
        raise CardUserCurrencyFixed("This card user's currency was just fixed by another funding.")
