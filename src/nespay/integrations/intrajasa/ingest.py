"""Intrajasa's payment callbacks, handled from the provider inbox (`va.payment`).

The callback is a hint, never the truth: the handler finds the VA by its number, checks the
callback against what we asked Intrajasa for, then asks Intrajasa (`getstatus`) whether that
VA is paid, and only then credits it (`nespay.payments.service.record_settled`). It runs
inside the inbox's handling transaction, so the payment, its events, the ledger and the
`handled` stamp commit together; a replay, or the same callback again, changes nothing.

The status inquiry is a call out made inside that transaction (handling is asynchronous:
nobody waits on it). Intrajasa down: the handler raises and the inbox retries it with
backoff, then `dead` for an operator to replay. The invoice row is locked only after it.

Outcomes (each with its log line):
- not a payment we can read (no VA number, an amount in the wrong form): `ignored`;
- a VA we never made, a reference or merchant that is not ours, a VA already paid by another
  transaction (a one-time VA pays once): `ignored`;
- an amount other than the VA's, or a payment Intrajasa does not confirm: nothing credited,
  the handler fails: retried, then `dead` (an operator looks; a replay after Intrajasa
  confirms credits it);
- confirmed: credited once (`handled`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from nespay.db import sql
from nespay.inbox.handlers import StoredWebhook, handlers
from nespay.integrations.intrajasa import repository
from nespay.integrations.intrajasa.client import is_va_number, parse_wire_amount, read_json
from nespay.invoices import states
from nespay.kit.text import printable, unstorable
from nespay.payments import service as payments
from nespay.runtime import Runtime

log = structlog.get_logger("nespay.intrajasa")

EVENT_TYPE = "va.payment"
REFERENCE_KEYS = ("transactionId", "transactionReference")
MAX_REFERENCE = 80  # payments.tx_hash


class PaymentNotConfirmed(Exception):
    """Intrajasa does not (yet) say this VA is paid."""


class AmountMismatch(Exception):
    """The callback (or Intrajasa's answer) names another amount than the VA's."""


@dataclass(frozen=True)
class Callback:
    va_number: str
    amount: int  # base units
    reference: str | None  # Intrajasa's transaction reference
    merchant_ref_code: str | None
    merchant_id: str | None


def _text(value: Any, limit: int) -> str | None:
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        text = str(value)
        if 0 < len(text) <= limit and not unstorable(text):
            return text
    return None


def parse(body: bytes) -> Callback | str:
    """The callback's fields, or why it cannot be read as a VA payment."""
    try:
        payload = read_json(body)
    except ValueError:
        return "malformed_json"
    if not isinstance(payload, dict):
        return "not_an_object"
    va_number = payload.get("vaNumber")
    if not is_va_number(va_number):
        return "va_number"
    amount = parse_wire_amount(payload.get("totalAmount"))
    if amount is None:
        return "amount"
    reference = next(
        (text for key in REFERENCE_KEYS if (text := _text(payload.get(key), MAX_REFERENCE))),
        None,
    )
    if reference is None and any(payload.get(key) is not None for key in REFERENCE_KEYS):
        return "transaction_reference"
    return Callback(
        va_number,
        amount,
        reference,
        _text(payload.get("merchantRefCode"), 64),
        _text(payload.get("merchantId"), 64),
    )


async def handle_va_payment(session: AsyncSession, stored: StoredWebhook) -> str | None:
    """See the module's docstring."""
    runtime: Runtime = session.info["runtime"]
    bound = {"webhook_id": stored.id}
    callback = parse(stored.body)
    if isinstance(callback, str):
        log.warning("intrajasa_callback_unreadable", reason=callback, **bound)
        return "ignored"
    db = sql(session)
    va = await repository.virtual_account(db, callback.va_number)
    if va is None:
        log.warning("intrajasa_callback_unknown_va", va_number=callback.va_number, **bound)
        return "ignored"
    bound["invoice_id"] = va["invoice_id"]
    ours = runtime.settings.intrajasa_merchant_id
    if callback.merchant_ref_code not in (None, va["merchant_ref_code"]) or (
        callback.merchant_id is not None and ours is not None and callback.merchant_id != ours
    ):
        log.warning(
            "intrajasa_callback_not_ours",
            merchant_ref_code=printable(callback.merchant_ref_code or ""),
            **bound,
        )
        return "ignored"
    due = int(va["amount"])
    if callback.amount != due:
        log.error("intrajasa_amount_mismatch", callback=callback.amount, due=due, **bound)
        raise AmountMismatch(f"callback amount {callback.amount} sen, the VA is for {due}")
    reference = callback.reference or f"va:{callback.va_number}"
    earlier = await repository.paid_by(db, va["option_id"])
    if earlier is not None:
        return _already(earlier, reference, bound)
    status = await runtime.intrajasa.status(va["merchant_ref_code"], va["va_number"], due)
    if not status.paid:
        log.warning(
            "intrajasa_payment_not_confirmed",
            payment_status=str(status.payment_status)[:20],
            **bound,
        )
        raise PaymentNotConfirmed("Intrajasa does not report this VA as paid")
    if status.amount is not None and status.amount != due:
        log.error("intrajasa_amount_mismatch", confirmed=status.amount, due=due, **bound)
        raise AmountMismatch(f"Intrajasa confirms {status.amount} sen, the VA is for {due}")
    await states.lock(db, [va["invoice_id"]])
    earlier = await repository.paid_by(db, va["option_id"])  # another replica, meanwhile
    if earlier is not None:
        return _already(earlier, reference, bound)
    transfer = payments.Transfer(
        network=va["network_code"],
        currency_id=va["currency_id"],
        tx_hash=reference,
        log_index=0,
        block_number=0,
        block_hash="",
        block_timestamp=_epoch(stored.received_at),
        from_address="",
        to_address=va["va_number"],
        amount=due,
    )
    changed = await payments.record_settled(
        db, va["network_code"], transfer, va, fee_bps=runtime.settings.platform_fee_bps
    )
    log.info("intrajasa_payment_credited", status=changed.get(va["invoice_id"]), **bound)
    return None


def _already(earlier: str, reference: str, bound: dict[str, Any]) -> str | None:
    if earlier == reference:
        return None  # this very payment, counted before: a replay changes nothing
    log.warning("intrajasa_va_already_paid", **bound)
    return "ignored"


def _epoch(when: datetime) -> int:
    # Lateness is judged by when Intrajasa told us (its callback has no time we can trust).
    return int(when.timestamp())


handlers.add("intrajasa", EVENT_TYPE, handle_va_payment)
