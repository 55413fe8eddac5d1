"""Managing reference data: networks, their currencies (tokens and native coins), RPC endpoints.

Used by the backoffice routes and the `nespay networks|currencies` commands alike. Every change
is audit-logged (before/after) in the caller's transaction; RPC URLs, which often embed a
provider's API key, appear in the audit log, in answers and in log lines only masked
(`nespay.kit.urls.mask_url`); the stored URL stays whole, for the scanner.
Scanners read these rows at every loop, so a committed change takes effect without a restart.

Rules a payments engineer expects:
- a network's `code` never changes (invoices, payments and cursors refer to it); its
  `chain_family` only while it has no currencies;
- contracts are validated for the network's family (EVM: `0x` + 40 hex, stored lower-case;
  Tron: base58check `T…`), compared case-insensitively; one native coin (no contract) per
  network; currency codes are unique per network, case-insensitively;
- a currency's identity (network, code, contract, decimals) is frozen once an invoice option
  or payment refers to it; its name and `enabled` can always change;
- disabling a network or removing its last endpoint is allowed: its scanner idles until an
  endpoint is back, nothing else depends on it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from nespay.audit.service import record
from nespay.auth.principals import Actor
from nespay.chains import repository
from nespay.chains.catalog import OFFERED_FAMILIES
from nespay.chains.schemas import (
    CurrencyCreate,
    CurrencyUpdate,
    NetworkCreate,
    NetworkUpdate,
    RpcEndpointCreate,
    RpcEndpointUpdate,
)
from nespay.errors import Conflict, NespayError, NotFound
from nespay.kit.addresses import AddressInvalid, parse_tron_address
from nespay.kit.crypto import Keyring
from nespay.kit.ids import new_id
from nespay.kit.money import parse_amount, to_base_units
from nespay.kit.urls import MASK, mask_url
from nespay.models import Currency, Network, RpcEndpoint
from nespay.models.reference import RPC_API_KEY
from nespay.security.encryption import seal

log = structlog.get_logger("nespay.chains")

DEFAULT_RPC_PRIORITY = 100


# --- errors ------------------------------------------------------------------------------------


class NetworkNotFound(NotFound):
    code = "network_not_found"
    message = "No such network."


class UnknownNetwork(NespayError):
    status_code = 422
    code = "unknown_network"
    message = "No such network."

    def __init__(self, network: str) -> None:
        super().__init__(f"There is no network '{network}'; GET /networks lists them.")
        self.network = network


class NetworkExists(Conflict):
    code = "network_exists"
    message = "A network with this code already exists."


class NetworkCodeImmutable(NespayError):
    status_code = 422
    code = "network_code_immutable"
    message = (
        "A network's code cannot change (invoices, payments and cursors refer to it); "
        "create a new network instead."
    )


class ChainFamilyLocked(Conflict):
    code = "chain_family_locked"
    message = "The chain family of a network that has currencies cannot change."


class ChainIdRequired(NespayError):
    status_code = 422
    code = "chain_id_required"
    message = "EVM networks need a `chain_id`."


class ChainFamilyNotScanned(NespayError):
    status_code = 422
    code = "chain_family_not_scanned"
    message = "No scanner serves this chain family yet."

    def __init__(self, family: str) -> None:
        super().__init__(
            f"A {family} network cannot be enabled: no scanner serves the {family} chain family "
            "yet, so invoices would hand out addresses nobody watches. Offered families: "
            + ", ".join(OFFERED_FAMILIES)
            + "."
        )


class DustThresholdPrecision(NespayError):
    status_code = 422
    code = "dust_threshold_precision"
    message = "The dust threshold has more decimal places than the currency."


class CurrencyNotFound(NotFound):
    code = "currency_not_found"
    message = "No such currency."


class InvalidContract(NespayError):
    status_code = 422
    code = "invalid_contract"
    message = "The contract address is not valid for this network."


class NativeCurrencyExists(Conflict):
    code = "native_currency_exists"
    message = "This network already has its native coin (a currency without a contract)."


class CurrencyCodeTaken(Conflict):
    code = "currency_code_taken"
    message = "This network already has a currency with this code."


class CurrencyContractTaken(Conflict):
    code = "currency_contract_taken"
    message = "This network already has a currency with this contract."


class CurrencyInUse(Conflict):
    code = "currency_in_use"
    message = (
        "Invoices refer to this currency: its network, code, contract and decimals cannot "
        "change any more (name and enabled can). Disable it and add a new one instead."
    )


class RpcEndpointNotFound(NotFound):
    code = "rpc_endpoint_not_found"
    message = "No such RPC endpoint."


class RpcEndpointExists(Conflict):
    code = "rpc_endpoint_exists"
    message = "This network already has an endpoint with this URL."


class RpcApiKeyUnused(NespayError):
    status_code = 422
    code = "rpc_api_key_unused"
    message = (
        "Only a Tron endpoint takes an API key (sent as TRON-PRO-API-KEY); an EVM provider's "
        "key goes in its URL."
    )


class RpcUrlMasked(NespayError):
    status_code = 422
    code = "rpc_url_masked"
    message = (
        f"This URL holds `{MASK}`, as answers show a URL with its key hidden: send the full URL, "
        "or leave `url` out to keep the stored one."
    )


_CONSTRAINTS: dict[str, type[NespayError]] = {
    "networks_pkey": NetworkExists,
    "pk_networks": NetworkExists,
    "uq_currencies_network_code_code": CurrencyCodeTaken,
    "uq_currencies_network_code_contract": CurrencyContractTaken,
    "uq_rpc_endpoints_network_code_url": RpcEndpointExists,
}


def _conflict_of(error: IntegrityError) -> NespayError | None:
    """The domain error for a unique violation (a race the checks before could not see)."""
    cause = getattr(error.orig, "__cause__", None)
    name = getattr(cause, "constraint_name", None) or ""
    kind = _CONSTRAINTS.get(name)
    return kind() if kind is not None else None


async def _flush(session: AsyncSession) -> None:
    try:
        await session.flush()
    except IntegrityError as error:
        conflict = _conflict_of(error)
        if conflict is None:
            raise
        raise conflict from None


# --- contracts, snapshots ----------------------------------------------------------------------


_EVM_CONTRACT = re.compile(r"^0x[0-9a-fA-F]{40}$")


def normalise_contract(chain_family: str, contract: str | None) -> str | None:
    """The contract as stored (EVM lower-case), or InvalidContract; None is the native coin."""
    if contract is None:
        return None
    contract = contract.strip()
    if chain_family == "evm":
        if not _EVM_CONTRACT.fullmatch(contract):
            raise InvalidContract(
                "An EVM token contract is 0x followed by 40 hex digits; "
                "leave the contract out (null) for the network's native coin."
            )
        if int(contract, 16) == 0:
            raise InvalidContract(
                "The zero address is not a token contract; leave the contract out (null) "
                "for the network's native coin."
            )
        return contract.lower()
    try:
        return parse_tron_address(contract)
    except AddressInvalid as error:
        raise InvalidContract(
            f"A Tron token contract is a base58 address (T followed by 33 characters): {error}; "
            "leave the contract out (null) for the network's native coin."
        ) from None


NETWORK_FIELDS = (
    "code",
    "name",
    "chain_family",
    "chain_id",
    "confirmations",
    "block_time_ms",
    "is_testnet",
    "enabled",
    "explorer_url",
)
CURRENCY_FIELDS = ("network", "code", "name", "contract", "decimals", "enabled", "dust_threshold")
RPC_FIELDS = ("network", "url", "priority", "enabled")
_COLUMN = {"network": "network_code"}  # API field → model attribute


def _attr(field: str) -> str:
    return _COLUMN.get(field, field)


def network_snapshot(network: Network, fields: Iterable[str] = NETWORK_FIELDS) -> dict[str, Any]:
    return {field: getattr(network, field) for field in fields}


def currency_snapshot(
    currency: Currency, fields: Iterable[str] = CURRENCY_FIELDS
) -> dict[str, Any]:
    """For the audit log (the dust threshold in base units, as a string)."""
    values = {field: getattr(currency, _attr(field)) for field in fields}
    if "dust_threshold" in values:
        values["dust_threshold"] = str(int(values["dust_threshold"]))
    return values


def rpc_snapshot(endpoint: RpcEndpoint, fields: Iterable[str] = RPC_FIELDS) -> dict[str, Any]:
    """For the audit log: the URL masked."""
    values = {field: getattr(endpoint, _attr(field)) for field in fields}
    if "url" in values:
        values["url"] = mask_url(values["url"])
    return values


def _changed(row: object, values: dict[str, Any]) -> dict[str, Any]:
    """The API fields among `values` whose value differs from the row's."""
    return {field: value for field, value in values.items() if getattr(row, _attr(field)) != value}


