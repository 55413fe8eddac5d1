"""Invoices: creation (idempotent, priced in crypto or fiat at a rate locked at creation, one
deposit address per chain family), reads, cancellation. Every state change writes its event
in the same transaction."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from nespay.audit.service import record
from nespay.auth.cache import MerchantSettings
from nespay.auth.principals import Actor
from nespay.chains.catalog import PROVIDER_FAMILIES, Catalog, CatalogCurrency
from nespay.db import sql
from nespay.errors import Conflict, NespayError, NotFound
from nespay.integrations.intrajasa import service as intrajasa
from nespay.invoices import availability, repository, states
from nespay.invoices.schemas import Invoice, InvoiceCreate
from nespay.invoices.views import PRICE_DECIMALS_CAP, invoice_view
from nespay.kit.ids import new_id
from nespay.kit.money import (
    FIAT_DECIMALS,
    decimals_of,
    parse_amount,
    to_base_units,
)
from nespay.kit.pagination import fetch_size, split_page
from nespay.merchants import service as merchants
from nespay.models import Invoice as InvoiceRow
from nespay.rates.service import convert, get_rate
from nespay.requestid import current_request_id
from nespay.runtime import Runtime
from nespay.wallets.provider import AddressRequest

STABLECOINS = ("USDT", "USDC")
IDEMPOTENCY_KEY_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:"
)


class InvoiceNotFound(NotFound):
    code = "invoice_not_found"
    message = "No such invoice."


class UnknownCurrency(NespayError):
    status_code = 422
    code = "unknown_currency"
    message = "Unknown or disabled currency."


class UnknownNetwork(NespayError):
    status_code = 422
    code = "unknown_network"
    message = "Unknown or disabled network, or the currency is not offered on it."


class AmountPrecision(NespayError):
    status_code = 422
    code = "amount_precision"
    message = "The amount has more decimal places than the currency allows."


class VirtualAccountCurrency(NespayError):
    status_code = 422
    code = "va_currency_mismatch"
    message = "A virtual account is paid in its own currency only: price the invoice in it."


class MetadataTooLarge(NespayError):
    status_code = 422
    code = "metadata_too_large"
    message = "The metadata object is too large."


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"
    message = "This Idempotency-Key was used with a different request body."


class IdempotencyKeyMalformed(NespayError):
    status_code = 400
    code = "idempotency_key_malformed"
    message = "Idempotency-Key must be 1–255 characters of letters, digits and - _ . :"


class InvoiceNotMarkable(Conflict):
    code = "invoice_not_markable"
    message = "This invoice cannot be marked so."


class InvoiceNotCancellable(Conflict):
    code = "invoice_not_cancellable"
    message = "Only an invoice with no payment, still pending, can be cancelled."


def check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not set(key) <= IDEMPOTENCY_KEY_CHARS:
        raise IdempotencyKeyMalformed()
    return key


def request_hash(body: InvoiceCreate) -> str:
    canonical = orjson.dumps(body.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def resolve_options(catalog: Catalog, body: InvoiceCreate) -> list[CatalogCurrency]:
    """The (network, currency) pairs to offer, as catalog entries."""
    if body.payment_options:
        wanted = [(o.network, o.currency.upper()) for o in body.payment_options]
    elif body.currency in FIAT_DECIMALS:
        wanted = [(c.network, c.code) for c in catalog.currencies if c.code in STABLECOINS]
        wanted = [w for w in wanted if body.network is None or w[0] == body.network]
        if body.network is not None and catalog.find(body.network, body.currency) is not None:
            wanted.append((body.network, body.currency))  # a fiat rail: Intrajasa's IDR VA
    else:
        offered = catalog.networks_with(body.currency)
        if not offered:
            raise UnknownCurrency(
                f"{body.currency} is not an enabled currency or a known fiat code."
            )
        wanted = [(c.network, c.code) for c in offered if body.network in (None, c.network)]
    if body.currency not in FIAT_DECIMALS and body.currency not in catalog.codes():
        raise UnknownCurrency(f"{body.currency} is not an enabled currency or a known fiat code.")
    found = []
    for network, code in dict.fromkeys(wanted):
        entry = catalog.find(network, code)
        if entry is None and code not in catalog.codes():
            raise UnknownCurrency(f"{code} is not an enabled currency.")
        if entry is None:
            raise UnknownNetwork(f"{code} on {network} is not offered (unknown or disabled).")
        found.append(entry)
    if not found:
        raise UnknownNetwork("No enabled network offers this currency.")
    return found


def _asked(body: InvoiceCreate, catalog: Catalog) -> list[tuple[str | None, tuple[str, ...]]]:
    """What the body asks for: (network or None for any, the currency codes that would do)."""
    if body.payment_options:
        asked = [(o.network, (o.currency.upper(),)) for o in body.payment_options]
    elif body.currency in FIAT_DECIMALS:
        network = catalog.network(body.network) if body.network else None
        rail = network is not None and network.chain_family in PROVIDER_FAMILIES
        # A provider network (Intrajasa) named: it is the fiat itself that is asked for.
        asked = [(body.network, (body.currency,) if rail else STABLECOINS)]
    else:
        asked = [(body.network, (body.currency,))]
    if body.currency not in FIAT_DECIMALS:
        asked.append((None, (body.currency,)))  # the price's currency must be known somewhere
    return asked


async def _explained(
    runtime: Runtime, catalog: Catalog, body: InvoiceCreate, refused: NespayError
) -> NespayError:
    """`refused`, said precisely: which network or currency is disabled (or missing), and the
    command an operator runs to offer it (the database is read only to explain a refusal)."""
    async with runtime.db.sessionmaker() as session:
        found = await availability.explain(session, catalog, _asked(body, catalog), body.currency)
    if found is None:
        return refused
    kind = UnknownNetwork if found.kind == "network" else UnknownCurrency
    return kind(found.message)


async def _replay(
    session: AsyncSession, merchant_id: str, key: str, digest: str, *, base_url: str
) -> Invoice:
    record = await repository.idempotency_record(session, merchant_id, key)
    assert record is not None
    if record.request_hash != digest:
        raise IdempotencyKeyReused()
    return await get(session, record.invoice_id, merchant_id=merchant_id, base_url=base_url)


@dataclass
class _Plan:
    """A creation request checked and priced, before any address exists."""

    invoice: dict[str, Any]
    entries: list[CatalogCurrency]
    priced: list[tuple[int, Decimal]]


def _check_body(runtime: Runtime, body: InvoiceCreate) -> Decimal:
    settings = runtime.settings
    metadata = body.metadata or {}
    if len(orjson.dumps(metadata)) > settings.invoice_metadata_max_bytes:
        raise MetadataTooLarge(
            f"metadata is over {settings.invoice_metadata_max_bytes} bytes of JSON."
        )
    price = parse_amount(body.amount)
    if body.currency in FIAT_DECIMALS and decimals_of(price) > FIAT_DECIMALS[body.currency]:
        raise AmountPrecision(f"{body.currency} has {FIAT_DECIMALS[body.currency]} decimal places.")
    if decimals_of(price) > PRICE_DECIMALS_CAP:
        raise AmountPrecision(f"A price has at most {PRICE_DECIMALS_CAP} decimal places.")
    return price


def _check_virtual_accounts(
    body: InvoiceCreate, price: Decimal, entries: list[CatalogCurrency]
) -> None:
    """A virtual account (Intrajasa) is for the invoice's amount exactly, in its currency
    (rupiah), in whole units: no rate, no conversion (docs/intrajasa.md)."""
    for entry in entries:
        if entry.chain_family not in PROVIDER_FAMILIES:
            continue
        if body.currency != entry.code:
            raise VirtualAccountCurrency(
                f"{entry.network} pays {entry.code} only: price the invoice in {entry.code} "
                f"to offer it (this one is priced in {body.currency})."
            )
        if price != price.to_integral_value():
            raise AmountPrecision(
                f"{entry.network} virtual accounts take whole {entry.code} (bank transfers "
                "carry no fraction of a rupiah)."
            )


def _virtual_account_entries(plan: _Plan) -> list[tuple[CatalogCurrency, int]]:
    return [
        (entry, amount)
        for entry, (amount, _) in zip(plan.entries, plan.priced, strict=True)
        if entry.chain_family in PROVIDER_FAMILIES
    ]


async def _price(
    runtime: Runtime,
    body: InvoiceCreate,
    price: Decimal,
    entries: list[CatalogCurrency],
) -> list[tuple[int, Decimal]]:
    """Per option: (amount due in its base units, locked rate: 1 option unit in the price
    currency). Rates are read, in a short session of their own, only for options in another
    currency than the price."""
    priced: list[tuple[int, Decimal] | None] = []
    for entry in entries:
        if entry.code != body.currency:
            priced.append(None)
            continue
        try:
            priced.append((to_base_units(price, entry.decimals), Decimal(1)))
        except ValueError:
            raise AmountPrecision(
                f"{body.currency} on {entry.network} has {entry.decimals} decimal places."
            ) from None
    if None in priced:
        async with runtime.db.sessionmaker() as session:
            for i, entry in enumerate(entries):
                if priced[i] is None:
                    rate = await get_rate(session, runtime.settings, entry.code, body.currency)
                    priced[i] = (max(1, convert(price, rate, entry.decimals)), rate)
    return priced  # type: ignore[return-value]


async def _plan(
    runtime: Runtime,
    merchant_id: str,
    body: InvoiceCreate,
    invoice_id: str,
    merchant: MerchantSettings,
) -> _Plan:
    price = _check_body(runtime, body)
    catalog = await runtime.catalog.get()
    try:
        entries = resolve_options(catalog, body)
    except (UnknownCurrency, UnknownNetwork) as refused:
        raise await _explained(runtime, catalog, body, refused) from None
    _check_virtual_accounts(body, price, entries)
    priced = await _price(runtime, body, price, entries)
    now = datetime.now(UTC)
    expires_at = now + timedelta(seconds=body.expires_in or merchant.default_expiry_s)
    invoice = dict(
        id=invoice_id,
        merchant_id=merchant_id,
        status="pending",
        price_amount=price,
        price_currency=body.currency,
        order_id=body.order_id,
        description=body.description,
        metadata_=body.metadata or {},
        redirect_url=body.redirect_url,
        underpayment_tolerance_bps=merchant.underpayment_tolerance_bps,
        expires_at=expires_at,
        created_at=now,
        updated_at=now,
    )
    return _Plan(invoice, entries, priced)


def _options(plan: _Plan, addresses: dict[str, str]) -> list[dict[str, Any]]:
    # Reads list options by id: sorted ids keep the order the merchant asked for (ids made in
    # the same millisecond are otherwise in random order).
    option_ids = sorted(new_id("opt") for _ in plan.entries)
    return [
        dict(
            id=option_id,
            invoice_id=plan.invoice["id"],
            network_code=entry.network,
            currency_id=entry.id,
            chain_family=entry.chain_family,
            address=addresses[entry.chain_family],
            amount=Decimal(amount),
            rate=rate,
            amount_paid=Decimal(0),
        )
        for option_id, entry, (amount, rate) in zip(
            option_ids, plan.entries, plan.priced, strict=True
        )
    ]


def _view(plan: _Plan, options: list[dict[str, Any]], base_url: str) -> Invoice:
    return invoice_view(
        _row(plan.invoice),
        [(SimpleNamespace(**o), _currency(e)) for o, e in zip(options, plan.entries, strict=True)],
        [],
        base_url=base_url,
    )


@dataclass(frozen=True)
class CreatedJson:
    """The endpoint's answer: the invoice as JSON (rendered once, for the event and the
    response), and whether it is a replay."""

    data: dict[str, Any]
    replayed: bool


async def create(
    runtime: Runtime,
    merchant_id: str,
    body: InvoiceCreate,
    idempotency_key: str | None,
    merchant: MerchantSettings | None = None,
) -> CreatedJson:
    """Create an invoice, whatever the wallet provider; its own edge (no session is passed in).

    In order, holding no transaction and no connection across a call out: an Idempotency-Key
    already used answers its invoice (or a 409) — looked up first when reserving calls out
    (Privy, or Intrajasa for a virtual account), so a replay makes no call; the request is
    checked and priced; Intrajasa makes the virtual account and the provider reserves the
    deposit addresses; then one statement writes the idempotency claim, invoice,
    addresses, options and `invoice.created` event. A concurrent duplicate that loses the claim
    answers the winner's invoice (with Privy, both got the same wallet: its idempotency key is
    derived from the merchant's). `merchant` are the settings from the auth cache; without
    them they are read here."""
    key = check_idempotency_key(idempotency_key)
    digest = request_hash(body) if key is not None else None
    if key is not None and digest is not None and runtime.wallets.calls_out:
        replayed = await _replay_json(runtime, merchant_id, key, digest, must_exist=False)
        if replayed is not None:
            return replayed
    invoice_id = new_id("inv")
    try:
        if merchant is None:
            merchant = await _merchant_settings(runtime, merchant_id)
        plan = await _plan(runtime, merchant_id, body, invoice_id, merchant)
    except NespayError:
        # As when the key is claimed first: a key that already names an invoice answers with
        # it (or a 409), whatever the checks would say now.
        if key is not None and digest is not None:
            replayed = await _replay_json(runtime, merchant_id, key, digest, must_exist=False)
            if replayed is not None:
                return replayed
        raise
    # A replay must not ask Intrajasa for a VA (nor reserve anything).
    if (
        key is not None
        and digest is not None
        and not runtime.wallets.calls_out
        and _virtual_account_entries(plan)
    ):
        replayed = await _replay_json(runtime, merchant_id, key, digest, must_exist=False)
        if replayed is not None:
            return replayed
    return await _reserve_and_store(runtime, plan, key, digest)


async def _reserve_and_store(
    runtime: Runtime, plan: _Plan, key: str | None, digest: str | None
) -> CreatedJson:
    """The provider's addresses for `plan`, then the one statement; a lost claim replays."""
    merchant_id = plan.invoice["merchant_id"]
    rows = [
        await intrajasa.reserve(
            runtime,
            merchant_id=merchant_id,
            invoice_id=plan.invoice["id"],
            idempotency_key=key,
            amount=amount,
        )
        for _, amount in _virtual_account_entries(plan)
    ]
    families = tuple(
        dict.fromkeys(
            entry.chain_family
            for entry in plan.entries
            if entry.chain_family not in PROVIDER_FAMILIES
        )
    )
    if families:
        request = AddressRequest(merchant_id, plan.invoice["id"], families, key)
        rows += await runtime.wallets.reserve(runtime.db, request)
    options = _options(plan, {row.chain_family: row.address for row in rows})
    data = _view(plan, options, runtime.settings.base_url).model_dump(mode="json")
    invoice = {**plan.invoice, "metadata_json": orjson.dumps(plan.invoice["metadata_"]).decode()}
    event = (new_id("evt"), orjson.dumps(data).decode(), current_request_id())
    claim = (key, digest) if key is not None and digest is not None else None
    async with runtime.db.driver() as conn:
        created = await repository.create_in_one_statement(
            conn, invoice, claim, rows, options, event
        )
    if created:
        return CreatedJson(data, replayed=False)
    assert key is not None and digest is not None
    replayed = await _replay_json(runtime, merchant_id, key, digest, must_exist=True)
    assert replayed is not None
    return replayed


