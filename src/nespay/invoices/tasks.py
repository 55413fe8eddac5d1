"""Jobs of the invoices domain."""

from __future__ import annotations

from sqlalchemy import text

from nespay.events.service import emit
from nespay.invoices import repository
from nespay.runtime import Runtime

BATCH = 500

_EXPIRE = text(
    """
    UPDATE invoices SET status = 'expired', expired_at = now(), updated_at = now()
    WHERE id = ANY(:ids)
    RETURNING id, merchant_id, status, paid_ppm
    """
)


async def expire_invoices(runtime: Runtime) -> str:
    """`invoices.expire`: open invoices past their expiry become `expired`, in batches, each
    with its `invoice.expired` event in the same transaction. Cost follows the invoices due
    (a partial index on open invoices' expiry), not all open ones."""
    total = 0
    while True:
        async with runtime.db.engine.begin() as conn:
            ids = await repository.lock_due_for_expiry(conn, BATCH)
            for row in await conn.execute(_EXPIRE, {"ids": ids}) if ids else []:
                await emit(
                    conn,
                    merchant_id=row.merchant_id,
                    type="invoice.expired",
                    subject_id=row.id,
                    data={
                        "id": row.id,
                        "status": "expired",
                        "paid_share": str(row.paid_ppm / 1_000_000),
                    },
                )
        total += len(ids)
        if len(ids) < BATCH:
            return f"{total} invoices expired"