# --- networks ----------------------------------------------------------------------------------


async def get_network(session: AsyncSession, code: str) -> Network:
    network = await repository.get_network(session, code)
    if network is None:
        raise NetworkNotFound(f"There is no network '{code}'.")
    return network


async def known_network(session: AsyncSession, code: str, *, lock: bool = False) -> Network:
    """A network named in a body, query or command (422 `unknown_network` when there is none)."""
    network = await repository.get_network(session, code, for_update=lock)
    if network is None:
        raise UnknownNetwork(code)
    return network


async def list_networks(
    session: AsyncSession,
    *,
    enabled: bool | None = None,
    chain_family: str | None = None,
    limit: int,
    starting_after: str | None = None,
) -> Sequence[Network]:
    return await repository.networks_page(
        session,
        enabled=enabled,
        chain_family=chain_family,
        limit=limit,
        starting_after=starting_after,
    )


@dataclass(frozen=True)
class NetworkOverview:
    network: Network
    endpoints_enabled: int
    endpoints_total: int


async def network_overview(session: AsyncSession) -> list[NetworkOverview]:
    counts = await repository.endpoint_counts(session)
    return [
        NetworkOverview(network, *counts.get(network.code, (0, 0)))
        for network in await repository.list_networks(session)
    ]


async def create_network(session: AsyncSession, actor: Actor, body: NetworkCreate) -> Network:
    if body.chain_family == "evm" and body.chain_id is None:
        raise ChainIdRequired()
    if body.enabled:
        _refuse_unscanned(body.chain_family)
    if await repository.get_network(session, body.code) is not None:
        raise NetworkExists(f"A network with the code '{body.code}' already exists.")
    network = Network(**body.model_dump())
    session.add(network)
    await _flush(session)
    await session.refresh(network)
    await record(
        session,
        actor,
        "network.created",
        target_type="network",
        target_id=network.code,
        after=network_snapshot(network),
    )
    log.info("network_created", network=network.code, enabled=network.enabled)
    return network