async def _merchant_settings(runtime: Runtime, merchant_id: str) -> MerchantSettings:
    merchant = await merchants.read(runtime.db, merchant_id)
    return MerchantSettings(merchant["default_expiry_s"], merchant["underpayment_tolerance_bps"])


async def _replay_json(
    runtime: Runtime, merchant_id: str, key: str, digest: str, *, must_exist: bool
) -> CreatedJson | None:
    async with runtime.db.sessionmaker() as session:
        if (
            not must_exist
            and await repository.idempotency_record(session, merchant_id, key) is None
        ):
            return None
        view = await _replay(session, merchant_id, key, digest, base_url=runtime.settings.base_url)
    return CreatedJson(view.model_dump(mode="json"), replayed=True)


def _row(values: dict[str, Any]) -> Any:
    """The new invoice shaped as its row for `invoice_view` (a plain object: an ORM instance
    costs more to build than the whole view)."""
    return SimpleNamespace(
        **values,
        paid_ppm=0,
        overpaid=False,
        paid_late=False,
        paid_at=None,
        confirmed_at=None,
        expired_at=None,
        cancelled_at=None,
        invalid_at=None,
        status_reason=None,
    )


def _currency(entry: CatalogCurrency) -> Any:
    return SimpleNamespace(
        id=entry.id,
        network_code=entry.network,
        code=entry.code,
        name=entry.name,
        contract=entry.contract,
        decimals=entry.decimals,
        enabled=True,
    )


