"""What payments do to the ledger, inside the scanner's transaction (`payments.apply_batch`):

- seen, still confirming → a pending transfer custody → merchant (shown as pending, not
  spendable);
- confirmed → that transfer posted, and the fee (merchant's `fee_bps`, else the platform's
  `PLATFORM_FEE_BPS`, rounded down: never more than the rate) posted merchant → fees; a
  payment first read already deep is posted at once, with its fee;
- orphaned by a reorg → a pending one voided; a posted one reversed (its fee returned first,
  then the payment taken back, which may leave a recorded deficit).

Keys are `{payment}/{generation}/{step}`: a payment counted again after a reorg (its
`ledger_generation` one higher) is credited afresh, and replaying a batch changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nespay.db import Sql
from nespay.ledger import accounts, repository
from nespay.ledger.service import Transfer, record

BPS = 10_000


def fee_of(amount: int, bps: int) -> int:
    return amount * bps // BPS


def _key(row: Any, step: str) -> str:
    return f"{row['id']}/{row['ledger_generation']}/{step}"


def _parties(row: Any) -> tuple[accounts.Account, accounts.Account]:
    currency = row["currency_id"]
    return accounts.platform("custody", currency), accounts.merchant(row["merchant_id"], currency)


def _common(row: Any) -> dict[str, Any]:
    return {"merchant_id": row["merchant_id"], "source_type": "payment", "source_id": row["id"]}


def _fee(row: Any, bps: int) -> list[Transfer]:
    fee = fee_of(int(row["amount"]), bps)
    if fee == 0:
        return []
    _, merchant = _parties(row)
    fees = accounts.platform("fees", row["currency_id"])
    return [
        Transfer(_key(row, "fee"), "payment_fee", merchant, fees, fee, netted=True, **_common(row))
    ]


async def post_payments(
    db: Sql,
    *,
    orphaned: Sequence[Any],
    recorded: Sequence[Any],
    newly_confirmed: Sequence[Any],
    default_fee_bps: int,
) -> None:
    """The ledger side of one scanned batch (rows as `nespay.payments.repository` returns
    them: id, merchant_id, currency_id, amount, status, ledger_generation; orphaned ones also
    `previous_status`)."""
    transfers: list[Transfer] = []
    posted_orphans = [row for row in orphaned if row["previous_status"] == "confirmed"]
    fees_charged = await _fees_charged(db, posted_orphans)
    for row in orphaned:
        custody, merchant = _parties(row)
        if row["previous_status"] != "confirmed":
            transfers.append(
                Transfer(
                    _key(row, "void"),
                    "payment",
                    custody,
                    merchant,
                    None,
                    type="void",
                    pending_key=_key(row, "credit"),
                    **_common(row),
                )
            )
            continue
        fee = fees_charged.get(_key(row, "fee"), 0)
        fees = accounts.platform("fees", row["currency_id"])
        if fee:
            transfers.append(
                Transfer(
                    _key(row, "fee_reversal"),
                    "payment_fee_reversal",
                    fees,
                    merchant,
                    fee,
                    **_common(row),
                )
            )
        transfers.append(
            Transfer(
                _key(row, "reversal"),
                "payment_reversal",
                merchant,
                custody,
                int(row["amount"]),
                may_overdraw=True,
                **_common(row),
            )
        )
    confirming = [row for row in recorded if row["status"] == "confirmed"] + list(newly_confirmed)
    rates = await _fee_rates(db, confirming, default_fee_bps)
    for row in recorded:
        custody, merchant = _parties(row)
        deep = row["status"] == "confirmed"
        transfers.append(
            Transfer(
                _key(row, "credit"),
                "payment",
                custody,
                merchant,
                int(row["amount"]),
                type="posted" if deep else "pending",
                **_common(row),
            )
        )
        if deep:
            transfers += _fee(row, rates[row["merchant_id"]])
    for row in newly_confirmed:
        custody, merchant = _parties(row)
        transfers.append(
            Transfer(
                _key(row, "post"),
                "payment",
                custody,
                merchant,
                None,
                type="post",
                pending_key=_key(row, "credit"),
                **_common(row),
            )
        )
        transfers += _fee(row, rates[row["merchant_id"]])
    await record(db, transfers)


async def _fee_rates(db: Sql, rows: Sequence[Any], default: int) -> dict[str, int]:
    merchants = sorted({row["merchant_id"] for row in rows})
    if not merchants:
        return {}
    return await repository.fee_rates(db, merchants, default)


async def _fees_charged(db: Sql, rows: Sequence[Any]) -> dict[str, int]:
    if not rows:
        return {}
    return await repository.amounts(db, [_key(row, "fee") for row in rows])


async def post_network_fee(
    db: Sql, network: str, tx_id: str, wei: int | None, *, paid_by: str = "hot_wallet"
) -> None:
    """Gas a mined transaction of ours paid, in the network's native coin: the platform's
    network fees, out of the account of the address that paid it — the hot wallet, or
    `custody` for a sweep sent by a deposit address (`{tx}/gas`, once)."""
    if not wei:
        return
    native = await repository.native_currency(db, network)
    if native is None:
        return
    await record(
        db,
        [
            Transfer(
                f"{tx_id}/gas",
                "network_fee",
                accounts.platform("network_fees", native),
                accounts.platform(paid_by, native),
                wei,
                source_type="outgoing_tx",
                source_id=tx_id,
            )
        ],
    )


async def post_sweep_topup(db: Sql, sweep_id: str, native_currency_id: str, wei: int) -> None:
    """A sweep's gas top-up arrived at its deposit address: hot wallet → custody
    (`{sweep}/topup`)."""
    await _sweep_move(
        db,
        sweep_id,
        "topup",
        "sweep_gas",
        native_currency_id,
        wei,
        debit="custody",
        credit="hot_wallet",
    )


async def post_sweep(db: Sql, sweep_id: str, currency_id: str, amount: int) -> None:
    """A sweep confirmed: custody → treasury (`{sweep}/swept`). Merchants' accounts are never
    touched, so a stuck or failed sweep changes no balance a merchant sees."""
    await _sweep_move(
        db, sweep_id, "swept", "sweep", currency_id, amount, debit="treasury", credit="custody"
    )


async def _sweep_move(
    db: Sql,
    sweep_id: str,
    step: str,
    code: str,
    currency_id: str,
    amount: int,
    *,
    debit: str,
    credit: str,
) -> None:
    await record(
        db,
        [
            Transfer(
                f"{sweep_id}/{step}",
                code,
                accounts.platform(debit, currency_id),
                accounts.platform(credit, currency_id),
                amount,
                source_type="sweep",
                source_id=sweep_id,
            )
        ],
    )