async def update_network(
    session: AsyncSession, actor: Actor, code: str, body: NetworkUpdate, *, watch_window_s: int
) -> Network:
    """Switched off, a network is no longer offered on new invoices, but its scanner goes on
    until the last of its invoices' expiries plus `watch_window_s` (chain time): payments
    to invoices already handed out are never dropped."""
    network = await repository.get_network(session, code, for_update=True)
    if network is None:
        raise NetworkNotFound(f"There is no network '{code}'.")
    values = body.changes()
    if values.pop("code", code) != code:
        raise NetworkCodeImmutable()
    changes = _changed(network, values)
    if not changes:
        return network
    family = changes.get("chain_family", network.chain_family)
    chain_id = changes.get("chain_id", network.chain_id)
    if family == "evm" and chain_id is None:
        raise ChainIdRequired()
    if "chain_family" in changes and await repository.network_has_currencies(session, code):
        raise ChainFamilyLocked()
    if changes.get("enabled", network.enabled):
        _refuse_unscanned(family)
    before = network_snapshot(network, changes)
    for field, value in changes.items():
        setattr(network, field, value)
    if "enabled" in changes:
        network.watch_until = (
            None
            if network.enabled
            else await repository.watch_until(session, window_s=watch_window_s, network=code)
        )
    await _flush(session)
    await session.refresh(network)
    await record(
        session,
        actor,
        "network.updated",
        target_type="network",
        target_id=network.code,
        before=before,
        after=network_snapshot(network, changes),
    )
    log.info("network_updated", network=network.code, fields=sorted(changes))
    return network


async def offered_networks(
    session: AsyncSession, *, limit: int, starting_after: str | None
) -> Sequence[Network]:
    """What merchants may offer: enabled networks of a chain family a scanner serves."""
    return await repository.networks_page(
        session,
        enabled=True,
        families=OFFERED_FAMILIES,
        limit=limit,
        starting_after=starting_after,
    )


async def offered_currencies(
    session: AsyncSession, *, network: str | None, limit: int, starting_after: str | None
) -> list[repository.PublicCurrencyRow]:
    """Enabled currencies of the offered networks."""
    return await repository.enabled_currencies_page(
        session,
        families=OFFERED_FAMILIES,
        network=network,
        limit=limit,
        starting_after=starting_after,
    )


