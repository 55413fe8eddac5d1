"""Jobs of the invoices domain."""

from __future__ import annotations

from nespay.invoices import states
from nespay.runtime import Runtime

BATCH = 500


async def expire_invoices(runtime: Runtime) -> str:
    """`invoices.expire`: open invoices past their expiry become `expired`, in batches, each
    with its `invoice.expired` event in the same transaction — but only once the scanners of
    their networks have read the chain up to the expiry, so a payment mined in time is never
    reported after an expiry. Cost follows the invoices due (a partial index on open invoices'
    expiry), not all open ones."""
    total = 0
    while True:
        async with runtime.db.driver() as db, db.transaction():
            count = await states.expire_due(db, BATCH)
        total += count
        if count < BATCH:
            return f"{total} invoices expired"
