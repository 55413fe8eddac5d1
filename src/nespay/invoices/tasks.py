"""Jobs of the invoices domain."""

from __future__ import annotations

import structlog

from nespay.invoices import states
from nespay.runtime import Runtime

BATCH = 500
log = structlog.get_logger("nespay.invoices")


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
            break
    async with runtime.db.driver() as db:
        waiting = await states.waiting_for_scanners(db)
    if not waiting:
        return f"{total} invoices expired"
    held = ", ".join(f"{count} on {network}" for network, count in waiting.items())
    log.info("expiry_waits_for_scanners", invoices=waiting)
    return f"{total} invoices expired; due but waiting for their scanner: {held}"
