"""Backoffice routes for reference data: networks, currencies, RPC endpoints.

Any admin group (admin, finance, support) may read; only `admin` may write. Every write is
audit-logged with before/after in the request's transaction. RPC URLs are answered and audited
masked (a provider key never leaves the database; to change it, send the whole new URL; to
change only `priority` or `enabled`, leave `url` out or send back the masked form). Scanners
re-read these rows at every loop: a change takes effect without a restart.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from nespay.auth.deps import AdminActor, require_admin
from nespay.auth.principals import Principal
from nespay.auth.scopes import ADMIN, FINANCE, SUPPORT
from nespay.chains import service
from nespay.chains.schemas import (
    ChainFamily,
    Currency,
    CurrencyCreate,
    CurrencyList,
    CurrencyUpdate,
    Network,
    NetworkCreate,
    NetworkList,
    NetworkUpdate,
    RpcEndpoint,
    RpcEndpointCreate,
    RpcEndpointList,
    RpcEndpointUpdate,
)
from nespay.deps import RuntimeDep, SessionDep, SettingsDep
from nespay.kit.openapi import errors
from nespay.kit.pagination import PageDep, fetch_size, split_page
from nespay.security.encryption import keyring_from_settings

router = APIRouter()
AnyAdmin = Annotated[Principal, Depends(require_admin(ADMIN, FINANCE, SUPPORT))]
AdminOnly = Annotated[Principal, Depends(require_admin(ADMIN))]
NetworkFilter = Annotated[
    str | None, Query(max_length=32, description="Only this network's (code)")
]
EnabledFilter = Annotated[bool | None, Query(description="Only enabled (true) or disabled")]

NETWORKS = ["backoffice: networks"]
CURRENCIES = ["backoffice: currencies"]
RPC = ["backoffice: rpc endpoints"]


# --- networks ----------------------------------------------------------------------------------


@router.get("/networks", response_model=NetworkList, tags=NETWORKS)
async def list_networks(
    _: AnyAdmin,
    page: PageDep,
    session: SessionDep,
    enabled: EnabledFilter = None,
    chain_family: ChainFamily | None = None,
) -> NetworkList:
    """Ordered by code; `starting_after` is the last code of the previous page."""
    rows = await service.list_networks(
        session,
        enabled=enabled,
        chain_family=chain_family,
        limit=fetch_size(page.limit),
        starting_after=page.starting_after,
    )
    rows, has_more = split_page(rows, page.limit)
    return NetworkList(data=[Network.model_validate(row) for row in rows], has_more=has_more)


@router.post(
    "/networks",
    status_code=status.HTTP_201_CREATED,
    response_model=Network,
    tags=NETWORKS,
    responses=errors(409),
)
async def create_network(
    body: NetworkCreate, _: AdminOnly, actor: AdminActor, session: SessionDep
) -> Network:
    """Networks start disabled unless `enabled` is true; add RPC endpoints and currencies."""
    return Network.model_validate(await service.create_network(session, actor, body))


@router.get("/networks/{code}", response_model=Network, tags=NETWORKS, responses=errors(404))
async def get_network(code: str, _: AnyAdmin, session: SessionDep) -> Network:
    return Network.model_validate(await service.get_network(session, code))


@router.patch("/networks/{code}", response_model=Network, tags=NETWORKS, responses=errors(404, 409))
async def update_network(
    code: str,
    body: NetworkUpdate,
    _: AdminOnly,
    actor: AdminActor,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Network:
    """Change what is sent. `code` cannot change; `chain_family` only while the network has
    no currencies; a network of a chain family no scanner serves (Tron, for now) cannot be
    enabled (422 `chain_family_not_scanned`). Disabling takes it off the merchant API (no new
    invoice offers it), but its scanner goes on until its invoices' last expiry plus
    `SCANNER_WATCH_AFTER_EXPIRY_S` (`watch_until`), so no payment to an invoice already
    handed out is lost; its rows, endpoints and cursor stay, so enabling it again resumes
    where it stopped."""
    network = await service.update_network(
        session, actor, code, body, watch_window_s=runtime.settings.scanner_watch_after_expiry_s
    )
    return Network.model_validate(network)


# --- currencies --------------------------------------------------------------------------------


@router.get("/currencies", response_model=CurrencyList, tags=CURRENCIES)
async def list_currencies(
    _: AnyAdmin,
    page: PageDep,
    session: SessionDep,
    network: NetworkFilter = None,
    enabled: EnabledFilter = None,
) -> CurrencyList:
    """Ordered by network and code; `starting_after` is the last id of the previous page."""
    rows = await service.list_currencies(
        session,
        network=network,
        enabled=enabled,
        limit=fetch_size(page.limit),
        starting_after=page.starting_after,
    )
    rows, has_more = split_page(rows, page.limit)
    return CurrencyList(data=[Currency.model_validate(row) for row in rows], has_more=has_more)


@router.post(
    "/currencies",
    status_code=status.HTTP_201_CREATED,
    response_model=Currency,
    tags=CURRENCIES,
    responses=errors(409),
)
async def create_currency(
    body: CurrencyCreate, _: AdminOnly, actor: AdminActor, session: SessionDep
) -> Currency:
    """A token (`contract` set) or the network's native coin (`contract` null, one per
    network)."""
    return Currency.model_validate(await service.create_currency(session, actor, body))


@router.get(
    "/currencies/{currency_id}", response_model=Currency, tags=CURRENCIES, responses=errors(404)
)
async def get_currency(currency_id: str, _: AnyAdmin, session: SessionDep) -> Currency:
    return Currency.model_validate(await service.get_currency(session, currency_id))


@router.patch(
    "/currencies/{currency_id}",
    response_model=Currency,
    tags=CURRENCIES,
    responses=errors(404, 409),
)
async def update_currency(
    currency_id: str,
    body: CurrencyUpdate,
    _: AdminOnly,
    actor: AdminActor,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Currency:
    """`name`, `enabled` and `dust_threshold` can always change; `network`, `code`, `contract`
    and `decimals` only until an invoice refers to the currency. Disabled, a currency is not
    offered on new invoices but is still scanned until its invoices' last expiry plus
    `SCANNER_WATCH_AFTER_EXPIRY_S` (`watch_until`)."""
    currency = await service.update_currency(
        session,
        actor,
        currency_id,
        body,
        watch_window_s=runtime.settings.scanner_watch_after_expiry_s,
    )
    return Currency.model_validate(currency)


# --- RPC endpoints -----------------------------------------------------------------------------


@router.get("/rpc-endpoints", response_model=RpcEndpointList, tags=RPC)
async def list_rpc_endpoints(
    _: AnyAdmin,
    page: PageDep,
    session: SessionDep,
    network: NetworkFilter = None,
    enabled: EnabledFilter = None,
) -> RpcEndpointList:
    """Ordered by network and priority (lower is tried first), with each one's health."""
    rows = await service.list_rpc_endpoints(
        session,
        network=network,
        enabled=enabled,
        limit=fetch_size(page.limit),
        starting_after=page.starting_after,
    )
    rows, has_more = split_page(rows, page.limit)
    return RpcEndpointList(
        data=[RpcEndpoint.model_validate(row) for row in rows], has_more=has_more
    )


