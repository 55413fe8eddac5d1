"""Jobs of the invoices domain."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import text

from nespay.events.service import emit
from nespay.invoices import repository
from nespay.kit.money import decimal_string
from nespay.runtime import Runtime

BATCH = 500

_EXPIRE = text(
    """
    UPDATE invoices i SET status = 'expired', expired_at = now(), updated_at = now()
    FROM invoices old
    WHERE i.id = ANY(:ids) AND old.id = i.id
    RETURNING i.id, i.merchant_id, old.status AS previous_status, i.paid_ppm, i.overpaid,
        i.paid_late
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
                        "previous_status": row.previous_status,
                        # The share as an exact decimal string (never a float), as the
                        # payment events carry it.
                        "paid_share": decimal_string(Decimal(row.paid_ppm).scaleb(-6)),
                        "flags": {"overpaid": row.overpaid, "paid_late": row.paid_late},
                    },
                )
        total += len(ids)
        if len(ids) < BATCH:
            return f"{total} invoices expired"