async def get(
    session: AsyncSession, invoice_id: str, *, merchant_id: str | None, base_url: str
) -> Invoice:
    invoice = await repository.get(session, invoice_id, merchant_id=merchant_id)
    if invoice is None:
        raise InvoiceNotFound()
    return await load_view(session, invoice, base_url=base_url)


async def load_view(session: AsyncSession, invoice: InvoiceRow, *, base_url: str) -> Invoice:
    options = await repository.options_of(session, [invoice.id])
    payments = await repository.payments_of(session, [invoice.id])
    return invoice_view(invoice, options, payments, base_url=base_url)


async def list_invoices(
    session: AsyncSession, merchant_id: str, *, limit: int, base_url: str, **filters: Any
) -> tuple[list[Invoice], bool]:
    rows = await repository.list_for_merchant(
        session, merchant_id, limit=fetch_size(limit), **filters
    )
    page, has_more = split_page(rows, limit)
    return await views_of(session, page, base_url=base_url), has_more


async def views_of(
    session: AsyncSession, page: Sequence[InvoiceRow], *, base_url: str
) -> list[Invoice]:
    """The views of `page`'s invoices, with two queries for all their options and payments;
    `base_url` (`Settings.base_url`) is where their `hosted_url`s live."""
    ids = [invoice.id for invoice in page]
    options = await repository.options_of(session, ids) if ids else []
    payments = await repository.payments_of(session, ids) if ids else []
    return [
        invoice_view(
            invoice,
            [(o, c) for o, c in options if o.invoice_id == invoice.id],
            [p for p in payments if p.invoice_id == invoice.id],
            base_url=base_url,
        )
        for invoice in page
    ]


