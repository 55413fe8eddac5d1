"""All SQL of the backoffice's search and stats.

A search is a UNION of branches, one per searched column; each branch is the newest `limit`
ids (after the cursor) among its own matches, so PostgreSQL plans each alone: a bitmap scan
of its trigram index and a top-N sort when the fragment is rare, a backward walk of an id
index that stops after `limit` hits when it is common. The newest `limit` of the union are
then the page. `statement_timeout` bounds what a misestimate could still cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, or_, select, text, union
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from nespay.kit.pagination import page_query
from nespay.kit.search import SearchTooBroad, contains_pattern
from nespay.models import Currency, DepositAddress, Invoice, Payment
from nespay.models.invoices import INVOICE_STATUSES

SEARCH_TIMEOUT = "5s"
QUERY_CANCELED = "57014"  # SQLSTATE of a statement cancelled by statement_timeout
_TIMEOUT = text("SELECT set_config('statement_timeout', :timeout, true)")  # SET LOCAL


async def _run(session: AsyncSession, query: Select[Any], *, searched: bool) -> Sequence[Any]:
    """Run a list; a search under `SEARCH_TIMEOUT`."""
    if not searched:
        return (await session.execute(query)).all()
    return await run_search(session, query)


async def run_search(
    session: AsyncSession, query: Select[Any], statement_timeout: str = SEARCH_TIMEOUT
) -> Sequence[Any]:
    """`query`'s rows, or `SearchTooBroad` if it runs longer than `statement_timeout` (set
    for the rest of this transaction only: a search's request reads, never writes)."""
    await session.execute(_TIMEOUT, {"timeout": statement_timeout})
    try:
        return (await session.execute(query)).all()
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) == QUERY_CANCELED:
            raise SearchTooBroad() from error
        raise


def _among(
    query: Select[Any],
    id_column: Any,
    branches: Sequence[Select[Any]],
    limit: int,
    starting_after: str | None,
) -> Select[Any]:
    """`query`'s newest `limit` rows among the union of each branch's newest `limit` ids
    (each branch selects one id column)."""
    tops = [
        page_query(
            branch.distinct(),
            branch.selected_columns[0],
            limit=limit,
            starting_after=starting_after,
        )
        for branch in branches
    ]
    ids = union(*tops).subquery()
    return query.where(id_column.in_(select(ids.c[0]))).order_by(id_column.desc()).limit(limit)


def _listed(
    query: Select[Any], id_column: Any, filters: list[Any], limit: int, starting_after: str | None
) -> Select[Any]:
    """No fragment: the newest rows matching the filters."""
    return page_query(query.where(*filters), id_column, limit=limit, starting_after=starting_after)


# --- invoices ----------------------------------------------------------------------------------


def invoices_query(
    fragment: str | None,
    *,
    status: str | None,
    merchant_id: str | None,
    limit: int,
    starting_after: str | None,
) -> Select[Any]:
    """Newest first: fragments of the id, the order id, a deposit address, a payment's tx hash
    or sender; `status` and `merchant_id` narrow."""
    filters = []
    if status is not None:
        filters.append(Invoice.status == status)
    if merchant_id is not None:
        filters.append(Invoice.merchant_id == merchant_id)
    if fragment is None:
        return _listed(select(Invoice), Invoice.id, filters, limit, starting_after)
    pattern = contains_pattern(fragment)
    branches = [
        select(Invoice.id).where(Invoice.id.ilike(pattern), *filters),
        select(Invoice.id).where(Invoice.order_id.ilike(pattern), *filters),
        _joined(
            select(DepositAddress.invoice_id).where(DepositAddress.address.ilike(pattern)),
            DepositAddress.invoice_id,
            filters,
        ),
        _joined(
            select(Payment.invoice_id).where(
                or_(Payment.tx_hash.ilike(pattern), Payment.from_address.ilike(pattern))
            ),
            Payment.invoice_id,
            filters,
        ),
    ]
    return _among(select(Invoice), Invoice.id, branches, limit, starting_after)


async def search_invoices(
    session: AsyncSession, fragment: str | None, **params: Any
) -> Sequence[Invoice]:
    rows = await _run(session, invoices_query(fragment, **params), searched=fragment is not None)
    return [row[0] for row in rows]


def _joined(query: Select[Any], invoice_id: Any, filters: list[Any]) -> Select[Any]:
    """A branch on another table, narrowed by the invoice filters (through a join if any)."""
    if not filters:
        return query
    return query.join(Invoice, Invoice.id == invoice_id).where(and_(*filters))


# --- payments ----------------------------------------------------------------------------------


