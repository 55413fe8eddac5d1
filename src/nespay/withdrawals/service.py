"""Withdrawals and refunds: a merchant asks, the amount is held in the ledger at once, an admin
approves what is above the merchant's threshold, the jobs process sends it, and the chain's
answer posts the hold (confirmed) or releases it (failed); rejected and cancelled ones release
it too. Every change is one transaction with its `withdrawal.*` event.

States: `pending_approval` → `approved` → `broadcast` → `confirmed`; `pending_approval` →
`rejected` | `cancelled`; `approved` | `broadcast` → `failed`. A request at or below the
threshold starts `approved`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from nespay.audit import service as audit
from nespay.auth.principals import Actor, Principal
from nespay.config import Settings
from nespay.db import Sql, sql
from nespay.errors import Conflict, NespayError, NotFound
from nespay.events.service import emit_all
from nespay.invoices.service import (
    IdempotencyKeyReused,
    InvoiceNotFound,
    UnknownCurrency,
    check_idempotency_key,
)
from nespay.kit.addresses import AddressInvalid, display_stored, parse_address
from nespay.kit.ids import new_id
from nespay.kit.money import from_base_units, parse_amount, to_base_units
from nespay.ledger import accounts
from nespay.ledger.service import InsufficientBalance, InvalidAmount, Transfer, record
from nespay.rates.service import RatesUnavailable, get_rate
from nespay.wallets import hotkeys, outgoing
from nespay.withdrawals import repository
from nespay.withdrawals.schemas import RefundCreate, Withdrawal, WithdrawalCreate

log = structlog.get_logger("nespay.withdrawals")

SENDING_FAMILIES = ("evm", "tron")
ENDED = frozenset({"confirmed", "rejected", "cancelled", "failed"})


class WithdrawalNotFound(NotFound):
    code = "withdrawal_not_found"
    message = "No such withdrawal."


class InvalidAddress(NespayError):
    status_code = 422
    code = "invalid_address"


class NothingToRefund(NespayError):
    status_code = 422
    code = "refund_exceeds_payments"


class WithdrawalNotChangeable(Conflict):
    code = "withdrawal_not_changeable"


class NoHotWallet(Conflict):
    code = "hot_wallet_missing"


class OwnRequest(NespayError):
    status_code = 403
    code = "own_withdrawal"
    message = "Nobody approves their own withdrawal: another admin must decide it."


@dataclass(frozen=True)
class Requested:
    withdrawal: Withdrawal
    replayed: bool


def view(row: Any) -> Withdrawal:
    return Withdrawal(
        id=row["id"],
        kind=row["kind"],
        status=row["status"],
        network=row["network_code"],
        currency=row["currency"],
        amount=from_base_units(row["amount"], row["decimals"]),
        address=display_stored(row["address"]),
        invoice_id=row["invoice_id"],
        requires_approval=row["requires_approval"],
        tx_hash=row["tx_hash"],
        decision_reason=row["decision_reason"],
        failure_reason=row["failure_reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        broadcast_at=row["broadcast_at"],
        confirmed_at=row["confirmed_at"],
        ended_at=row["ended_at"],
    )


def _hash(body: WithdrawalCreate | RefundCreate, invoice_id: str | None) -> str:
    canonical = orjson.dumps(
        {"body": body.model_dump(mode="json"), "invoice": invoice_id}, option=orjson.OPT_SORT_KEYS
    )
    return hashlib.sha256(canonical).hexdigest()


def _accounts(row: Any) -> tuple[accounts.Account, accounts.Account]:
    currency = row["currency_id"]
    return accounts.merchant(row["merchant_id"], currency), accounts.platform("payouts", currency)


def _hold_key(withdrawal_id: str) -> str:
    return f"{withdrawal_id}/hold"


async def _address(db: Sql, family: str, text: str) -> str:
    try:
        address = parse_address(family, text)
    except AddressInvalid as exc:
        raise InvalidAddress(f"address: {exc}.") from None
    if await repository.is_own_address(db, family, address):
        raise InvalidAddress(
            "address: that is one of Nespay's own addresses (a deposit address, a hot wallet "
            "or a treasury); send to an address outside Nespay."
        )
    return address


def _base_units(amount_text: str, currency: Any) -> int:
    try:
        return to_base_units(parse_amount(amount_text), currency["decimals"])
    except ValueError as exc:
        raise InvalidAmount(f"amount: {amount_text} {exc} ({currency['code']}).") from None


async def _needs_approval(
    session: AsyncSession, settings: Settings, merchant_id: str, code: str, amount: Decimal
) -> bool:
    """Above the merchant's threshold in USD; without a USD rate, always (never guess)."""
    threshold = await repository.approval_threshold(sql(session), merchant_id)
    try:
        rate = await get_rate(session, settings, code, "USD")
    except RatesUnavailable:
        return True
    return amount * rate > Decimal(threshold)


