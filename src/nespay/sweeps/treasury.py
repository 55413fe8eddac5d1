"""A network's treasury: the address consolidation sweeps deposit addresses into. Nespay holds
no key of it (a cold wallet, a multisig); it is only ever a destination."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from nespay.audit import service as audit
from nespay.auth.principals import Actor
from nespay.db import sql
from nespay.kit.addresses import AddressInvalid, parse_address


class TreasuryInvalid(ValueError):
    """Why the address cannot be the treasury (said to the operator)."""


async def set_treasury(session: AsyncSession, actor: Actor, network: str, address: str) -> str:
    """Set `network`'s treasury; returns it as stored (EVM lower case, EIP-55 checked when
    mixed case; Tron base58check). Refused: an unknown network, an address malformed or of the
    other chain family, one of Nespay's own deposit addresses or hot wallets (a sweep there
    would never leave the platform's hot keys). A Tron network's treasury can be set ahead of
    its sweeps (consolidation on Tron is not built yet)."""
    db = sql(session)
    rows = await db.fetch(
        "SELECT chain_family, treasury_address FROM networks WHERE code = $1", network
    )
    if not rows:
        raise TreasuryInvalid(f"there is no network {network!r} (nespay networks list)")
    try:
        parsed = parse_address(rows[0]["chain_family"], address)
    except AddressInvalid as error:
        raise TreasuryInvalid(f"the address is not valid: {error}") from None
    own = await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM deposit_addresses WHERE address = $1)"
        " OR EXISTS (SELECT 1 FROM hot_wallets WHERE address = $1)",
        parsed,
    )
    if own:
        raise TreasuryInvalid(
            "that is a deposit address or a hot wallet of Nespay's: the treasury must be an "
            "address whose key Nespay does not hold"
        )
    await db.execute("UPDATE networks SET treasury_address = $2 WHERE code = $1", network, parsed)
    await audit.record(
        session,
        actor,
        "network.treasury_set",
        target_type="network",
        target_id=network,
        detail={"previous": rows[0]["treasury_address"], "address": parsed},
    )
    return parsed
