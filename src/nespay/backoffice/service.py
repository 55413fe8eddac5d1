"""The backoffice's search over every merchant's invoices, payments and deposit addresses, and
the platform totals of `GET /stats`. Reads only: nothing here writes or audits."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from nespay.backoffice import repository
from nespay.backoffice.schemas import (
    BackofficeInvoice,
    BackofficePayment,
    CallbackHealth,
    DailyVolume,
    DepositAddress,
    InvoiceCounts,
    ScannerLag,
    Stats,
)
from nespay.chains import status as scanners
from nespay.invoices import service as invoices
from nespay.invoices.service import InvoiceNotFound
from nespay.invoices.views import payment_view
from nespay.kit.addresses import display_address
from nespay.kit.ids import id_floor
from nespay.kit.money import from_base_units
from nespay.kit.pagination import PageParams, fetch_size, split_page
from nespay.merchants import repository as merchants
from nespay.models import Currency, Payment
from nespay.models import Invoice as InvoiceRow
from nespay.models.invoices import INVOICE_STATUSES


def _backoffice_view(row: InvoiceRow, view: Any) -> BackofficeInvoice:
    return BackofficeInvoice(
        **view.model_dump(),
        merchant_id=row.merchant_id,
        status_reason=row.status_reason,
        marked_at=row.marked_at,
        invalid_at=row.invalid_at,
    )


async def _page(
    search: Callable[..., Awaitable[Sequence[Any]]],
    session: AsyncSession,
    fragment: str | None,
    page: PageParams,
    filters: dict[str, Any],
) -> tuple[list[Any], bool]:
    """One page of a repository search: `limit` rows and whether more follow."""
    rows = await search(
        session, fragment, limit=fetch_size(page.limit), starting_after=page.starting_after,
        **filters,
    )  # fmt: skip
    return split_page(rows, page.limit)


async def search_invoices(
    session: AsyncSession, fragment: str | None, page: PageParams, base_url: str, **filters: Any
) -> tuple[list[BackofficeInvoice], bool]:
    rows, has_more = await _page(repository.search_invoices, session, fragment, page, filters)
    views = await invoices.views_of(session, rows, base_url=base_url)
    return [_backoffice_view(row, view) for row, view in zip(rows, views, strict=True)], has_more


async def get_invoice(session: AsyncSession, invoice_id: str, base_url: str) -> BackofficeInvoice:
    row = await invoices.repository.get(session, invoice_id, merchant_id=None)
    if row is None:
        raise InvoiceNotFound()
    (view,) = await invoices.views_of(session, [row], base_url=base_url)
    return _backoffice_view(row, view)


def _payment(payment: Payment, currency: Currency) -> BackofficePayment:
    return BackofficePayment(
        **payment_view(payment, {currency.id: currency}).model_dump(),
        invoice_id=payment.invoice_id,
        merchant_id=payment.merchant_id,
        currency_id=currency.id,
        to_address=payment.to_address,
        orphaned_at=payment.orphaned_at,
    )


async def search_payments(
    session: AsyncSession, fragment: str | None, page: PageParams, **filters: Any
) -> tuple[list[BackofficePayment], bool]:
    rows, has_more = await _page(repository.search_payments, session, fragment, page, filters)
    return [_payment(payment, currency) for payment, currency in rows], has_more


async def search_addresses(
    session: AsyncSession, fragment: str | None, page: PageParams, **filters: Any
) -> tuple[list[DepositAddress], bool]:
    rows, has_more = await _page(repository.search_addresses, session, fragment, page, filters)
    data = [
        DepositAddress.model_validate(row, from_attributes=True).model_copy(
            update={"address": display_address(row.chain_family, row.address)}
        )
        for row in rows
    ]
    return data, has_more


async def stats(session: AsyncSession, days: int) -> Stats:
    """Platform totals over the last `days` UTC days (today included): each query reads an
    index range bounded by the window, or a small table (docs/backoffice.md)."""
    now = datetime.now(UTC)
    since = datetime.combine(now.date() - timedelta(days=days - 1), datetime.min.time(), UTC)
    floor_ms = int(since.timestamp() * 1000)
    volume = [
        DailyVolume(
            day=row.day,
            network=row.network_code,
            currency=row.code,
            currency_id=row.currency_id,
            amount=from_base_units(row.amount, row.decimals),
            payments=row.payments,
        )
        for row in await repository.daily_volume(session, since)
    ]
    by_status, open_now = await repository.invoice_counts(session, id_floor("inv", floor_ms))
    deliveries = await repository.delivery_counts(session, id_floor("whd", floor_ms))
    states = await scanners.network_states(await session.connection())
    return Stats(
        days=days,
        volume=volume,
        invoices=InvoiceCounts(
            since=since,
            by_status={status: by_status.get(status, 0) for status in INVOICE_STATUSES},
            open_now=open_now,
        ),
        merchants=await merchants.count_by_status(session),
        callbacks=CallbackHealth(since=since, **deliveries),
        scanners=[ScannerLag.model_validate(state) for state in states],
    )
