"""The public face of money out: queue a transfer for a purpose, and be told — in the
transaction that records it — how it ended.

    from nespay.wallets import outgoing

    tx_id = await outgoing.enqueue(
        session, purpose="withdrawal", source_id=withdrawal.id, network="base",
        role="payouts", to_address="0x…", token_contract="0x…" or None, amount=1_000_000,
    )
    outgoing.on_outcome("withdrawal", confirmed=post_hold, failed=void_hold)
    outgoing.on_broadcast("withdrawal", mark_broadcast)   # optional; also on_mined

`enqueue` runs in the caller's transaction (it flushes, never commits) and is idempotent on
(purpose, source_id). Handlers are `async def handler(session, tx: OutgoingTx)`, called by
the `wallets.send` job inside the transaction that changes the transaction's status: what they
write commits with that status change or not at all. Register them at import time of the
domain that owns the purpose (the jobs process imports it: see `nespay.wallets.tasks`).
The sender knows purposes, never what a withdrawal or a sweep is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nespay.errors import Conflict, NespayError
from nespay.kit.addresses import tron_payload
from nespay.kit.ids import new_id
from nespay.wallets.evmtx import UINT256_MAX, require_address
from nespay.wallets.hotkeys import active_wallet
from nespay.wallets.trontx import MAX_INT64

SENDING_FAMILIES = ("evm", "tron")  # the chain families the sender can send on


@dataclass(frozen=True)
class OutgoingTx:
    """An outgoing transaction as handlers see it (amounts in base units, fees in wei; on
    Tron `nonce` is None, `gas_used` the energy and `fee_paid` the sun burnt)."""

    id: str
    purpose: str
    source_id: str
    network_code: str
    from_address: str
    to_address: str
    token_contract: str | None
    amount: int
    status: str
    nonce: int | None
    mined_hash: str | None
    mined_block_number: int | None
    receipt_status: int | None
    gas_used: int | None
    effective_gas_price: int | None
    confirmations: int
    last_error: str | None
    fee_paid: int | None = None

    @property
    def network_fee_wei(self) -> int | None:
        """The network fee paid in the native coin's base units, once mined (EVM: gas used
        × price; Tron: the receipt's fee)."""
        if self.fee_paid is not None:
            return self.fee_paid
        if self.gas_used is None or self.effective_gas_price is None:
            return None
        return self.gas_used * self.effective_gas_price


Handler = Callable[[AsyncSession, OutgoingTx], Awaitable[None]]


@dataclass
class _Handlers:
    confirmed: Handler | None = None
    failed: Handler | None = None
    mined: Handler | None = None
    broadcast: Handler | None = None


_REGISTRY: dict[str, _Handlers] = {}


def on_outcome(purpose: str, *, confirmed: Handler, failed: Handler) -> None:
    """Handlers for a purpose's final outcomes (replacing earlier ones)."""
    handlers = _REGISTRY.setdefault(purpose, _Handlers())
    handlers.confirmed, handlers.failed = confirmed, failed


def on_mined(purpose: str, handler: Handler) -> None:
    """Called when a candidate is first seen mined (not final: a reorg may undo it)."""
    _REGISTRY.setdefault(purpose, _Handlers()).mined = handler


def on_broadcast(purpose: str, handler: Handler) -> None:
    """Called once, when the transaction is first broadcast."""
    _REGISTRY.setdefault(purpose, _Handlers()).broadcast = handler


async def notify(kind: str, session: AsyncSession, tx: OutgoingTx) -> None:
    """Run the purpose's `kind` handler (confirmed|failed|mined|broadcast), if any."""
    handlers = _REGISTRY.get(tx.purpose)
    handler = getattr(handlers, kind) if handlers is not None else None
    if handler is not None:
        await handler(session, tx)


class InvalidOutgoing(NespayError):
    status_code = 422
    code = "outgoing_transaction_invalid"
    message = "The outgoing transaction is not valid."


class OutgoingConflict(Conflict):
    code = "outgoing_transaction_conflict"
    message = "Another transfer was already queued for this purpose and source."


_INSERT = text(
    """
    INSERT INTO outgoing_transactions (id, purpose, source_id, network_code, hot_wallet_id,
        deposit_address_id, from_address, to_address, token_contract, amount)
    VALUES (:id, :purpose, :source_id, :network, :wallet, :deposit, :sender, :to, :token,
        :amount)
    ON CONFLICT (purpose, source_id) DO NOTHING
    RETURNING id
    """
)
_EXISTING = text(
    """
    SELECT id, network_code, to_address, token_contract, amount FROM outgoing_transactions
    WHERE purpose = :purpose AND source_id = :source_id
    """
)
COLUMNS = (
    "id, purpose, source_id, network_code, from_address, to_address, token_contract, amount, "
    "status, nonce, mined_hash, mined_block_number, receipt_status, gas_used, "
    "effective_gas_price, confirmations, last_error, fee_paid"
)
_GET = text(f"SELECT {COLUMNS} FROM outgoing_transactions WHERE id = :id")  # noqa: S608


