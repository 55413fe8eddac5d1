"""`nespay networks …` and `nespay currencies …`: reference data from the command line.

The same service functions as the backoffice routes, audit-logged as `system`/`cli`. RPC URLs
are printed masked (`nespay.kit.urls.mask_url`): they often embed a provider's API key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

if TYPE_CHECKING:
    from pydantic import ValidationError
    from sqlalchemy.ext.asyncio import AsyncSession

networks_app = typer.Typer(no_args_is_help=True, help="Networks and their RPC endpoints.")
currencies_app = typer.Typer(no_args_is_help=True, help="Currencies (tokens and native coins).")

T = TypeVar("T")
NATIVE = "native"
# pydantic field → the option (or argument) a person typed it with
_OPTIONS = {
    "network": "--network",
    "code": "--code",
    "contract": "--contract",
    "decimals": "--decimals",
    "name": "--name",
    "url": "URL",
    "priority": "--priority",
    "dust_threshold": "--dust",
}


def _fail(message: str) -> NoReturn:
    from rich.markup import escape

    from nespay.cli import fail

    fail(escape(message))
    raise AssertionError("unreachable")


def _say(message: str) -> None:
    from nespay.cli import out

    out.print(message, markup=False, highlight=False, soft_wrap=True)


_PATTERNS = {
    "network": "is not a network code (lower-case letters, digits, dashes)",
    "code": "must be letters, digits and dots, e.g. USDT",
}


def _invalid(error: ValidationError) -> NoReturn:
    """One line naming the options; never the values (a URL can carry an API key)."""
    problems = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "input"
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "string_pattern_mismatch":
            message = _PATTERNS.get(field, message)
        problems.append(f"{_OPTIONS.get(field, field)} {message}")
    _fail("invalid " + "; ".join(problems))


def quiet_logs() -> None:
    """Outside a configured process, log lines would only repeat what the command prints (and
    the audit log keeps): show warnings and errors only."""
    import logging

    import structlog

    if not structlog.is_configured():
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def _with_session(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one committed transaction; domain errors become one line, exit 1."""
    from nespay.cli import run_async, settings_or_exit
    from nespay.db import Database, ensure_schema_current
    from nespay.errors import NespayError

    settings = settings_or_exit()
    quiet_logs()

    async def run() -> T:
        db = Database(settings)
        try:
            await ensure_schema_current(db)
            async with db.session() as session:
                return await work(session)
        finally:
            await db.dispose()

    try:
        return run_async(run)
    except NespayError as error:
        _fail(_cli_message(error))


def _cli_message(error: Any) -> str:
    from nespay.chains.service import UnknownNetwork

    if isinstance(error, UnknownNetwork):
        return f"unknown network '{error.network}'; `nespay networks list` shows them"
    message = str(error.message).replace("leave the contract out (null)", "use --contract native")
    return message[:1].lower() + message[1:]


def _actor() -> Any:
    from nespay.auth.principals import Actor

    return Actor("system", "cli")


# --- networks ----------------------------------------------------------------------------------


@networks_app.command("list")
def networks_list() -> None:
    """Every network: family, chain id, state, confirmations, RPC endpoints enabled/total."""
    from nespay.chains import service

    rows = _with_session(service.network_overview)
    if not rows:
        _say("no networks: load them with `nespay db seed`")
        return
    for row in rows:
        network = row.network
        flags = "enabled " if network.enabled else "disabled"
        kind = "testnet" if network.is_testnet else "mainnet"
        _say(
            f"{network.code:<20} {network.chain_family:<5} {network.chain_id or '-'!s:<12} "
            f"{flags} {kind}  {network.confirmations:>4} confirmations  "
            f"rpc {row.endpoints_enabled}/{row.endpoints_total} enabled"
        )


def _read_api_key() -> str:
    """An API key from standard input (never echoed, never an argument: it would stay in
    shell history and `ps`)."""
    import getpass
    import sys

    if sys.stdin.isatty():
        return getpass.getpass("API key (not echoed): ").strip()
    return sys.stdin.readline().strip()