async def reset_cursor(session: AsyncSession, actor: Actor, code: str) -> bool:
    """Forget a network's scan cursor, stored blocks and chain (genesis), audit-logged; false
    if it had none."""
    await known_network(session, code, lock=True)
    before = await repository.forget_cursor(session, code)
    if before is None:
        return False
    await record(
        session,
        actor,
        "network.cursor_reset",
        target_type="network",
        target_id=code,
        before=before,
    )
    log.warning("network_cursor_reset", network=code, block=before["block_number"])
    return True


def _refuse_unscanned(family: str) -> None:
    """Never offer what is not scanned: only a family a scanner serves can be enabled."""
    if family not in OFFERED_FAMILIES:
        raise ChainFamilyNotScanned(family)


# --- currencies --------------------------------------------------------------------------------


async def get_currency(session: AsyncSession, currency_id: str) -> Currency:
    currency = await repository.get_currency(session, currency_id)
    if currency is None:
        raise CurrencyNotFound()
    return currency


async def list_currencies(
    session: AsyncSession,
    *,
    network: str | None = None,
    enabled: bool | None = None,
    limit: int | None = None,
    starting_after: str | None = None,
) -> Sequence[Currency]:
    """`limit=None` lists them all (the CLI)."""
    if network is not None:
        await known_network(session, network)
    return await repository.currencies_page(
        session, network=network, enabled=enabled, limit=limit, starting_after=starting_after
    )


async def _refuse_clash(
    session: AsyncSession,
    network: str,
    code: str,
    contract: str | None,
    exclude_id: str | None = None,
) -> None:
    clash = await repository.currency_clash(
        session, network, code=code, contract=contract, exclude_id=exclude_id
    )
    if clash == "code":
        raise CurrencyCodeTaken(f"Network '{network}' already has a currency with the code {code}.")
    if clash == "contract":
        raise CurrencyContractTaken(
            f"Network '{network}' already has a currency with the contract {contract}."
        )
    if clash == "native":
        raise NativeCurrencyExists(
            f"Network '{network}' already has its native coin (a currency without a contract)."
        )


async def create_currency(session: AsyncSession, actor: Actor, body: CurrencyCreate) -> Currency:
    # The network row lock serialises changes to one network's currencies (one native coin).
    network = await known_network(session, body.network, lock=True)
    contract = normalise_contract(network.chain_family, body.contract)
    await _refuse_clash(session, network.code, body.code, contract)
    currency = Currency(
        id=new_id("cur"),
        network_code=network.code,
        code=body.code,
        name=body.name or body.code,
        contract=contract,
        decimals=body.decimals,
        enabled=body.enabled,
        dust_threshold=_dust_units(body.dust_threshold, body.decimals),
    )
    session.add(currency)
    await _flush(session)
    await session.refresh(currency)
    await record(
        session,
        actor,
        "currency.created",
        target_type="currency",
        target_id=currency.id,
        after=currency_snapshot(currency),
    )
    log.info("currency_created", currency_id=currency.id, network=network.code)
    return currency


def _dust_units(value: str, decimals: int) -> Decimal:
    """A dust threshold in whole units as the currency's base units."""
    try:
        return Decimal(to_base_units(parse_amount(value), decimals))
    except ValueError:
        raise DustThresholdPrecision(
            f"dust_threshold has more than the currency's {decimals} decimal places."
        ) from None