async def request(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    actor: Actor,
    body: WithdrawalCreate,
    idempotency_key: str | None,
) -> Requested:
    """Ask to send `body.amount` of the merchant's balance to `body.address`: held at once
    (422 `insufficient_balance` if the balance does not cover it)."""
    db = sql(session)
    currency = await repository.currency(db, body.network, body.currency)
    if currency is None or currency["chain_family"] not in SENDING_FAMILIES:
        raise UnknownCurrency(
            f"There is no {body.currency} on network {body.network!r} that Nespay can send "
            "(GET /api/v1/currencies lists them)."
        )
    return await _create(
        session, settings, principal, actor, body, idempotency_key, currency, kind="withdrawal"
    )


async def refund(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    actor: Actor,
    invoice_id: str,
    body: RefundCreate,
    idempotency_key: str | None,
) -> Requested:
    """Send back (part of) what the invoice received — confirmed payments, less earlier
    refunds that were not rejected, cancelled or failed — in the currency it came in."""
    db = sql(session)
    merchant_id = principal.merchant_id
    assert merchant_id is not None
    if not await repository.lock_invoice(db, invoice_id, merchant_id):
        raise InvoiceNotFound()
    received = [
        row
        for row in await repository.refundable(db, invoice_id)
        if (body.network is None or row["network_code"] == body.network)
        and (body.currency is None or row["currency"] == body.currency)
    ]
    if not received:
        raise NothingToRefund("This invoice has no confirmed payment to refund (in that currency).")
    if len(received) > 1:
        raise NothingToRefund(
            "This invoice was paid on several options: say which with `network` and `currency`."
        )
    (paid,) = received
    currency = await repository.currency(db, paid["network_code"], paid["currency"])
    if currency["chain_family"] not in SENDING_FAMILIES:
        raise NothingToRefund(
            f"This invoice was paid on {paid['network_code']} (a virtual account, by bank "
            "transfer): Nespay sends nothing back there; refund the payer outside Nespay."
        )
    amount = _base_units(body.amount, currency)
    left = int(paid["paid"]) - int(paid["refunded"])
    if amount > left:
        raise NothingToRefund(
            f"amount: at most {from_base_units(left, paid['decimals'])} {paid['currency']} of "
            "this invoice's payments is left to refund."
        )
    return await _create(
        session,
        settings,
        principal,
        actor,
        body,
        idempotency_key,
        currency,
        kind="refund",
        invoice_id=invoice_id,
    )


async def _create(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    actor: Actor,
    body: WithdrawalCreate | RefundCreate,
    idempotency_key: str | None,
    currency: Any,
    *,
    kind: str,
    invoice_id: str | None = None,
) -> Requested:
    db = sql(session)
    merchant_id = principal.merchant_id
    assert merchant_id is not None
    key = check_idempotency_key(idempotency_key)
    digest = _hash(body, invoice_id)
    if key is not None and (earlier := await repository.by_key(db, merchant_id, key)):
        return _replay(earlier, digest)
    address = await _address(db, currency["chain_family"], body.address)
    amount = _base_units(body.amount, currency)
    await _require_hot_wallet(session, currency["network"])
    approval = await _needs_approval(
        session, settings, merchant_id, currency["code"], parse_amount(body.amount)
    )
    withdrawal_id = new_id("wd")
    inserted = await repository.insert(
        db,
        (
            withdrawal_id,
            merchant_id,
            kind,
            invoice_id,
            currency["network"],
            currency["id"],
            amount,
            address,
            "pending_approval" if approval else "approved",
            approval,
            principal.id,
            principal.email,
            key,
            digest,
        ),
    )
    if inserted is None:  # the same key, committed by a concurrent request meanwhile
        assert key is not None
        earlier = await repository.by_key(db, merchant_id, key)
        return _replay(earlier, digest)
    row = await repository.get(db, withdrawal_id, merchant_id)
    withdrawal = view(row)
    await _emit(db, row, "withdrawal.requested")
    await audit.record(
        session,
        actor,
        f"{kind}.requested",
        target_type="withdrawal",
        target_id=withdrawal_id,
        merchant_id=merchant_id,
        after=withdrawal.model_dump(mode="json"),
    )
    if not approval:
        await _send(session, row)
    # The hold comes last: it locks the merchant's account (every one of its requests) and the
    # platform's payouts account (everyone's) until the commit right after it.
    merchant, payouts = _accounts(row)
    try:
        await record(
            db,
            [
                Transfer(
                    _hold_key(withdrawal_id),
                    kind,
                    merchant,
                    payouts,
                    amount,
                    type="pending",
                    merchant_id=merchant_id,
                    source_type=kind,
                    source_id=withdrawal_id,
                )
            ],
        )
    except InsufficientBalance:
        raise InsufficientBalance(
            f"amount: the available {currency['code']} balance on {currency['network']} does not "
            "cover it (GET /api/v1/balances shows what is available)."
        ) from None
    return Requested(withdrawal, replayed=False)


