"""All SQL of the chains domain's reference data."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from nespay.models import Currency, InvoiceOption, Network, Payment, RpcEndpoint


@dataclass(frozen=True)
class EndpointProbeTarget:
    id: str
    url: str
    chain_family: str
    chain_id: int | None
    api_key: str | None = field(default=None, repr=False)  # sealed as read; see tasks


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    latency_ms: int
    head_block: int | None = None
    error: str | None = None


async def endpoints_of_enabled_networks(session: AsyncSession) -> list[EndpointProbeTarget]:
    rows = await session.execute(
        select(
            RpcEndpoint.id,
            RpcEndpoint.url,
            Network.chain_family,
            Network.chain_id,
            RpcEndpoint.api_key_encrypted,
        )
        .join(Network, Network.code == RpcEndpoint.network_code)
        .where(Network.enabled, RpcEndpoint.enabled)
        .order_by(RpcEndpoint.network_code, RpcEndpoint.priority)
    )
    return [EndpointProbeTarget(*row) for row in rows]


async def record_probe(session: AsyncSession, endpoint_id: str, result: ProbeResult) -> None:
    await session.execute(
        update(RpcEndpoint)
        .where(RpcEndpoint.id == endpoint_id)
        .values(
            status="up" if result.ok else "down",
            last_checked_at=func.now(),
            latency_ms=result.latency_ms,
            head_block=result.head_block if result.ok else RpcEndpoint.head_block,
            consecutive_failures=0 if result.ok else RpcEndpoint.consecutive_failures + 1,
            last_error=None if result.ok else (result.error or "unknown error")[:500],
        )
    )


async def list_networks(session: AsyncSession) -> Sequence[Network]:
    return (await session.scalars(select(Network).order_by(Network.code))).all()


# --- reference data management (backoffice, CLI, merchant listings) ------------------------------


async def get_network(
    session: AsyncSession, code: str, *, for_update: bool = False
) -> Network | None:
    """`for_update` takes FOR NO KEY UPDATE: writers of one network queue up, while rows that
    merely refer to the network (invoice options, endpoints) can still be inserted."""
    query = select(Network).where(Network.code == code)
    if for_update:
        query = query.with_for_update(key_share=True)
    return await session.scalar(query)


async def networks_page(
    session: AsyncSession,
    *,
    enabled: bool | None = None,
    chain_family: str | None = None,
    families: Sequence[str] | None = None,
    limit: int,
    starting_after: str | None = None,
) -> Sequence[Network]:
    """Ordered by code; `starting_after` is the last code of the previous page."""
    query = select(Network).order_by(Network.code).limit(limit)
    if enabled is not None:
        query = query.where(Network.enabled.is_(enabled))
    if chain_family is not None:
        query = query.where(Network.chain_family == chain_family)
    if families is not None:
        query = query.where(Network.chain_family.in_(families))
    if starting_after is not None:
        query = query.where(Network.code > starting_after)
    return (await session.scalars(query)).all()


async def endpoint_counts(session: AsyncSession) -> dict[str, tuple[int, int]]:
    """Per network code: (enabled endpoints, all endpoints)."""
    rows = await session.execute(
        select(
            RpcEndpoint.network_code,
            func.count().filter(RpcEndpoint.enabled),
            func.count(),
        ).group_by(RpcEndpoint.network_code)
    )
    return {code: (enabled, total) for code, enabled, total in rows.tuples()}


async def network_has_currencies(session: AsyncSession, code: str) -> bool:
    return bool(await session.scalar(select(exists().where(Currency.network_code == code))))


async def get_currency(
    session: AsyncSession, currency_id: str, *, for_update: bool = False
) -> Currency | None:
    query = select(Currency).where(Currency.id == currency_id)
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


async def _currency_key(session: AsyncSession, currency_id: str) -> tuple[str, str, str] | None:
    row = (
        await session.execute(
            select(Currency.network_code, Currency.code, Currency.id).where(
                Currency.id == currency_id
            )
        )
    ).one_or_none()
    return None if row is None else tuple(row)  # type: ignore[return-value]


async def currencies_page(
    session: AsyncSession,
    *,
    network: str | None = None,
    enabled: bool | None = None,
    limit: int | None,
    starting_after: str | None = None,
) -> Sequence[Currency]:
    """Ordered by network, code; `starting_after` is the last id of the previous page."""
    query = select(Currency).order_by(Currency.network_code, Currency.code, Currency.id)
    if limit is not None:
        query = query.limit(limit)
    if network is not None:
        query = query.where(Currency.network_code == network)
    if enabled is not None:
        query = query.where(Currency.enabled.is_(enabled))
    if starting_after is not None:
        key = await _currency_key(session, starting_after)
        if key is None:
            return []
        query = query.where(tuple_(Currency.network_code, Currency.code, Currency.id) > key)
    return (await session.scalars(query)).all()


@dataclass(frozen=True)
class PublicCurrencyRow:
    id: str
    code: str
    name: str
    network: str
    chain_family: str
    contract: str | None
    decimals: int
    confirmations: int


async def enabled_currencies_page(
    session: AsyncSession,
    *,
    families: Sequence[str],
    network: str | None = None,
    limit: int,
    starting_after: str | None = None,
) -> list[PublicCurrencyRow]:
    """Enabled currencies of enabled networks of these chain families, with what a payer's
    wait depends on."""
    query = (
        select(
            Currency.id,
            Currency.code,
            Currency.name,
            Currency.network_code,
            Network.chain_family,
            Currency.contract,
            Currency.decimals,
            Network.confirmations,
        )
        .join(Network, Network.code == Currency.network_code)
        .where(Network.enabled, Currency.enabled, Network.chain_family.in_(families))
        .order_by(Currency.network_code, Currency.code, Currency.id)
        .limit(limit)
    )
    if network is not None:
        query = query.where(Currency.network_code == network)
    if starting_after is not None:
        key = await _currency_key(session, starting_after)
        if key is None:
            return []
        query = query.where(tuple_(Currency.network_code, Currency.code, Currency.id) > key)
    return [PublicCurrencyRow(*row) for row in await session.execute(query)]


async def currency_clash(
    session: AsyncSession,
    network: str,
    *,
    code: str,
    contract: str | None,
    exclude_id: str | None = None,
) -> str | None:
    """What another currency of `network` already holds: "code", "contract", "native" or None.

    Codes and contracts compare case-insensitively; a network has one native coin (no contract).
    """
    others = select(Currency.code, Currency.contract).where(Currency.network_code == network)
    if exclude_id is not None:
        others = others.where(Currency.id != exclude_id)
    for other_code, other_contract in await session.execute(others):
        if other_code.lower() == code.lower():
            return "code"
        if contract is None and other_contract is None:
            return "native"
        if (
            contract is not None
            and other_contract is not None
            and other_contract.lower() == contract.lower()
        ):
            return "contract"
    return None


async def currency_in_use(session: AsyncSession, currency_id: str) -> bool:
    """Whether an invoice option (and so possibly a payment) refers to the currency."""
    used = await session.scalar(
        select(
            exists().where(InvoiceOption.currency_id == currency_id)
            | exists().where(Payment.currency_id == currency_id)
        )
    )
    return bool(used)


async def get_rpc_endpoint(
    session: AsyncSession, endpoint_id: str, *, for_update: bool = False
) -> RpcEndpoint | None:
    query = select(RpcEndpoint).where(RpcEndpoint.id == endpoint_id)
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


async def rpc_endpoint_by_url(
    session: AsyncSession, network: str, url: str, *, for_update: bool = False
) -> RpcEndpoint | None:
    query = select(RpcEndpoint).where(RpcEndpoint.network_code == network, RpcEndpoint.url == url)
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


async def rpc_endpoints_page(
    session: AsyncSession,
    *,
    network: str | None = None,
    enabled: bool | None = None,
    limit: int,
    starting_after: str | None = None,
) -> Sequence[RpcEndpoint]:
    """Ordered by network, priority; `starting_after` is the last id of the previous page."""
    query = (
        select(RpcEndpoint)
        .order_by(RpcEndpoint.network_code, RpcEndpoint.priority, RpcEndpoint.id)
        .limit(limit)
    )
    if network is not None:
        query = query.where(RpcEndpoint.network_code == network)
    if enabled is not None:
        query = query.where(RpcEndpoint.enabled.is_(enabled))
    if starting_after is not None:
        key = (
            await session.execute(
                select(RpcEndpoint.network_code, RpcEndpoint.priority, RpcEndpoint.id).where(
                    RpcEndpoint.id == starting_after
                )
            )
        ).one_or_none()
        if key is None:
            return []
        query = query.where(
            tuple_(RpcEndpoint.network_code, RpcEndpoint.priority, RpcEndpoint.id) > tuple(key)
        )
    return (await session.scalars(query)).all()


# When a currency or network is switched off: the last expiry of the invoices that may still
# be paid in it (not cancelled, expiring after `now - window`), plus the window for late
# payments. NULL when there is none: nothing more to watch.
_WATCH_UNTIL = text(
    """
    SELECT max(i.expires_at) + make_interval(secs => :window)
    FROM invoice_options o JOIN invoices i ON i.id = o.invoice_id
    WHERE (o.currency_id = :currency OR o.network_code = :network)
      AND i.status <> 'cancelled'
      AND i.expires_at > now() - make_interval(secs => :window)
    """
)


async def watch_until(
    session: AsyncSession,
    *,
    window_s: int,
    currency_id: str | None = None,
    network: str | None = None,
) -> datetime | None:
    """Until when a currency (or every currency of a network) switched off now must still be
    scanned, in chain time."""
    return await session.scalar(
        _WATCH_UNTIL, {"window": float(window_s), "currency": currency_id, "network": network}
    )


_FORGET_CURSOR = text(
    """
    WITH cursor AS (
        DELETE FROM chain_cursors WHERE network_code = :n
        RETURNING block_number, block_hash, genesis_hash
    ), blocks AS (
        DELETE FROM chain_blocks WHERE network_code = :n
    ), failing AS (
        DELETE FROM scanner_status WHERE network_code = :n
    )
    SELECT block_number, block_hash, genesis_hash FROM cursor
    """
)


async def forget_cursor(session: AsyncSession, network: str) -> dict[str, Any] | None:
    """Delete the network's cursor, stored blocks and failure; returns the cursor it had."""
    row = (await session.execute(_FORGET_CURSOR, {"n": network})).one_or_none()
    return None if row is None else dict(row._mapping)


@dataclass(frozen=True)
class OfferState:
    """A network, and one of the asked currencies on it (None: the network has none of them)."""

    network: str
    chain_family: str
    network_enabled: bool
    currency: str | None
    currency_enabled: bool | None


_OFFER_STATES = text(
    """
    SELECT n.code AS network, n.chain_family, n.enabled AS network_enabled,
           c.code AS currency, c.enabled AS currency_enabled
    FROM networks n LEFT JOIN currencies c ON c.network_code = n.code AND c.code = ANY(:codes)
    WHERE n.code = ANY(:networks) OR c.id IS NOT NULL
    ORDER BY n.code, c.code
    """
)


async def offer_states(
    session: AsyncSession, networks: Sequence[str], codes: Sequence[str]
) -> list[OfferState]:
    """Whatever their state: the named networks (with any of `codes` on them), and every
    network that has one of `codes`."""
    rows = await session.execute(_OFFER_STATES, {"networks": list(networks), "codes": list(codes)})
    return [OfferState(**row._mapping) for row in rows]
