"""Funds an operator puts into a hot wallet from outside (gas money, float for withdrawals):
recorded so the ledger knows what the wallet holds — debit `p:hot_wallet` (an asset), credit
`p:capital`, posted, with
an audit entry. Until it is recorded, reconciliation reports the top-up as a difference."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from nespay.audit import service as audit
from nespay.auth.principals import Actor
from nespay.db import sql
from nespay.kit.ids import new_id
from nespay.kit.money import check_amount_text, parse_amount, to_base_units
from nespay.ledger import accounts
from nespay.ledger.service import Transfer, record
from nespay.withdrawals import repository as withdrawals_repository


async def record_funding(
    session: AsyncSession, actor: Actor, *, network: str, currency: str, amount: str, reason: str
) -> int:
    """Record `amount` (whole units) of `currency` on `network` sent into its hot wallets;
    returns the base units. Raises ValueError saying what is wrong."""
    db = sql(session)
    found = await withdrawals_repository.currency(db, network, currency.upper())
    if found is None:
        raise ValueError(f"there is no {currency} on network {network!r}")
    check_amount_text(amount)
    units = to_base_units(parse_amount(amount), found["decimals"])
    key = f"funding/{new_id('fund')}"
    await record(
        db,
        [
            Transfer(
                key,
                "funding",
                accounts.platform("hot_wallet", found["id"]),
                accounts.platform("capital", found["id"]),
                units,
                source_type="funding",
                source_id=key.split("/")[1],
            )
        ],
    )
    await audit.record(
        session,
        actor,
        "hot_wallet.funding_recorded",
        target_type="ledger_transfer",
        target_id=key,
        detail={"network": network, "currency": found["code"], "amount": amount, "reason": reason},
    )
    return units