async def update_currency(
    session: AsyncSession,
    actor: Actor,
    currency_id: str,
    body: CurrencyUpdate,
    *,
    watch_window_s: int,
) -> Currency:
    """Switched off, a currency is no longer offered on new invoices, but it is scanned until
    the last of its invoices' expiries plus `watch_window_s` (chain time): payments to
    invoices already handed out are never dropped."""
    currency = await repository.get_currency(session, currency_id, for_update=True)
    if currency is None:
        raise CurrencyNotFound()
    values = body.changes()
    if "dust_threshold" in values:
        values["dust_threshold"] = _dust_units(
            str(values["dust_threshold"]), int(values.get("decimals", currency.decimals))
        )
    network = await known_network(
        session, str(values.get("network", currency.network_code)), lock=True
    )
    if "contract" in values or network.code != currency.network_code:
        # A token moved to another network is checked against that network's family too.
        values["contract"] = normalise_contract(
            network.chain_family, values.get("contract", currency.contract)
        )
    changes = _changed(currency, values)
    if not changes:
        return currency
    if {"network", "code", "contract", "decimals"} & changes.keys() and (
        await repository.currency_in_use(session, currency.id)
    ):
        raise CurrencyInUse()
    if {"network", "code", "contract"} & changes.keys():
        await _refuse_clash(
            session,
            network.code,
            changes.get("code", currency.code),
            changes.get("contract", currency.contract),
            exclude_id=currency.id,
        )
    before = currency_snapshot(currency, changes)
    for field, value in changes.items():
        setattr(currency, _attr(field), value)
    if "enabled" in changes:
        currency.watch_until = (
            None
            if currency.enabled
            else await repository.watch_until(
                session, window_s=watch_window_s, currency_id=currency.id
            )
        )
    await _flush(session)
    await session.refresh(currency)
    await record(
        session,
        actor,
        "currency.updated",
        target_type="currency",
        target_id=currency.id,
        before=before,
        after=currency_snapshot(currency, changes),
    )
    log.info("currency_updated", currency_id=currency.id, fields=sorted(changes))
    return currency


# --- RPC endpoints -----------------------------------------------------------------------------


async def get_rpc_endpoint(session: AsyncSession, endpoint_id: str) -> RpcEndpoint:
    endpoint = await repository.get_rpc_endpoint(session, endpoint_id)
    if endpoint is None:
        raise RpcEndpointNotFound()
    return endpoint


async def list_rpc_endpoints(
    session: AsyncSession,
    *,
    network: str | None = None,
    enabled: bool | None = None,
    limit: int,
    starting_after: str | None = None,
) -> Sequence[RpcEndpoint]:
    if network is not None:
        await known_network(session, network)
    return await repository.rpc_endpoints_page(
        session, network=network, enabled=enabled, limit=limit, starting_after=starting_after
    )


def _sealed_api_key(
    network: Network, keyring: Keyring | None, endpoint_id: str, api_key: str | None
) -> str | None:
    """The key as stored (encrypted, bound to the endpoint's row); None removes it."""
    if api_key is None:
        return None
    if network.chain_family != "tron":
        raise RpcApiKeyUnused()
    assert keyring is not None, "an API key needs the keyring to be stored"
    return seal(keyring, RPC_API_KEY, endpoint_id, api_key)


async def create_rpc_endpoint(
    session: AsyncSession, actor: Actor, body: RpcEndpointCreate, keyring: Keyring | None = None
) -> RpcEndpoint:
    """Add an endpoint; `body.api_key` (Tron only) is stored encrypted under `keyring`."""
    network = await known_network(session, body.network)
    _refuse_masked(body.url)
    if await repository.rpc_endpoint_by_url(session, network.code, body.url) is not None:
        raise RpcEndpointExists()
    endpoint_id = new_id("rpc")
    endpoint = RpcEndpoint(
        id=endpoint_id,
        network_code=network.code,
        url=body.url,
        priority=body.priority,
        enabled=body.enabled,
        api_key_encrypted=_sealed_api_key(network, keyring, endpoint_id, body.api_key),
    )
    session.add(endpoint)
    await _flush(session)
    await session.refresh(endpoint)
    await record(
        session,
        actor,
        "rpc_endpoint.created",
        target_type="rpc_endpoint",
        target_id=endpoint.id,
        after=rpc_snapshot(endpoint),
        detail={"api_key_set": True} if body.api_key is not None else None,
    )
    log.info("rpc_endpoint_created", rpc_endpoint_id=endpoint.id, network=network.code)
    return endpoint