def _replay(earlier: Any, digest: str) -> Requested:
    if earlier["request_hash"] != digest:
        raise IdempotencyKeyReused()
    return Requested(view(earlier), replayed=True)


async def _require_hot_wallet(session: AsyncSession, network: str) -> None:
    try:
        await hotkeys.active_wallet(session, network, "payouts")
    except hotkeys.NoHotWallet:
        raise NoHotWallet(
            f"Network {network!r} has no hot wallet to send from yet: an operator imports one "
            f"with `nespay wallets import-hot-key --network {network}`."
        ) from None


async def _send(session: AsyncSession, row: Any) -> None:
    """Hand an approved withdrawal to the jobs process's sender (same transaction)."""
    tx_id = await outgoing.enqueue(
        session,
        purpose=row["kind"],
        source_id=row["id"],
        network=row["network_code"],
        role="payouts",
        to_address=row["address"],
        token_contract=row["contract"],
        amount=int(row["amount"]),
    )
    await repository.set_outgoing(sql(session), row["id"], tx_id)


async def _emit(db: Sql, row: Any, event_type: str) -> None:
    data = view(row).model_dump(mode="json")
    await emit_all(db, [(row["merchant_id"], event_type, row["id"], data)])


async def get(session: AsyncSession, withdrawal_id: str, merchant_id: str | None) -> Withdrawal:
    row = await repository.get(sql(session), withdrawal_id, merchant_id)
    if row is None:
        raise WithdrawalNotFound()
    return view(row)


async def list_withdrawals(
    session: AsyncSession,
    *,
    merchant_id: str | None,
    status: str | None,
    invoice_id: str | None,
    starting_after: str | None,
    limit: int,
) -> tuple[list[Withdrawal], bool]:
    rows = await repository.list_(
        sql(session),
        merchant_id=merchant_id,
        status=status,
        starting_after=starting_after,
        invoice_id=invoice_id,
        limit=limit + 1,
    )
    return [view(row) for row in rows[:limit]], len(rows) > limit


async def _change(
    db: Sql,
    withdrawal_id: str,
    *,
    merchant_id: str | None,
    allowed: frozenset[str],
    status: str,
    event: str,
    release: bool = False,
    **fields: str | None,
) -> Any:
    """Lock the withdrawal, move it from one of `allowed` to `status` (releasing its hold if
    `release`), write its event; returns the new row."""
    row = await repository.lock(db, withdrawal_id, merchant_id)
    if row is None:
        raise WithdrawalNotFound()
    if row["status"] not in allowed:
        raise WithdrawalNotChangeable(
            f"This withdrawal is {row['status']}; it can no longer become {status}."
        )
    await repository.set_status(db, withdrawal_id, status, **fields)
    if release:
        merchant, payouts = _accounts(row)
        await record(
            db,
            [
                Transfer(
                    f"{withdrawal_id}/release",
                    row["kind"],
                    merchant,
                    payouts,
                    None,
                    type="void",
                    pending_key=_hold_key(withdrawal_id),
                    merchant_id=row["merchant_id"],
                    source_type=row["kind"],
                    source_id=withdrawal_id,
                )
            ],
        )
    row = await repository.get(db, withdrawal_id, merchant_id)
    await _emit(db, row, event)
    return row