@networks_app.command("set-rpc")
def networks_set_rpc(
    code: Annotated[str, typer.Argument(help="The network's code, e.g. polygon")],
    url: Annotated[str, typer.Argument(help="http(s):// or ws(s)://; may embed an API key")],
    priority: Annotated[
        int | None, typer.Option(help="Lower is tried first (default 100 when adding)")
    ] = None,
    api_key_stdin: Annotated[
        bool,
        typer.Option(
            "--api-key-stdin",
            help="Read the endpoint's API key (Tron: TRON-PRO-API-KEY) from standard input: "
            "a hidden prompt at a terminal, one line from a pipe; never an argument",
        ),
    ] = False,
) -> None:
    """Add an RPC endpoint to a network, or enable it (and set its priority) if it is there."""
    from pydantic import ValidationError

    from nespay.chains import service
    from nespay.chains.schemas import RpcEndpointCreate
    from nespay.kit.urls import mask_url
    from nespay.security.encryption import keyring_from_settings

    api_key = _read_api_key() if api_key_stdin else None
    try:
        body = RpcEndpointCreate(
            network=code,
            url=url,
            priority=service.DEFAULT_RPC_PRIORITY if priority is None else priority,
            api_key=api_key,
        )
    except ValidationError as error:
        _invalid(error)

    async def work(session: AsyncSession) -> service.SetRpcResult:
        from nespay.cli import settings_or_exit

        keyring = keyring_from_settings(settings_or_exit()) if api_key is not None else None
        return await service.set_rpc(
            session, _actor(), body.network, body.url, priority, api_key=api_key, keyring=keyring
        )

    result = _with_session(work)
    endpoint = result.endpoint
    where = f"{mask_url(endpoint.url)} on {endpoint.network_code} ({endpoint.id})"
    if result.action == "added":
        state = "enabled" if endpoint.enabled else "disabled"
        _say(f"added RPC endpoint {where}: priority {endpoint.priority}, {state}")
    elif result.action == "updated":
        changes = ", ".join(
            f"{field} {before} → {after}" for field, (before, after) in result.changes.items()
        )
        _say(f"updated RPC endpoint {where}: {changes}")
    else:
        _say(
            f"RPC endpoint {where} is already enabled with priority {endpoint.priority}: "
            "nothing to change"
        )


def _set_enabled(code: str, enabled: bool) -> None:
    from nespay.chains import service
    from nespay.chains.schemas import NetworkUpdate
    from nespay.cli import settings_or_exit

    async def work(session: AsyncSession) -> tuple[bool, int, Any]:
        network = await service.known_network(session, code)
        was = network.enabled
        if was != enabled:
            network = await service.update_network(
                session,
                _actor(),
                code,
                NetworkUpdate(enabled=enabled),
                watch_window_s=settings_or_exit().scanner_watch_after_expiry_s,
            )
        counts = await service.network_overview(session)
        enabled_endpoints = next(
            (row.endpoints_enabled for row in counts if row.network.code == code), 0
        )
        return was, enabled_endpoints, network.watch_until

    was, endpoints, watch_until = _with_session(work)
    state = "enabled" if enabled else "disabled"
    if was == enabled:
        _say(f"{code} is already {state}: nothing to change")
        return
    if enabled:
        _say(f"{code} enabled; scanners pick it up at their next loop")
    elif watch_until is not None:
        _say(
            f"{code} disabled: no new invoice offers it; its scanner goes on until "
            f"{watch_until:%Y-%m-%d %H:%M} UTC (chain time) for the invoices already issued"
        )
    else:
        _say(f"{code} disabled; no invoice is open on it, its scanner stops at its next loop")
    if enabled and endpoints == 0:
        _say(
            f"note: {code} has no enabled RPC endpoint yet; add one with `nespay networks set-rpc`"
        )


@networks_app.command("enable")
def networks_enable(code: Annotated[str, typer.Argument(help="The network's code")]) -> None:
    """Accept payments on a network (merchants see it; its scanner runs)."""
    _set_enabled(code, True)


@networks_app.command("disable")
def networks_disable(code: Annotated[str, typer.Argument(help="The network's code")]) -> None:
    """Stop offering a network; it is still scanned for the invoices already issued on it
    (until their expiry plus SCANNER_WATCH_AFTER_EXPIRY_S); rows, endpoints and scan cursor
    are kept."""
    _set_enabled(code, False)


@networks_app.command("set-treasury")
def networks_set_treasury(
    code: Annotated[str, typer.Argument(help="The network's code")],
    address: Annotated[str, typer.Argument(help="The treasury's address (0x…)")],
) -> None:
    """Set where consolidation sweeps the network's deposit addresses: an address whose key
    Nespay does not hold (a cold wallet, a multisig). Withdrawals to it are refused."""
    from nespay.kit.addresses import display_stored
    from nespay.sweeps.treasury import TreasuryInvalid, set_treasury

    async def work(session: AsyncSession) -> str:
        return await set_treasury(session, _actor(), code, address)

    try:
        stored = _with_session(work)
    except TreasuryInvalid as error:
        _fail(str(error))
    _say(f"{code}: treasury {display_stored(stored)}")