def payments_query(
    fragment: str | None,
    *,
    status: str | None,
    merchant_id: str | None,
    network: str | None,
    limit: int,
    starting_after: str | None,
) -> Select[Any]:
    """Newest first, with each payment's currency: fragments of the id, tx hash, sender or
    receiving address, or the exact invoice id."""
    filters = []
    if status is not None:
        filters.append(Payment.status == status)
    if merchant_id is not None:
        filters.append(Payment.merchant_id == merchant_id)
    if network is not None:
        filters.append(Payment.network_code == network)
    query = select(Payment, Currency).join(Currency, Currency.id == Payment.currency_id)
    if fragment is None:
        return _listed(query, Payment.id, filters, limit, starting_after)
    pattern = contains_pattern(fragment)
    branches = [
        select(Payment.id).where(column.ilike(pattern), *filters)
        for column in (Payment.id, Payment.tx_hash, Payment.from_address, Payment.to_address)
    ]
    branches.append(select(Payment.id).where(Payment.invoice_id == fragment, *filters))
    return _among(query, Payment.id, branches, limit, starting_after)


async def search_payments(
    session: AsyncSession, fragment: str | None, **params: Any
) -> Sequence[tuple[Payment, Currency]]:
    rows = await _run(session, payments_query(fragment, **params), searched=fragment is not None)
    return [(row[0], row[1]) for row in rows]


# --- deposit addresses -------------------------------------------------------------------------


def addresses_query(
    fragment: str | None,
    *,
    chain_family: str | None,
    merchant_id: str | None,
    limit: int,
    starting_after: str | None,
) -> Select[Any]:
    """Newest first: fragments of the address, or the exact id or invoice id."""
    filters = []
    if chain_family is not None:
        filters.append(DepositAddress.chain_family == chain_family)
    if merchant_id is not None:
        filters.append(DepositAddress.merchant_id == merchant_id)
    query = select(DepositAddress)
    if fragment is None:
        return _listed(query, DepositAddress.id, filters, limit, starting_after)
    pattern = contains_pattern(fragment)
    branches = [
        select(DepositAddress.id).where(DepositAddress.address.ilike(pattern), *filters),
        select(DepositAddress.id).where(
            or_(DepositAddress.id == fragment, DepositAddress.invoice_id == fragment), *filters
        ),
    ]
    return _among(query, DepositAddress.id, branches, limit, starting_after)


async def search_addresses(
    session: AsyncSession, fragment: str | None, **params: Any
) -> Sequence[DepositAddress]:
    rows = await _run(session, addresses_query(fragment, **params), searched=fragment is not None)
    return [row[0] for row in rows]


# --- stats -------------------------------------------------------------------------------------

# From `ix_payments_confirmed_volume` alone (confirmed_at, currency_id INCLUDE amount).
_VOLUME = text(
    """
    SELECT v.day, c.network_code, c.code, c.id AS currency_id, c.decimals, v.amount, v.payments
    FROM (
        SELECT (confirmed_at AT TIME ZONE 'UTC')::date AS day, currency_id,
               sum(amount) AS amount, count(*) AS payments
        FROM payments
        WHERE status = 'confirmed' AND confirmed_at >= :since
        GROUP BY 1, 2
    ) v JOIN currencies c ON c.id = v.currency_id
    ORDER BY v.day DESC, c.network_code, c.code
    """
)

# Invoices created in the window, by status: one index-only range scan of
# `ix_invoices_status_id` (status, id) per status, over the window's ids (time-ordered) alone.
_INVOICES = text(
    """
    SELECT s.status, (SELECT count(*) FROM invoices i WHERE i.status = s.status AND i.id >= :floor)
        AS n
    FROM unnest(CAST(:statuses AS text[])) AS s(status)
    """
)
# Open now, whenever created: the partial index the expiry job reads.
_OPEN = text("SELECT count(*) FROM invoices WHERE status IN ('pending', 'partially_paid')")

_DELIVERIES = text(
    """
    SELECT count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE status = 'failed') AS failed,
           count(*) FILTER (WHERE status = 'pending') AS pending
    FROM webhook_deliveries WHERE id >= :floor
    """
)
_PENDING_DELIVERIES = text("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'")
_ENDPOINTS = text(
    """
    SELECT count(*) FILTER (WHERE enabled) AS enabled,
           count(*) FILTER (WHERE enabled AND failing_since IS NOT NULL) AS failing,
           count(*) FILTER (WHERE NOT enabled) AS disabled
    FROM webhook_endpoints
    """
)


async def daily_volume(session: AsyncSession, since: datetime) -> Sequence[Any]:
    return (await session.execute(_VOLUME, {"since": since})).all()


async def invoice_counts(session: AsyncSession, floor: str) -> tuple[dict[str, int], int]:
    rows = await session.execute(_INVOICES, {"floor": floor, "statuses": list(INVOICE_STATUSES)})
    return {row.status: row.n for row in rows}, (await session.execute(_OPEN)).scalar_one()


async def delivery_counts(session: AsyncSession, floor: str) -> dict[str, int]:
    row = (await session.execute(_DELIVERIES, {"floor": floor})).one()
    endpoints = (await session.execute(_ENDPOINTS)).one()
    return {
        "succeeded": row.succeeded,
        "failed": row.failed,
        "pending": row.pending,
        "pending_now": (await session.execute(_PENDING_DELIVERIES)).scalar_one(),
        "endpoints_enabled": endpoints.enabled,
        "endpoints_failing": endpoints.failing,
        "endpoints_disabled": endpoints.disabled,
    }
