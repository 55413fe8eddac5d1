"""Virtual accounts for invoices: one one-time VA per invoice that offers Intrajasa, created
at invoice creation (synchronously: the payer is shown its number at once), for exactly the
invoice's rupiah amount.

The merchant reference (Intrajasa's `merchantRefCode`, alphanumeric, at most 20 characters)
is derived from the merchant and the request's Idempotency-Key when there is one, so two
concurrent requests with one key ask Intrajasa for the same reference (and get the same VA,
docs/intrajasa.md); without a key, from the new invoice's id. It is kept in the VA's
`deposit_addresses` row (`provider_wallet_id`; `address` is the VA number)."""

from __future__ import annotations

import hashlib
import re

import structlog

from nespay.integrations.intrajasa import repository
from nespay.integrations.intrajasa.client import IntrajasaError
from nespay.kit.ids import new_id
from nespay.merchants import service as merchants
from nespay.runtime import Runtime
from nespay.wallets.provider import ReservedAddress

log = structlog.get_logger("nespay.intrajasa")

FAMILY = "va"
PROVIDER = "intrajasa"
NAME_MAX = 100
_NOT_NAME = re.compile(r"[^A-Za-z0-9 .,&'()-]+")


def merchant_ref_code(merchant_id: str, invoice_id: str, idempotency_key: str | None) -> str:
    material = f"{merchant_id}\n{idempotency_key}" if idempotency_key else invoice_id
    return "NP" + hashlib.sha256(material.encode()).hexdigest()[:18].upper()


def customer_name(merchant_name: str) -> str:
    """What the payer's bank shows as the VA's owner: the merchant's name, in the characters
    every bank screen takes (it is also hashed into `secureCode`, byte for byte)."""
    name = " ".join(_NOT_NAME.sub(" ", merchant_name).split())[:NAME_MAX].strip()
    return name or "Nespay"


async def reserve(
    runtime: Runtime,
    *,
    merchant_id: str,
    invoice_id: str,
    idempotency_key: str | None,
    amount: int,
) -> ReservedAddress:
    """A one-time VA for `amount` (base units, sen), as the `deposit_addresses` row invoice
    creation inserts. Holds no connection across the call out."""
    client = runtime.intrajasa
    ref = merchant_ref_code(merchant_id, invoice_id, idempotency_key)
    merchant = await merchants.read(runtime.db, merchant_id)
    va = await client.generate_va(ref, customer_name(merchant["name"]), amount)
    async with runtime.db.driver() as conn:
        holder = await repository.holder_of(conn, va.va_number)
    if holder not in (None, ref):
        # A number already handed to another invoice: its payments would be ambiguous. (The
        # same reference's VA is the concurrent twin of a keyed request: it lost the claim.)
        log.error("intrajasa_va_number_reused", merchant_ref_code=ref)
        raise IntrajasaError("Intrajasa answered with a VA number already in use.")
    log.info("intrajasa_va_created", merchant_ref_code=ref, invoice_id=invoice_id)
    return ReservedAddress(new_id("dep"), FAMILY, va.va_number, PROVIDER, None, ref)