@networks_app.command("reset-cursor")
def networks_reset_cursor(
    code: Annotated[str, typer.Argument(help="The network's code")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask first")] = False,
) -> None:
    """Forget where a network's scanner is and which chain it reads: for a chain replaced on
    purpose (a new local node). The next scan starts an hour behind the new chain's head and
    records its block 0; payments already recorded stay as they are."""
    from nespay.chains import service

    if not yes and not typer.confirm(
        f"Forget {code}'s scan cursor and chain? Blocks of the old chain are not read again."
    ):
        _fail("nothing changed")

    async def work(session: AsyncSession) -> bool:
        return await service.reset_cursor(session, _actor(), code)

    if _with_session(work):
        _say(f"{code}: cursor forgotten; its scanner starts afresh on the chain it finds")
    else:
        _say(f"{code} has no cursor yet: nothing to change")


# --- currencies --------------------------------------------------------------------------------


@currencies_app.command("add")
def currencies_add(
    network: Annotated[str, typer.Option(help="The network's code, e.g. polygon")],
    code: Annotated[str, typer.Option(help="e.g. USDT")],
    decimals: Annotated[int, typer.Option(help="0–36, e.g. 6 for USDT on most chains")],
    contract: Annotated[
        str | None,
        typer.Option(help="Token contract address, or `native` (the default) for the coin"),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Defaults to the code")] = None,
    dust: Annotated[
        str,
        typer.Option(help="Whole units: smaller transfers are not payments, e.g. 0.01"),
    ] = "0",
) -> None:
    """Add a token (with its contract) or the network's native coin to a network."""
    from pydantic import ValidationError

    from nespay.chains import service
    from nespay.chains.schemas import CurrencyCreate

    if contract is not None and contract.strip().lower() == NATIVE:
        contract = None
    try:
        body = CurrencyCreate(
            network=network,
            code=code,
            contract=contract,
            decimals=decimals,
            name=name,
            dust_threshold=dust,
        )
    except ValidationError as error:
        _invalid(error)

    async def work(session: AsyncSession) -> Any:
        return await service.create_currency(session, _actor(), body)

    currency = _with_session(work)
    what = f"contract {currency.contract}" if currency.contract else "native coin"
    _say(
        f"added {currency.code} on {currency.network_code} ({currency.id}): {what}, "
        f"{currency.decimals} decimals, {'enabled' if currency.enabled else 'disabled'}"
    )


def _set_currency_enabled(network: str, code: str, enabled: bool) -> None:
    from nespay.chains import service
    from nespay.chains.schemas import CurrencyUpdate
    from nespay.cli import settings_or_exit

    code = code.strip().upper()

    async def work(session: AsyncSession) -> tuple[bool, Any, bool]:
        found = await service.list_currencies(session, network=network)
        currency = next((c for c in found if c.code.upper() == code), None)
        if currency is None:
            raise service.CurrencyNotFound(
                f"{network} has no currency {code}; `nespay currencies list --network {network}` "
                "shows them"
            )
        was = currency.enabled
        if was != enabled:
            currency = await service.update_currency(
                session,
                _actor(),
                currency.id,
                CurrencyUpdate(enabled=enabled),
                watch_window_s=settings_or_exit().scanner_watch_after_expiry_s,
            )
        network_enabled = (await service.known_network(session, network)).enabled
        return was, currency, network_enabled

    was, currency, network_enabled = _with_session(work)
    state = "enabled" if enabled else "disabled"
    if was == enabled:
        _say(f"{code} on {network} is already {state}: nothing to change")
    elif enabled:
        _say(f"{code} on {network} enabled: new invoices offer it")
    elif currency.watch_until is not None:
        _say(
            f"{code} on {network} disabled: no new invoice offers it; it is still scanned until "
            f"{currency.watch_until:%Y-%m-%d %H:%M} UTC (chain time) for the invoices already "
            "issued"
        )
    else:
        _say(f"{code} on {network} disabled: no new invoice offers it")
    if enabled and not network_enabled:
        _say(f"note: {network} itself is disabled; `nespay networks enable {network}` offers it")


@currencies_app.command("enable")
def currencies_enable(
    network: Annotated[str, typer.Option(help="The network's code, e.g. polygon")],
    code: Annotated[str, typer.Option(help="e.g. USDT")],
) -> None:
    """Offer a currency on new invoices again (on an enabled network)."""
    _set_currency_enabled(network, code, True)


@currencies_app.command("disable")
def currencies_disable(
    network: Annotated[str, typer.Option(help="The network's code, e.g. polygon")],
    code: Annotated[str, typer.Option(help="e.g. USDT")],
) -> None:
    """Stop offering a currency; it is still scanned for the invoices already issued in it."""
    _set_currency_enabled(network, code, False)


@currencies_app.command("list")
def currencies_list(
    network: Annotated[str | None, typer.Option(help="Only this network's")] = None,
) -> None:
    """Currencies by network: code, contract (or native), decimals, state, id."""
    from nespay.chains import service

    async def work(session: AsyncSession) -> Any:
        return await service.list_currencies(session, network=network)

    rows = _with_session(work)
    if not rows:
        _say("no currencies" + (f" on {network}" if network else ""))
        return
    for currency in rows:
        state = "enabled " if currency.enabled else "disabled"
        _say(
            f"{currency.network_code:<20} {currency.code:<8} {currency.contract or NATIVE:<44} "
            f"{currency.decimals:>2} decimals  {state} {currency.id}"
        )
