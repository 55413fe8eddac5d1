"""Recording transfers: `record(db, transfers)` in the caller's transaction.

The rules (TigerBeetle's, kept in PostgreSQL):

- A transfer debits one account and credits another of the same currency; it is never changed.
- Its `key` is its idempotency key: recording the same key again returns the first transfer
  and changes nothing; the same key for a different transfer is refused (`TransferKeyReused`).
- `pending` holds the amount (debits_pending / credits_pending); `post` moves all or part of
  it to posted (the rest returns), `void` returns all of it; a pending transfer is resolved at
  most once (a unique index, not a check in Python).
- A limited account (a merchant's available balance) is never debited beyond its posted
  credits — checked and changed in one conditional UPDATE of its row. Only a reversal the
  chain forced (a confirmed payment reorged away) may take it below: that is a deficit, which
  blocks spending until credits cover it, and is flagged on the transfer (`overdrew`).
- Accounts are created on first use and locked in id order; there is no global lock.

Callers never commit here; a refused batch raises, and the caller's transaction (which rolls
back) keeps nothing of it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from nespay.db import Sql
from nespay.errors import Conflict, NespayError
from nespay.kit.ids import new_id
from nespay.ledger import repository
from nespay.ledger.accounts import Account

log = structlog.get_logger("nespay.ledger")


class InsufficientBalance(NespayError):
    """A limited account would go below its posted credits. Raised by `record` with the
    accounts short; a domain re-raises it with a message naming the balance (the API's 422)."""

    status_code = 422
    code = "insufficient_balance"
    message = "The balance available does not cover this amount."

    def __init__(self, message: str | None = None, *, account_ids: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.account_ids = list(account_ids)


class InvalidAmount(NespayError):
    status_code = 422
    code = "invalid_amount"


class TransferKeyReused(Conflict):
    code = "ledger_key_reused"
    message = "This ledger transfer key was already used for a different transfer."


class PendingTransferNotResolvable(Conflict):
    code = "pending_transfer_not_resolvable"
    message = "The held amount was already released or settled, or does not exist."


@dataclass(frozen=True, slots=True)
class Transfer:
    """One transfer to record. For `post`/`void`, `pending_key` names the pending transfer
    and `debit`/`credit` must be its accounts; `amount` of a post may be less than it held
    (None: all of it)."""

    key: str
    code: str
    debit: Account
    credit: Account
    amount: int | None
    type: str = "posted"
    pending_key: str | None = None
    merchant_id: str | None = None
    source_type: str | None = None
    source_id: str | None = None
    # Only a reversal the chain forced may take a limited account below zero.
    may_overdraw: bool = False
    # A charge taken from a credit of the same batch (a payment's fee): refused only if the
    # batch, forced reversals aside, lowers the balance. A merchant in deficit still has its
    # payments confirmed (and the scanner's batch recorded) when the credit does not cover
    # the whole deficit.
    netted: bool = False

    def __post_init__(self) -> None:
        if self.type not in ("posted", "pending", "post", "void"):
            raise ValueError(f"unknown transfer type {self.type!r}")
        if self.debit.currency_id != self.credit.currency_id:
            raise ValueError("a transfer's two accounts must hold the same currency")
        if self.debit.id == self.credit.id:
            raise ValueError("a transfer moves between two different accounts")
        resolving = self.type in ("post", "void")
        if resolving != (self.pending_key is not None):
            raise ValueError("post and void (and only they) name a pending transfer")
        if not resolving and (self.amount is None or self.amount <= 0):
            raise ValueError("a transfer's amount is a positive integer of base units")
        if self.amount is not None and self.amount < 0:
            raise ValueError("a transfer's amount is never negative")
        if self.may_overdraw and self.type != "posted":
            raise ValueError("only a posted transfer (a forced reversal) may overdraw")


@dataclass(frozen=True, slots=True)
class Recorded:
    id: str
    key: str
    created: bool  # False: the key was recorded before (a retry), nothing changed


@dataclass
class _Delta:
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0
    covered: bool = False  # must stay covered after this change
    netted: bool = False  # holds a netted charge: must not lower the balance, else be covered
    forced: int = 0  # debited by forced reversals

    def must_cover(self) -> bool:
        unforced = self.credits_posted - self.debits_posted - self.debits_pending + self.forced
        return self.covered or (self.netted and unforced < 0)


@dataclass
class _Batch:
    accounts: dict[str, Account] = field(default_factory=dict)
    deltas: dict[str, _Delta] = field(default_factory=lambda: defaultdict(_Delta))


async def record(db: Sql, transfers: Sequence[Transfer]) -> list[Recorded]:
    """Record `transfers` (in order: a batch may hold a pending transfer and its post) and
    change their accounts; returns one `Recorded` per transfer. Raises `InsufficientBalance`,
    `TransferKeyReused` or `PendingTransferNotResolvable`, having changed nothing that the
    caller's rollback does not undo."""
    if not transfers:
        return []
    if len({t.key for t in transfers}) != len(transfers):
        raise ValueError("a batch names each transfer key once")
    batch = _Batch()
    for t in transfers:
        batch.accounts[t.debit.id] = t.debit
        batch.accounts[t.credit.id] = t.credit
    ids_in_order = sorted(batch.accounts)
    await _ensure(db, batch.accounts)
    try:
        # The accounts' rows are locked as late as possible (they are the hot rows: a platform
        # account takes every merchant's transfers), just before their UPDATE — unless a forced
        # reversal needs their counters first, to flag whether it overdraws.
        forced = [t for t in transfers if t.may_overdraw]
        counters = await _lock(db, ids_in_order) if forced else {}

        # One time-ordered base per batch, then the transfer's place in it: a batch lists in
        # the order it was recorded (ids alone would order one millisecond's transfers at
        # random).
        base = new_id("btx")
        ids = {t.key: f"{base}{n:05d}" for n, t in enumerate(transfers)}
        # Forced reversals go in last: whether one overdrew is judged on the account as the
        # whole batch leaves it, resolutions included (a payment confirmed in the same scanner
        # batch may cover the reversal: no deficit then). They are posted transfers, so nothing
        # in the batch resolves them.
        fresh = [t for t in transfers if t.type in ("posted", "pending") and not t.may_overdraw]
        resolving = [t for t in transfers if t.type in ("post", "void")]
        created: dict[str, str] = {}
        if fresh:
            await _insert(db, batch, fresh, ids, created, set())
        if resolving:
            by_key = {t.key: t for t in resolving}
            rows = await repository.resolve(db, [_resolution(ids[t.key], t) for t in resolving])
            for row in rows:
                created[row["key"]] = row["id"]
                _add_resolution(
                    batch, by_key[row["key"]], int(row["amount"]), int(row["pending_amount"])
                )
        overdrawing: set[str] = set()
        if forced:
            overdrawing = _overdrawing(forced, counters, batch)
            await _insert(db, batch, forced, ids, created, overdrawing)
        else:
            await _lock(db, ids_in_order)
        await _apply(db, batch)
        for key in overdrawing & created.keys():
            log.warning("ledger.deficit", transfer_key=key)
    except BaseException:
        # An account this process created may not exist after all (its transaction rolled
        # back): forget them, so the next batch creates them again instead of failing.
        _KNOWN.difference_update(ids_in_order)
        raise
    return await _results(db, transfers, created)


# Accounts known to exist, committed (they are never removed): a batch naming only those
# creates none. An account is known once a creation attempt found it already there: one this
# transaction creates is not known yet (the transaction may still roll back, and a concurrent
# transfer naming it would fail its foreign key).
_KNOWN: set[str] = set()
_KNOWN_MAX = 200_000


async def _ensure(db: Sql, accounts: dict[str, Account]) -> None:
    missing = sorted(set(accounts) - _KNOWN)
    if not missing:
        return
    created = await repository.create_accounts(
        db,
        [
            (a.id, a.merchant_id, a.kind, a.currency_id, a.limited)
            for a in (accounts[account_id] for account_id in missing)
        ],
    )
    if len(_KNOWN) > _KNOWN_MAX:
        _KNOWN.clear()
    _KNOWN.update(account_id for account_id in missing if account_id not in created)


async def _lock(db: Sql, ids: list[str]) -> dict[str, tuple[int, int, int]]:
    """Lock the accounts' rows in id order (two batches never wait on each other in a cycle)
    and read their counters."""
    rows = await repository.lock_accounts(db, ids)
    if len(rows) < len(ids):
        # Known here, gone from the database (it was reset behind this process, or the
        # transaction that created them rolled back): forget them; a retry creates them.
        _KNOWN.difference_update(ids)
        raise RuntimeError("ledger accounts are missing; retry the operation")
    return {
        row["id"]: (
            int(row["credits_posted"]),
            int(row["debits_posted"]),
            int(row["debits_pending"]),
        )
        for row in rows
    }


async def _insert(
    db: Sql,
    batch: _Batch,
    transfers: Sequence[Transfer],
    ids: dict[str, str],
    created: dict[str, str],
    overdrawing: set[str],
) -> None:
    rows = await repository.insert(
        db, [_row(ids[t.key], t, t.key in overdrawing) for t in transfers]
    )
    created.update((row["key"], row["id"]) for row in rows)
    for t in transfers:
        if t.key in created:
            _add_fresh(batch, t)


def _overdrawing(
    forced: Sequence[Transfer], counters: dict[str, tuple[int, int, int]], batch: _Batch
) -> set[str]:
    """Keys of the forced reversals after which a limited account ends the batch below zero
    (flagged): its counters, what the rest of the batch changed, then every reversal."""
    balance: dict[str, int] = {}
    for account_id, (credits, debits, pending) in counters.items():
        d = batch.deltas.get(account_id, _Delta())
        balance[account_id] = (
            credits + d.credits_posted - debits - d.debits_posted - pending - d.debits_pending
        )
    for t in forced:
        balance[t.debit.id] -= t.amount or 0
        balance[t.credit.id] += t.amount or 0
    return {t.key for t in forced if t.debit.limited and balance[t.debit.id] < 0}


def _row(transfer_id: str, t: Transfer, overdrew: bool) -> tuple[object, ...]:
    return (
        transfer_id,
        t.key,
        t.type,
        t.code,
        t.debit.id,
        t.credit.id,
        t.debit.currency_id,
        t.amount,
        t.merchant_id,
        t.source_type,
        t.source_id,
        overdrew,
    )


def _resolution(transfer_id: str, t: Transfer) -> tuple[object, ...]:
    return (
        transfer_id,
        t.key,
        t.type,
        t.code,
        t.pending_key,
        t.debit.id,
        t.credit.id,
        t.amount,
        t.merchant_id,
        t.source_type,
        t.source_id,
    )


def _add_fresh(batch: _Batch, t: Transfer) -> None:
    amount = t.amount or 0
    debit, credit = batch.deltas[t.debit.id], batch.deltas[t.credit.id]
    if t.type == "pending":
        debit.debits_pending += amount
        credit.credits_pending += amount
    else:
        debit.debits_posted += amount
        credit.credits_posted += amount
    if not t.debit.limited:
        return
    if t.may_overdraw:
        debit.forced += amount
    elif t.netted:
        debit.netted = True
    else:
        debit.covered = True


def _add_resolution(batch: _Batch, t: Transfer, posted: int, held: int) -> None:
    debit, credit = batch.deltas[t.debit.id], batch.deltas[t.credit.id]
    debit.debits_pending -= held
    credit.credits_pending -= held
    debit.debits_posted += posted
    credit.credits_posted += posted


async def _apply(db: Sql, batch: _Batch) -> None:
    changes = [
        (
            account_id,
            d.debits_pending,
            d.debits_posted,
            d.credits_pending,
            d.credits_posted,
            d.must_cover(),
        )
        for account_id, d in sorted(batch.deltas.items())
        if d.debits_pending or d.debits_posted or d.credits_pending or d.credits_posted
    ]
    if not changes:
        return
    changed = await repository.apply(db, changes)
    short = [change[0] for change in changes if change[0] not in changed]
    if short:
        raise InsufficientBalance(account_ids=short)


async def _results(
    db: Sql, transfers: Sequence[Transfer], created: dict[str, str]
) -> list[Recorded]:
    """One result per transfer; a key recorded before must name the same transfer."""
    seen = [t for t in transfers if t.key not in created]
    earlier = (
        {row["key"]: row for row in await repository.by_keys(db, [t.key for t in seen])}
        if seen
        else {}
    )
    unresolvable = [t.pending_key for t in seen if t.key not in earlier]
    if unresolvable:
        raise PendingTransferNotResolvable(
            "The held amount was already released or settled, or does not exist "
            f"({', '.join(str(key) for key in unresolvable)})."
        )
    for t in seen:
        if not _same(t, earlier[t.key]):
            raise TransferKeyReused(f"The ledger transfer key {t.key!r} names another transfer.")
    return [
        Recorded(created[t.key], t.key, True)
        if t.key in created
        else Recorded(earlier[t.key]["id"], t.key, False)
        for t in transfers
    ]


def _same(t: Transfer, row: object) -> bool:
    get = row.__getitem__  # type: ignore[attr-defined]
    return (
        get("type") == t.type
        and get("code") == t.code
        and get("debit_account_id") == t.debit.id
        and get("credit_account_id") == t.credit.id
        and (t.amount is None or int(get("amount")) == t.amount)
        and get("pending_key") == t.pending_key
    )