async def cancel(
    session: AsyncSession, merchant_id: str, invoice_id: str, *, base_url: str
) -> Invoice:
    """A pending invoice (no payment counted) becomes `cancelled`, with its event."""

    def decide(row: Any) -> states.Change:
        if row["status"] != "pending" or row["marked"]:
            raise InvoiceNotCancellable(
                f"The invoice is {row['status']}; only pending ones can be cancelled."
            )
        return states.Change(
            row["id"], row["merchant_id"], "pending", "cancelled", states.NOTHING, False, False
        )

    if await states.change_one(sql(session), invoice_id, merchant_id=merchant_id, decide=decide):
        return await get(session, invoice_id, merchant_id=merchant_id, base_url=base_url)
    raise InvoiceNotFound()


MARKS = {"paid": "confirmed", "invalid": "invalid"}


async def mark(
    session: AsyncSession, actor: Actor, invoice_id: str, *, as_: str, reason: str, base_url: str
) -> Invoice:
    """An admin marks an invoice paid (it becomes `confirmed`: settled, as if its payments had
    all confirmed — the payer paid outside what Nespay watches, say) or `invalid`, with a
    reason, audit-logged. A marked invoice's status is final: payments are still recorded
    and flagged, but no longer move it. A cancelled invoice, or one already marked, cannot be
    marked."""
    target = MARKS[as_]

    def decide(row: Any) -> states.Change:
        if row["status"] == "cancelled" or row["marked"] or row["status"] == target == "confirmed":
            raise InvoiceNotMarkable(
                f"The invoice is {row['status']}"
                + (" and already marked" if row["marked"] else "")
                + f"; it cannot be marked {as_}."
            )
        return states.Change(
            row["id"],
            row["merchant_id"],
            row["status"],
            target,
            states.Share(row["paid_ppm"], states.PPM),
            row["overpaid"],
            row["paid_late"],
            marked=True,
            reason=reason,
        )

    change = await states.change_one(sql(session), invoice_id, merchant_id=None, decide=decide)
    if change is None:
        raise InvoiceNotFound()
    await record(
        session,
        actor,
        f"invoice.marked_{as_}",
        target_type="invoice",
        target_id=invoice_id,
        merchant_id=change.merchant_id,
        before={"status": change.previous},
        after={"status": change.status},
        detail={"reason": reason},
    )
    return await get(session, invoice_id, merchant_id=None, base_url=base_url)
