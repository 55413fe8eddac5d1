"""What the sender's outcomes do to withdrawals and refunds (registered for both purposes;
`nespay.wallets.tasks.HANDLER_MODULES` imports this in the jobs process). Each handler runs
in the sender's transaction that records the outcome, so the withdrawal, its ledger postings
and its event commit with it, once."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from nespay.db import sql
from nespay.ledger import postings
from nespay.wallets import outgoing
from nespay.wallets.outgoing import OutgoingTx
from nespay.withdrawals import service

PURPOSES = ("withdrawal", "refund")


async def _broadcast(session: AsyncSession, tx: OutgoingTx) -> None:
    await service.sent(sql(session), tx.source_id, tx.mined_hash)


async def _confirmed(session: AsyncSession, tx: OutgoingTx) -> None:
    db = sql(session)
    await service.confirmed(db, tx.source_id, tx.mined_hash or "")
    await postings.post_network_fee(db, tx.network_code, tx.id, tx.network_fee_wei)


async def _failed(session: AsyncSession, tx: OutgoingTx) -> None:
    db = sql(session)
    await service.failed(db, tx.source_id, tx.last_error or "the transaction failed on chain")
    # A transaction that reverted was still mined, and its gas was spent.
    await postings.post_network_fee(db, tx.network_code, tx.id, tx.network_fee_wei)


for purpose in PURPOSES:
    outgoing.on_broadcast(purpose, _broadcast)
    outgoing.on_outcome(purpose, confirmed=_confirmed, failed=_failed)