async def update_rpc_endpoint(
    session: AsyncSession,
    actor: Actor,
    endpoint_id: str,
    body: RpcEndpointUpdate,
    keyring: Keyring | None = None,
) -> RpcEndpoint:
    """Change an endpoint; `api_key` (Tron only) replaces its key, null removes it."""
    endpoint = await repository.get_rpc_endpoint(session, endpoint_id, for_update=True)
    if endpoint is None:
        raise RpcEndpointNotFound()
    requested = body.changes()
    key_change = "api_key" in requested
    api_key = requested.pop("api_key", None)
    changes = _changed(endpoint, _unmasked(endpoint, requested))
    if key_change:
        network = await known_network(session, changes.get("network", endpoint.network_code))
        endpoint.api_key_encrypted = _sealed_api_key(network, keyring, endpoint.id, api_key)
    if not changes and not key_change:
        return endpoint
    moved = {"network", "url"} & changes.keys()
    if moved:
        network = changes.get("network", endpoint.network_code)
        await known_network(session, network)
        url = changes.get("url", endpoint.url)
        if await repository.rpc_endpoint_by_url(session, network, url) is not None:
            raise RpcEndpointExists()
    before = rpc_snapshot(endpoint, changes)
    for field, value in changes.items():
        setattr(endpoint, _attr(field), value)
    if moved:  # another node: what the health check knew no longer applies
        endpoint.status = "unknown"
        endpoint.consecutive_failures = 0
        endpoint.last_error = None
        endpoint.latency_ms = None
        endpoint.head_block = None
        endpoint.last_checked_at = None
    await _flush(session)
    await session.refresh(endpoint)
    await record(
        session,
        actor,
        "rpc_endpoint.updated",
        target_type="rpc_endpoint",
        target_id=endpoint.id,
        before=before,
        after=rpc_snapshot(endpoint, changes),
        # Masked URLs can look alike (same host, new key): say that it changed.
        detail={
            **({"url_changed": True} if "url" in changes else {}),
            **({"api_key_set": api_key is not None} if key_change else {}),
        }
        or None,
    )
    log.info("rpc_endpoint_updated", rpc_endpoint_id=endpoint.id, fields=sorted(changes))
    return endpoint


def _refuse_masked(url: str) -> None:
    if MASK in url:
        raise RpcUrlMasked()


def _unmasked(endpoint: RpcEndpoint, changes: dict[str, Any]) -> dict[str, Any]:
    """The changes less a `url` that is the stored one as answers show it (a client sending
    back what it read to change only `priority` or `enabled` keeps the key it never saw)."""
    url = changes.get("url")
    if url is None:
        return changes
    if url == mask_url(endpoint.url):
        return {field: value for field, value in changes.items() if field != "url"}
    _refuse_masked(url)
    return changes


async def delete_rpc_endpoint(session: AsyncSession, actor: Actor, endpoint_id: str) -> None:
    endpoint = await repository.get_rpc_endpoint(session, endpoint_id, for_update=True)
    if endpoint is None:
        raise RpcEndpointNotFound()
    before = rpc_snapshot(endpoint)
    await session.delete(endpoint)
    await _flush(session)
    await record(
        session,
        actor,
        "rpc_endpoint.deleted",
        target_type="rpc_endpoint",
        target_id=endpoint_id,
        before=before,
    )
    log.info("rpc_endpoint_deleted", rpc_endpoint_id=endpoint_id, network=before["network"])


@dataclass(frozen=True)
class SetRpcResult:
    endpoint: RpcEndpoint
    action: Literal["added", "updated", "unchanged"]
    changes: dict[str, tuple[Any, Any]]  # field → (before, after), URLs masked


async def set_rpc(
    session: AsyncSession,
    actor: Actor,
    network: str,
    url: str,
    priority: int | None = None,
    *,
    api_key: str | None = None,
    keyring: Keyring | None = None,
) -> SetRpcResult:
    """Add the endpoint, or enable it and set its priority when the network already has it;
    `api_key` (Tron only) is stored encrypted under `keyring`, replacing any earlier one."""
    create = RpcEndpointCreate(
        network=network,
        url=url,
        priority=DEFAULT_RPC_PRIORITY if priority is None else priority,
        api_key=api_key,
    )
    await known_network(session, create.network)
    existing = await repository.rpc_endpoint_by_url(session, create.network, create.url)
    if existing is None:
        endpoint = await create_rpc_endpoint(session, actor, create, keyring)
        return SetRpcResult(endpoint, "added", {})
    before = rpc_snapshot(existing)
    fields: dict[str, Any] = {"enabled": True}
    if priority is not None:
        fields["priority"] = priority
    if api_key is not None:
        fields["api_key"] = api_key
    endpoint = await update_rpc_endpoint(
        session, actor, existing.id, RpcEndpointUpdate(**fields), keyring
    )
    after = rpc_snapshot(endpoint)
    changes = {key: (before[key], after[key]) for key in before if before[key] != after[key]}
    if api_key is not None:
        changes["api_key"] = ("(set)" if existing.api_key_encrypted else "(none)", "(new key)")
    return SetRpcResult(endpoint, "updated" if changes else "unchanged", changes)
