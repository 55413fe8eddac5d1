"""The EVM transaction manager behind `wallets.send`: per network, under a lease, one pass

1. receipts: every candidate hash of every unfinished transaction is looked up; whichever
   candidate is mined wins (`mined`), and after the network's confirmations the transaction
   is `confirmed` (receipt status 1) or `failed` (0), its purpose's handler running in the
   transaction that records it. A mined transaction whose block was reorged away goes back
   to `broadcast` and its stored raw transaction is broadcast again (never re-signed).
2. replacements: a `broadcast` transaction not mined within WALLET_SEND_REPLACE_AFTER_S is
   signed again at the SAME nonce with both fee fields raised ≥ 12.5 % (and at least to the
   market), stored as a new candidate (`signed`) before it is broadcast.
3. queued transactions: gas estimated (+10 %), fees from `eth_feeHistory` (maxFee = 2 × base
   fee + tip), then in ONE database transaction: the nonce claimed, the transaction signed,
   the candidate stored, status `signed`. Nothing is sent before that commits.
4. broadcasts: the newest candidate of every `signed` transaction is sent; "already known",
   "nonce too low" and the like mean it may already be out — it is recorded as broadcast and
   the receipts decide.

A network's `max_fee_per_gas_cap` (wei per gas) bounds every candidate: a transaction that
would need more waits, with `last_error` saying the cap and the fee it needs. See
docs/sending.md for the states and the crash analysis; `NESPAY_FAULT` points are marked
`fault_point(...)`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from nespay.chains.rpcclient import RpcClient, RpcError
from nespay.kit.faults import fault_point
from nespay.kit.urls import mask_urls_in
from nespay.runtime import Runtime
from nespay.security.encryption import keyring_from_settings
from nespay.wallets import evmtx, hdkeys, hotkeys, outgoing, txstore
from nespay.wallets.evmtx import Fees, Market
from nespay.wallets.privy_signer import PrivySender, PrivySendFailed
from nespay.wallets.txstore import Candidate, Pending, SendingNetwork

log = structlog.get_logger("nespay.wallets.sender")

FEE_HISTORY_BLOCKS = 5
RECEIPT_BATCH = 100
# Answers to eth_sendRawTransaction that mean "this nonce already has a transaction of ours
# in the pool or on chain": not an error; the receipts tell which candidate won.
MAYBE_SENT = (
    "already known",
    "already imported",
    "known transaction",
    "alreadyknown",
    "nonce too low",
    "replacement transaction underpriced",
    "already exists",
)


@dataclass
class Report:
    signed: int = 0
    broadcast: int = 0
    replaced: int = 0
    confirmed: int = 0
    failed: int = 0
    reorged: int = 0
    waiting: int = 0  # held back: fee cap, gas estimate, a refused broadcast
    stalled: int = 0  # a step that raised (e.g. a purpose's handler): retried next pass
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [
            f"{value} {name}"
            for name, value in (
                ("signed", self.signed),
                ("broadcast", self.broadcast),
                ("replaced", self.replaced),
                ("confirmed", self.confirmed),
                ("failed", self.failed),
                ("reorged", self.reorged),
                ("waiting", self.waiting),
                ("stalled", self.stalled),
            )
            if value
        ]
        return ", ".join(parts) or "nothing to do"


def maybe_sent(error: str) -> bool:
    lowered = error.lower()
    return any(marker in lowered for marker in MAYBE_SENT)


class FeeCapReached(Exception):
    pass


def capped(fees: Fees, needed: int, cap: int | None, *, what: str) -> Fees:
    """`fees`, or at most the cap when the cap still pays `needed`; FeeCapReached otherwise."""
    if cap is None or fees.max_fee_per_gas <= cap:
        return fees
    if cap >= needed and cap >= fees.max_priority_fee_per_gas:
        return Fees(cap, fees.max_priority_fee_per_gas)
    raise FeeCapReached(
        f"fee cap reached: {what} needs maxFeePerGas of at least {needed} wei/gas, above the "
        f"network's max_fee_per_gas_cap of {cap} wei/gas; it waits until fees fall or the cap "
        "is raised"
    )


class NetworkSender:
    def __init__(
        self,
        runtime: Runtime,
        network: SendingNetwork,
        rpc: RpcClient,
        privy: PrivySender,
        report: Report,
    ) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.network = network
        self.rpc = rpc
        self.privy = privy
        self.report = report
        self._market: Market | None = None

    async def run(self) -> None:
        await self.check_receipts()
        await self.replace_stuck()
        await self.sign_queued()
        await self.broadcast_signed()

    # --- chain reads ---------------------------------------------------------------------

    async def market(self) -> Market:
        if self._market is None:
            history = await self.rpc.call(
                "eth_feeHistory",
                [hex(FEE_HISTORY_BLOCKS), "latest", [self.settings.wallet_send_tip_percentile]],
            )
            self._market = evmtx.market_from_fee_history(
                history, self.settings.wallet_send_min_priority_fee_wei
            )
        return self._market

    async def _rows(self, statuses: list[str]) -> tuple[list[Pending], dict[str, list[Candidate]]]:
        async with self.runtime.db.engine.connect() as conn:
            rows = await txstore.pending(conn, self.network.code, statuses)
            found = await txstore.candidates(conn, [row.tx.id for row in rows])
        return rows, found

    async def _guarded(self, row: Pending, work: Awaitable[None]) -> None:
        """One transaction's step; an unexpected error (a handler that raised, say) rolls
        back that step only, is logged, and the pass goes on with the next transaction. An
        unreachable node stops the pass."""
        try:
            await work
        except RpcError:
            raise
        except Exception as error:  # noqa: BLE001 - isolated per transaction, retried next pass
            self.report.stalled += 1
            log.error(
                "outgoing_step_failed", tx_id=row.tx.id, purpose=row.tx.purpose, exc_info=error
            )

    async def _set_error(self, tx_id: str, error: str) -> None:
        self.report.waiting += 1
        async with self.runtime.db.engine.begin() as conn:
            await txstore.set_error(conn, tx_id, error)

    async def _store_first(
        self,
        row: Pending,
        sign: Callable[[AsyncConnection], Awaitable[Candidate]],
        mark: Callable[[AsyncConnection], Awaitable[bool]],
        *,
        first: bool = False,
    ) -> Candidate | None:
        """The rule of every family: nothing goes out that is not stored first. In ONE
        database transaction the family signs a candidate (`sign`, its hook), the candidate is
        stored and the transaction moves on (`mark`, a compare-and-set); only once that has
        committed is anything broadcast. None, and nothing kept, when another sender moved
        the transaction first.

        `first`: the first candidate of a `queued` transaction: the `wallets.after_sign` fault
        point stands before the commit, and a signing key that is missing holds the
        transaction back (`last_error`) instead of stalling the pass."""
        try:
            async with self.runtime.db.session() as session:
                conn = await session.connection()
                candidate = await sign(conn)
                await txstore.insert_candidate(conn, candidate)
                if not await mark(conn):
                    raise _Skip()
                if first:
                    fault_point(self.settings, "wallets.after_sign")
        except _Skip:
            return None
        except hdkeys.NoAccountKey as missing:
            if not first:
                raise
            await self._set_error(row.tx.id, missing.message)
            return None
        return candidate

    # --- 1. receipts ---------------------------------------------------------------------

    async def check_receipts(self) -> None:
        rows, found = await self._rows(["signed", "broadcast", "mined"])
        if not rows:
            return
        hashes: list[str] = []
        for row in rows:
            if row.tx.status == "mined":
                hashes.append(row.tx.mined_hash or "")
            else:
                hashes.extend(c.tx_hash for c in found[row.tx.id] if c.tx_hash)
        hashes = sorted({h for h in hashes if h})
        head = int(await self.rpc.call("eth_blockNumber", []), 16)
        receipts: dict[str, dict | None] = {}
        for start in range(0, len(hashes), RECEIPT_BATCH):
            chunk = hashes[start : start + RECEIPT_BATCH]
            answers = await self.rpc.batch([("eth_getTransactionReceipt", [h]) for h in chunk])
            for tx_hash, receipt in zip(chunk, answers, strict=True):
                if isinstance(receipt, dict) and receipt.get("blockNumber"):
                    receipts[tx_hash] = receipt
        unmined: list[Pending] = []
        for row in rows:
            if row.tx.status == "mined":
                await self._guarded(row, self._follow_mined(row, found[row.tx.id], receipts, head))
                continue
            receipt = next(
                (receipts[c.tx_hash] for c in found[row.tx.id] if c.tx_hash in receipts), None
            )
            if receipt is not None:
                await self._guarded(row, self._record_mined(row, receipt, head))
            elif row.tx.nonce is not None and all(c.tx_hash for c in found[row.tx.id]):
                unmined.append(row)
        await self._nonces_taken(unmined, head)

    async def _nonces_taken(self, rows: list[Pending], head: int) -> None:
        """A nonce used on chain, as deep as the network's confirmations, by none of our
        candidates was taken by a transaction we did not sign (the key used elsewhere): ours
        can never be mined, so the transfer failed and its purpose is told."""
        safe_block = head - self.network.confirmations + 1
        if not rows or safe_block < 0:
            return
        counts: dict[str, int] = {}
        for address in sorted({row.tx.from_address for row in rows}):
            count, error = await self.rpc.call_answered(
                "eth_getTransactionCount", [address, hex(safe_block)]
            )
            if error is None:  # a node without that block's state cannot say: ask later
                counts[address] = int(count, 16)
        for row in rows:
            assert row.tx.nonce is not None
            if counts.get(row.tx.from_address, 0) > row.tx.nonce:
                message = (
                    f"nonce {row.tx.nonce} of {row.tx.from_address} was used on chain (block "
                    f"{safe_block} or before) by a transaction none of whose hashes is ours: "
                    "the key signed elsewhere; this transfer was never sent"
                )
                await self._guarded(row, self._abandon(row, message))

    async def _abandon(self, row: Pending, error: str) -> None:
        async with self.runtime.db.session() as session:
            conn = await session.connection()
            if not await txstore.mark_abandoned(conn, row.tx.id, error):
                return
            await outgoing.notify("failed", session, await txstore.reload(session, row.tx.id))
        self.report.failed += 1
        log.error("outgoing_nonce_taken", tx_id=row.tx.id, nonce=row.tx.nonce, error=error)

    def _confirmations(self, receipt: dict, head: int) -> int:
        return max(0, head - int(receipt["blockNumber"], 16) + 1)

    async def _record_mined(self, row: Pending, receipt: dict, head: int) -> None:
        confirmations = self._confirmations(receipt, head)
        async with self.runtime.db.session() as session:
            conn = await session.connection()
            if not await txstore.mark_mined(conn, row.tx.id, receipt, confirmations):
                return
            tx = await txstore.reload(session, row.tx.id)
            await outgoing.notify("mined", session, tx)
            log.info(
                "outgoing_mined",
                tx_id=tx.id,
                purpose=tx.purpose,
                tx_hash=tx.mined_hash,
                block=tx.mined_block_number,
                nonce=tx.nonce,
            )
            if confirmations >= self.network.confirmations:
                await self._finish(session, tx, confirmations)

    async def _follow_mined(
        self, row: Pending, found: list[Candidate], receipts: dict[str, dict | None], head: int
    ) -> None:
        mined_hash = row.tx.mined_hash or ""
        receipt = receipts.get(mined_hash)
        if receipt is None:
            await self._reorged(row, found)
            return
        confirmations = self._confirmations(receipt, head)
        async with self.runtime.db.session() as session:
            conn = await session.connection()
            if not await txstore.update_mined(conn, row.tx.id, receipt, confirmations):
                return
            if confirmations >= self.network.confirmations:
                await self._finish(session, await txstore.reload(session, row.tx.id), confirmations)

    async def _finish(
        self, session, tx: outgoing.OutgoingTx, confirmations: int, failure: str | None = None
    ) -> None:
        ok = tx.receipt_status == 1
        error = (
            None
            if ok
            else f"{failure or 'reverted on chain (receipt status 0)'} in block "
            f"{tx.mined_block_number}"
        )
        status = "confirmed" if ok else "failed"
        conn = await session.connection()
        if not await txstore.mark_finished(
            conn, tx.id, tx.mined_hash or "", status, confirmations, error
        ):
            return
        tx = await txstore.reload(session, tx.id)
        await outgoing.notify(status, session, tx)
        if ok:
            self.report.confirmed += 1
        else:
            self.report.failed += 1
        log.info("outgoing_" + status, tx_id=tx.id, purpose=tx.purpose, tx_hash=tx.mined_hash)

    async def _reorged(self, row: Pending, found: list[Candidate]) -> None:
        mined_hash = row.tx.mined_hash or ""
        note = (
            f"block {row.tx.mined_block_number} ({row.mined_block_hash}) was reorged away; "
            "the same signed transaction is broadcast again"
        )
        async with self.runtime.db.engine.begin() as conn:
            if not await txstore.mark_unmined(conn, row.tx.id, mined_hash, note):
                return
        self.report.reorged += 1
        log.warning("outgoing_reorged", tx_id=row.tx.id, tx_hash=mined_hash)
        winner = next((c for c in found if c.tx_hash == mined_hash), None)
        if winner is None or winner.raw is None:
            return  # a Privy candidate: no raw bytes; a replacement at the nonce follows
        _, error = await self.rpc.call_answered("eth_sendRawTransaction", [winner.raw])
        if error is not None and not maybe_sent(error):
            async with self.runtime.db.engine.begin() as conn:
                await txstore.set_error(conn, row.tx.id, f"re-broadcast refused: {error}")

    # --- 2. replacements -------------------------------------------------------------------

    async def replace_stuck(self) -> None:
        """Broadcast and not mined for WALLET_SEND_REPLACE_AFTER_S, or signed and refused by
        the node for that long (e.g. "transaction underpriced"): a new candidate, same nonce."""
        rows, found = await self._rows(["broadcast", "signed"])
        limit = self.settings.wallet_send_replace_after_s
        for row in rows:
            if row.tx.status == "broadcast":
                stuck = (row.seconds_since_broadcast or 0.0) >= limit
            else:
                stuck = row.tx.last_error is not None and found[row.tx.id][-1].age_s >= limit
            if stuck:
                await self._guarded(row, self._replace(row, found[row.tx.id]))

    async def _replace(self, row: Pending, found: list[Candidate]) -> None:
        latest = found[-1]
        previous = Fees(latest.max_fee_per_gas, latest.max_priority_fee_per_gas)
        market = await self.market()
        fees = evmtx.replacement_fees(previous, market)
        needed = max(
            evmtx.bumped(previous.max_fee_per_gas), market.base_fee + fees.max_priority_fee_per_gas
        )
        try:
            fees = capped(
                fees, needed, self.network.fee_cap, what=f"replacing nonce {row.tx.nonce}"
            )
        except FeeCapReached as error:
            await self._set_error(row.tx.id, str(error))
            return
        number = latest.number + 1
        stored = await self._store_first(
            row,
            lambda conn: self._candidate(conn, row, number, fees),
            lambda conn: txstore.mark_replaced(
                conn, row.tx.id, max_fee=fees.max_fee_per_gas, tip=fees.max_priority_fee_per_gas
            ),
        )
        if stored is None:
            return
        self.report.replaced += 1
        log.info(
            "outgoing_replaced",
            tx_id=row.tx.id,
            nonce=row.tx.nonce,
            candidate=number,
            max_fee_per_gas=fees.max_fee_per_gas,
            max_priority_fee_per_gas=fees.max_priority_fee_per_gas,
        )

    async def _candidate(self, conn, row: Pending, number: int, fees: Fees) -> Candidate:
        """A new candidate at the transaction's nonce: signed here (local) or left for Privy."""
        assert row.tx.nonce is not None and row.gas_limit is not None
        return await self._sign(conn, row, number, row.tx.nonce, row.gas_limit, fees)

    async def _sign(
        self, conn, row: Pending, number: int, nonce: int, gas: int, fees: Fees
    ) -> Candidate:
        if row.signer == "privy":
            return Candidate(
                row.tx.id,
                number,
                None,
                None,
                fees.max_fee_per_gas,
                fees.max_priority_fee_per_gas,
                False,
            )
        key = await self._private_key(conn, row)
        call = evmtx.transfer_call(row.tx.to_address, row.tx.token_contract, row.tx.amount)
        fields = evmtx.transaction_fields(
            call, chain_id=self.network.chain_id, nonce=nonce, gas=gas, fees=fees
        )
        signed = evmtx.sign(key, fields)
        del key
        return Candidate(
            row.tx.id,
            number,
            signed.tx_hash,
            signed.raw,
            fees.max_fee_per_gas,
            fees.max_priority_fee_per_gas,
            False,
        )

    async def _private_key(self, conn, row: Pending) -> str:
        keyring = keyring_from_settings(self.settings)
        if row.hot_wallet_id is not None:
            return await hotkeys.private_key(conn, keyring, row.hot_wallet_id)
        assert row.deposit_index is not None and row.chain_family is not None
        return await hdkeys.deposit_private_key(
            conn, keyring, row.chain_family, row.deposit_index, row.tx.from_address
        )

    # --- 3. queued -------------------------------------------------------------------------

    async def sign_queued(self) -> None:
        rows, _ = await self._rows(["queued"])
        for row in rows:
            await self._guarded(row, self._sign_first(row))

    async def _sign_first(self, row: Pending) -> None:
        tx = row.tx
        call = evmtx.transfer_call(tx.to_address, tx.token_contract, tx.amount)
        estimate, error = await self.rpc.call_answered(
            "eth_estimateGas", [call.as_rpc(tx.from_address)]
        )
        if error is not None:
            await self._set_error(tx.id, f"gas estimate failed (funds? token?): {error}")
            return
        gas = evmtx.buffered_gas(int(estimate, 16))
        market = await self.market()
        try:
            fees = capped(
                market.fees(),
                market.base_fee + market.tip,
                self.network.fee_cap,
                what="sending now",
            )
        except FeeCapReached as failure:
            await self._set_error(tx.id, str(failure))
            return
        chain_pending = int(
            await self.rpc.call("eth_getTransactionCount", [tx.from_address, "pending"]), 16
        )
        nonce = chain_pending  # until claimed in the transaction that stores the candidate

        async def sign(conn: AsyncConnection) -> Candidate:
            nonlocal nonce
            nonce = await txstore.claim_nonce(
                conn, self.network.code, tx.from_address, chain_pending
            )
            return await self._sign(conn, row, 1, nonce, gas, fees)

        candidate = await self._store_first(
            row,
            sign,
            lambda conn: txstore.mark_signed(
                conn,
                tx.id,
                nonce=nonce,
                gas=gas,
                max_fee=fees.max_fee_per_gas,
                tip=fees.max_priority_fee_per_gas,
            ),
            first=True,
        )
        if candidate is None:
            return
        self._signed_done(
            tx,
            nonce=nonce,
            gas=gas,
            max_fee_per_gas=fees.max_fee_per_gas,
            tx_hash=candidate.tx_hash,
        )

    def _signed_done(self, tx: outgoing.OutgoingTx, **fields: object) -> None:
        """After the signed candidate committed, before anything is broadcast."""
        self.report.signed += 1
        log.info("outgoing_signed", tx_id=tx.id, purpose=tx.purpose, **fields)
        fault_point(self.settings, "wallets.after_signed_commit")

    # --- 4. broadcasts ---------------------------------------------------------------------

    async def broadcast_signed(self) -> None:
        rows, found = await self._rows(["signed"])
        for row in rows:
            await self._guarded(row, self._broadcast(row, found[row.tx.id][-1]))

    async def _broadcast(self, row: Pending, candidate: Candidate) -> None:
        tx_hash, note = candidate.tx_hash, None
        if candidate.raw is not None:
            _, error = await self.rpc.call_answered("eth_sendRawTransaction", [candidate.raw])
            fault_point(self.settings, "wallets.after_broadcast")
            if error is not None:
                if not maybe_sent(error):
                    await self._set_error(row.tx.id, f"broadcast refused by the node: {error}")
                    return
                note = f"node answered {error!r}: treated as already sent; receipts decide"
        else:
            try:
                tx_hash = await self._privy_send(row, candidate)
            except PrivySendFailed as failure:
                await self._set_error(
                    row.tx.id, f"Privy did not send: {mask_urls_in(str(failure))}"
                )
                return
            fault_point(self.settings, "wallets.after_broadcast")
        await self._record_broadcast(row, candidate, tx_hash, note)

    async def _record_broadcast(
        self, row: Pending, candidate: Candidate, tx_hash: str | None, note: str | None
    ) -> None:
        """The candidate went out: recorded, and the purpose told at the first broadcast."""
        async with self.runtime.db.session() as session:
            conn = await session.connection()
            await txstore.candidate_sent(conn, row.tx.id, candidate.number, tx_hash, note)
            earlier = await txstore.mark_broadcast(conn, row.tx.id, candidate.number, note)
            if earlier is None:
                return
            if earlier == 0:
                await outgoing.notify(
                    "broadcast", session, await txstore.reload(session, row.tx.id)
                )
        self.report.broadcast += 1
        log.info(
            "outgoing_broadcast",
            tx_id=row.tx.id,
            nonce=row.tx.nonce,
            candidate=candidate.number,
            tx_hash=tx_hash,
        )

    async def _privy_send(self, row: Pending, candidate: Candidate) -> str:
        assert row.privy_wallet_id is not None and row.tx.nonce is not None
        assert row.gas_limit is not None
        return await self.privy.send(
            row.privy_wallet_id,
            chain_id=self.network.chain_id,
            call=evmtx.transfer_call(row.tx.to_address, row.tx.token_contract, row.tx.amount),
            nonce=row.tx.nonce,
            gas=row.gas_limit,
            fees=Fees(candidate.max_fee_per_gas, candidate.max_priority_fee_per_gas),
            idempotency_key=f"{row.tx.id}:{candidate.number}",
        )


class _Skip(Exception):
    """Another sender changed the row first: roll back this unit of work."""