@router.post(
    "/rpc-endpoints",
    status_code=status.HTTP_201_CREATED,
    response_model=RpcEndpoint,
    tags=RPC,
    responses=errors(409),
)
async def create_rpc_endpoint(
    body: RpcEndpointCreate,
    _: AdminOnly,
    actor: AdminActor,
    session: SessionDep,
    settings: SettingsDep,
) -> RpcEndpoint:
    keyring = keyring_from_settings(settings)
    endpoint = await service.create_rpc_endpoint(session, actor, body, keyring)
    return RpcEndpoint.model_validate(endpoint)


@router.get(
    "/rpc-endpoints/{endpoint_id}", response_model=RpcEndpoint, tags=RPC, responses=errors(404)
)
async def get_rpc_endpoint(endpoint_id: str, _: AnyAdmin, session: SessionDep) -> RpcEndpoint:
    return RpcEndpoint.model_validate(await service.get_rpc_endpoint(session, endpoint_id))


@router.patch(
    "/rpc-endpoints/{endpoint_id}", response_model=RpcEndpoint, tags=RPC, responses=errors(404, 409)
)
async def update_rpc_endpoint(
    endpoint_id: str,
    body: RpcEndpointUpdate,
    _: AdminOnly,
    actor: AdminActor,
    session: SessionDep,
    settings: SettingsDep,
) -> RpcEndpoint:
    """A new `url` or `network` resets the endpoint's health to `unknown` until its next probe."""
    keyring = keyring_from_settings(settings)
    endpoint = await service.update_rpc_endpoint(session, actor, endpoint_id, body, keyring)
    return RpcEndpoint.model_validate(endpoint)


@router.delete(
    "/rpc-endpoints/{endpoint_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=RPC,
    responses=errors(404, 409),
)
async def delete_rpc_endpoint(
    endpoint_id: str, _: AdminOnly, actor: AdminActor, session: SessionDep
) -> None:
    """Removing a network's last endpoint is allowed: its scanner idles until one is added."""
    await service.delete_rpc_endpoint(session, actor, endpoint_id)
