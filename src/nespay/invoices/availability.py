"""Why an invoice cannot offer what it asks for, and how an operator would offer it.

The catalog knows only what is offered (enabled currency on an enabled network of a scanned
chain family), so a refusal it produces says little ("not offered"). This reads the reference
rows whatever their state and names the reason with the command that changes it: "USDT on
polygon is disabled: an operator enables it with `nespay networks enable polygon`". Only
refused requests pay for the query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from nespay.chains.catalog import OFFERED_FAMILIES, Catalog
from nespay.chains.repository import OfferState, offer_states


@dataclass(frozen=True)
class Unavailable:
    """`kind`: which of the request's fields is at fault (its error code follows)."""

    kind: Literal["currency", "network"]
    message: str


def _enable_network(network: str) -> str:
    return f"`nespay networks enable {network}`"


def _enable_currency(network: str, code: str) -> str:
    return f"`nespay currencies enable --network {network} --code {code}`"


def _pair(states: Sequence[OfferState], network: str, code: str) -> Unavailable | None:
    """Why `code` on `network` is not offered."""
    rows = [s for s in states if s.network == network]
    if not rows:
        return Unavailable("network", f"There is no network '{network}'.")
    if rows[0].chain_family not in OFFERED_FAMILIES:
        return Unavailable(
            "network",
            f"{network} is a {rows[0].chain_family} network, which no scanner serves yet: "
            "nothing is offered on it.",
        )
    row = next((s for s in rows if s.currency == code), None)
    if row is None:
        kind: Literal["currency", "network"] = (
            "network" if any(s.currency == code for s in states) else "currency"
        )
        return Unavailable(
            kind,
            f"{code} is not a currency of {network}: an operator adds it with "
            f"`nespay currencies add --network {network} --code {code} --contract … "
            "--decimals …`.",
        )
    commands = []
    if not row.network_enabled:
        commands.append(_enable_network(network))
    if not row.currency_enabled:
        commands.append(_enable_currency(network, code))
    if not commands:
        return None  # just enabled: the catalog has not seen it yet
    kind = "network" if not row.network_enabled else "currency"
    return Unavailable(
        kind,
        f"{code} on {network} is disabled: an operator enables it with {' and '.join(commands)}.",
    )


def _anywhere(states: Sequence[OfferState], codes: Sequence[str], wanted: str) -> Unavailable:
    """Why none of `codes` (what pays `wanted`) is offered on any network."""
    rows = [s for s in states if s.currency in codes]
    if not rows:
        return Unavailable("currency", f"{wanted} is not a currency Nespay knows or a fiat code.")
    if len(rows) == 1:
        found = _pair(rows, rows[0].network, rows[0].currency or "")
        if found is not None:
            return found
    names = ", ".join(dict.fromkeys(s.network for s in rows))
    what = " or ".join(codes)
    return Unavailable(
        "currency",
        f"{what} is not enabled on any network (it exists on {names}): an operator enables "
        f"one with {_enable_network('<network>')} (and, if the currency itself is disabled, "
        f"{_enable_currency('<network>', codes[0])}).",
    )


async def explain(
    session: AsyncSession,
    catalog: Catalog,
    asked: Sequence[tuple[str | None, tuple[str, ...]]],
    wanted: str,
) -> Unavailable | None:
    """The first of the `asked` (network or None for any, the currency codes that would do)
    that the catalog does not offer, and why; None if every one is offered now."""
    networks = [network for network, _ in asked if network is not None]
    codes = sorted({code for _, options in asked for code in options})
    states = await offer_states(session, networks, codes)
    for network, options in asked:
        if network is None:
            if not any(catalog.networks_with(code) for code in options):
                return _anywhere(states, options, wanted)
            continue
        if any(catalog.find(network, code) for code in options):
            continue
        for code in options:
            found = _pair(states, network, code)
            if found is not None:
                return found
    return None