_FAMILY = text("SELECT chain_family FROM networks WHERE code = :network")


async def _family(db: AsyncSession, network: str) -> str:
    family = (await db.execute(_FAMILY, {"network": network})).scalar_one_or_none()
    if family not in SENDING_FAMILIES:
        raise InvalidOutgoing(f"Nothing can be sent on network {network!r}.")
    return family


def _address(family: str, value: str) -> str:
    """An address in its stored form (EVM lower case, Tron base58), or ValueError."""
    if family == "tron":
        tron_payload(value)
        return value
    return require_address(value)


def _validated(
    family: str, purpose: str, source_id: str, to_address: str, token: str | None, amount: int
):
    if not purpose or len(purpose) > 40 or not source_id or len(source_id) > 100:
        raise InvalidOutgoing("purpose (≤ 40 characters) and source_id (≤ 100) are required.")
    top = MAX_INT64 if family == "tron" and token is None else UINT256_MAX
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= top:
        raise InvalidOutgoing("amount must be a positive integer in base units.")
    try:
        return _address(family, to_address), (None if token is None else _address(family, token))
    except ValueError:
        raise InvalidOutgoing(
            "to_address and token_contract must be addresses of the network's chain family."
        ) from None


async def enqueue(
    db: AsyncSession,
    *,
    purpose: str,
    source_id: str,
    network: str,
    role: str = "payouts",
    to_address: str,
    token_contract: str | None = None,
    amount: int,
) -> str:
    """Queue a transfer of `amount` base units (wei for the native coin, `token_contract`
    None) from the network's active `role` hot wallet; returns its id (`otx_…`). The same
    (purpose, source_id) again returns the same id; with other details it is a conflict."""
    family = await _family(db, network)
    to, token = _validated(family, purpose, source_id, to_address, token_contract, amount)
    wallet = await active_wallet(db, network, role)
    return await _insert(
        db, purpose, source_id, network, wallet.id, None, wallet.address, to, token, amount
    )


async def enqueue_from_deposit(
    db: AsyncSession,
    *,
    purpose: str,
    source_id: str,
    network: str,
    deposit_address_id: str,
    from_address: str,
    to_address: str,
    token_contract: str | None = None,
    amount: int,
) -> str:
    """The same, sent by a deposit address itself (a sweep): the jobs process signs with the
    key derived from the account xprv (nespay.wallets.hdkeys), or Privy for a Privy address.
    Its nonce sequence is the deposit address's own."""
    family = await _family(db, network)
    to, token = _validated(family, purpose, source_id, to_address, token_contract, amount)
    try:
        sender = _address(family, from_address)
    except ValueError:
        raise InvalidOutgoing("from_address is not an address of the network's family.") from None
    return await _insert(
        db, purpose, source_id, network, None, deposit_address_id, sender, to, token, amount
    )


async def _insert(
    db: AsyncSession,
    purpose: str,
    source_id: str,
    network: str,
    wallet_id: str | None,
    deposit_id: str | None,
    sender: str,
    to: str,
    token: str | None,
    amount: int,
) -> str:
    params = {
        "id": new_id("otx"),
        "purpose": purpose,
        "source_id": source_id,
        "network": network,
        "wallet": wallet_id,
        "deposit": deposit_id,
        "sender": sender,
        "to": to,
        "token": token,
        "amount": amount,
    }
    inserted = (await db.execute(_INSERT, params)).scalar_one_or_none()
    if inserted is not None:
        return inserted
    row = (await db.execute(_EXISTING, params)).one()
    if (row.network_code, row.to_address, row.token_contract, int(row.amount)) != (
        network,
        to,
        token,
        amount,
    ):
        raise OutgoingConflict()
    return row.id


async def get(db: AsyncSession, tx_id: str) -> OutgoingTx | None:
    row = (await db.execute(_GET, {"id": tx_id})).one_or_none()
    return None if row is None else from_row(row._mapping)


def from_row(row: Any) -> OutgoingTx:
    def number(name: str) -> int | None:
        value = row[name]
        return None if value is None else int(value)

    return OutgoingTx(
        id=row["id"],
        purpose=row["purpose"],
        source_id=row["source_id"],
        network_code=row["network_code"],
        from_address=row["from_address"],
        to_address=row["to_address"],
        token_contract=row["token_contract"],
        amount=int(row["amount"]),
        status=row["status"],
        nonce=number("nonce"),
        mined_hash=row["mined_hash"],
        mined_block_number=number("mined_block_number"),
        receipt_status=number("receipt_status"),
        gas_used=number("gas_used"),
        effective_gas_price=number("effective_gas_price"),
        confirmations=int(row["confirmations"]),
        last_error=row["last_error"],
        fee_paid=number("fee_paid"),
    )