async def cancel(
    session: AsyncSession, actor: Actor, merchant_id: str, withdrawal_id: str
) -> Withdrawal:
    """The merchant withdraws its request while it waits for approval (once approved, it may
    already be signed: it is sent or fails, never half-cancelled)."""
    row = await _change(
        sql(session),
        withdrawal_id,
        merchant_id=merchant_id,
        allowed=frozenset({"pending_approval"}),
        status="cancelled",
        event="withdrawal.cancelled",
        release=True,
    )
    await audit.record(
        session,
        actor,
        "withdrawal.cancelled",
        target_type="withdrawal",
        target_id=withdrawal_id,
        merchant_id=merchant_id,
    )
    return view(row)


def _same_person(principal: Principal, row: Any) -> bool:
    if principal.id == row["requested_by"]:
        return True
    email = (principal.email or "").lower()
    return bool(email) and email == (row["requested_by_email"] or "").lower()


async def decide(
    session: AsyncSession,
    principal: Principal,
    actor: Actor,
    withdrawal_id: str,
    *,
    approve: bool,
    reason: str,
) -> Withdrawal:
    """An admin (`admin` or `finance`) approves or rejects a withdrawal waiting for approval;
    never their own request (same identity or same email)."""
    db = sql(session)
    current = await repository.get(db, withdrawal_id, None)
    if current is None:
        raise WithdrawalNotFound()
    if _same_person(principal, current):
        raise OwnRequest()
    status = "approved" if approve else "rejected"
    before = view(current).model_dump(mode="json")
    row = await _change(
        db,
        withdrawal_id,
        merchant_id=None,
        allowed=frozenset({"pending_approval"}),
        status=status,
        event=f"withdrawal.{status}",
        release=not approve,
        decided_by=principal.id,
        reason=reason,
    )
    if approve:
        await _require_hot_wallet(session, row["network_code"])
        await _send(session, row)
    after = view(row)
    await audit.record(
        session,
        actor,
        f"withdrawal.{status}",
        target_type="withdrawal",
        target_id=withdrawal_id,
        merchant_id=row["merchant_id"],
        before=before,
        after=after.model_dump(mode="json"),
        detail={"reason": reason},
    )
    return after


# --- what the chain says (called by the sender, in its transaction) ---------------------------


async def sent(db: Sql, withdrawal_id: str, tx_hash: str | None) -> None:
    """Broadcast: the transaction is out (its hash may still change if it is replaced)."""
    row = await repository.lock(db, withdrawal_id)
    if row is None or row["status"] != "approved":
        return
    await repository.set_status(db, withdrawal_id, "broadcast", tx_hash=tx_hash)
    await _emit(db, await repository.get(db, withdrawal_id, None), "withdrawal.sent")


async def confirmed(db: Sql, withdrawal_id: str, tx_hash: str) -> None:
    """Mined with the network's confirmations: the hold is posted, and the payout leaves the
    hot wallet in the books."""
    row = await repository.lock(db, withdrawal_id)
    if row is None or row["status"] not in ("approved", "broadcast"):
        return
    await repository.set_status(db, withdrawal_id, "confirmed", tx_hash=tx_hash)
    merchant, payouts = _accounts(row)
    common = {"merchant_id": row["merchant_id"], "source_type": row["kind"], "source_id": row["id"]}
    await record(
        db,
        [
            Transfer(
                f"{withdrawal_id}/post",
                row["kind"],
                merchant,
                payouts,
                None,
                type="post",
                pending_key=_hold_key(withdrawal_id),
                **common,
            ),
            Transfer(
                f"{withdrawal_id}/sent",
                row["kind"],
                payouts,
                accounts.platform("hot_wallet", row["currency_id"]),
                int(row["amount"]),
                source_type=row["kind"],
                source_id=row["id"],
            ),
        ],
    )
    await _emit(db, await repository.get(db, withdrawal_id, None), "withdrawal.confirmed")


async def failed(db: Sql, withdrawal_id: str, reason: str) -> None:
    """The transaction reverted or could not be sent: the hold is released."""
    row = await repository.lock(db, withdrawal_id)
    if row is None or row["status"] not in ("approved", "broadcast"):
        return
    await _change(
        db,
        withdrawal_id,
        merchant_id=None,
        allowed=frozenset({"approved", "broadcast"}),
        status="failed",
        event="withdrawal.failed",
        release=True,
        failure=reason[:500],
    )
    log.warning("withdrawal.failed", withdrawal_id=withdrawal_id, reason=reason[:200])
