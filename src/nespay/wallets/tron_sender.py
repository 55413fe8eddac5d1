"""The Tron side of `wallets.send`: per Tron network, under the same lease, one pass

Tron has no nonce. A transaction is bound to a recent block (TaPoS: `ref_block_bytes`,
`ref_block_hash`) and carries an `expiration`; after it, no node accepts it and no block
can include it. So the crash-safety rule of the EVM sender (one nonce, every candidate at
it) becomes: **a new candidate is signed only when every earlier one is provably dead**.

1. receipts: `gettransactioninfobyid` for every candidate id of every unfinished transaction;
   one in a block is `mined` (energy, the fee burnt, its result); `confirmed` or `failed` once
   its block is solidified and the network's confirmations deep (the scanner's rule). A
   mined transaction whose receipt is gone (a fork before solidification) goes back to
   `broadcast` and its stored bytes are sent again.
2. rebuilds: a `signed` or `broadcast` transaction whose newest candidate expired, with the
   solidified head more than REBUILD_MARGIN_MS past that expiration and no candidate in the
   solidified chain (`/walletsolidity/gettransactioninfobyid`), can never be mined: blocks
   are in time order, so every block that could have held it is solidified and does not. Only
   then is it signed again (a new candidate, a new id, a new expiration). An expired candidate
   that never went out is rebuilt by the same proof.
3. queued transactions: the energy of a TRC-20 transfer is estimated by running it
   (`triggerconstantcontract`), priced with the chain's `getEnergyFee`, less the sender's
   staked energy; bandwidth is the transaction's size against the sender's free and staked
   bandwidth (else `getTransactionFee` per byte), plus account creation for TRX sent to a new
   account. Energy above the network's fee limit (`networks.tron_fee_limit_sun`, default
   DEFAULT_FEE_LIMIT_SUN), or a TRX balance short of the whole cost, holds the transaction
   back with `last_error`; nothing is signed. Otherwise, in ONE database transaction, the
   raw_data is built here (nespay.wallets.trontx), signed, stored as a candidate, `signed`.
4. broadcasts: the newest candidate's stored bytes go to `/wallet/broadcasthex`;
   `DUP_TRANSACTION_ERROR` means it is already out (recorded as broadcast; receipts decide).

See docs/sending.md ("Tron") for the crash analysis; the `NESPAY_FAULT` points are the EVM
sender's.
"""

from __future__ import annotations

import time

import structlog

from nespay.chains.tron_adapter import TronAdapter
from nespay.kit.faults import fault_point
from nespay.runtime import Runtime
from nespay.wallets import outgoing, trontx, txstore
from nespay.wallets.privy_signer import PrivySender
from nespay.wallets.sender import NetworkSender, Report
from nespay.wallets.txstore import Candidate, Pending, SendingNetwork, TronReceipt

log = structlog.get_logger("nespay.wallets.sender")

DEFAULT_FEE_LIMIT_SUN = 40_000_000  # 40 TRX: a USDT transfer to a new holder at ≤ 300 sun/energy
REBUILD_MARGIN_MS = 60_000  # 20 blocks: a replica of a balanced API that lags is not believed
ENERGY_MARGIN_PERCENT = 110  # TRX held for energy: the estimate + 10 %
SIGNATURE_BYTES = 67  # the signature field in the signed transaction (tag, length, 65)
RESULT_BYTES = 64  # java-tron counts this much per transaction result in bandwidth


def fee_limit_of(network: SendingNetwork) -> int:
    return network.tron_fee_limit or DEFAULT_FEE_LIMIT_SUN


def bandwidth_of(raw_data: bytes) -> int:
    """Bandwidth bytes a transaction with this raw_data uses once signed."""
    return len(raw_data) + 3 + SIGNATURE_BYTES + RESULT_BYTES


class TronNetworkSender(NetworkSender):
    def __init__(
        self,
        runtime: Runtime,
        network: SendingNetwork,
        tron: TronAdapter,
        privy: PrivySender,
        report: Report,
    ) -> None:
        super().__init__(runtime, network, tron.rpc, privy, report)  # type: ignore[arg-type]
        self.tron = tron
        self._params: dict[str, int] | None = None

    async def run(self) -> None:
        self.head, self.head_ms = await self.tron.now()
        self.solid, self.solid_ms = await self.tron.now(solid=True)
        await self.check_receipts()
        await self.rebuild_expired()
        await self.sign_queued()
        await self.broadcast_signed()

    async def chain_parameters(self) -> dict[str, int]:
        if self._params is None:
            self._params = await self.tron.chain_parameters()
        return self._params

    def _depth(self, block: int) -> int:
        tip = min(self.head.number, self.solid.number + max(1, self.network.confirmations) - 1)
        return max(0, tip - block + 1)

    # --- 1. receipts -----------------------------------------------------------------------

    async def check_receipts(self) -> None:
        rows, found = await self._rows(["signed", "broadcast", "mined"])
        for row in rows:
            if row.tx.status == "mined":
                info = await self.tron.transaction_info(row.tx.mined_hash or "")
                await self._guarded(row, self._follow(row, found[row.tx.id], info))
                continue
            for candidate in found[row.tx.id]:
                if candidate.tx_hash is None:
                    continue
                info = await self.tron.transaction_info(candidate.tx_hash)
                if info is not None:
                    await self._guarded(row, self._record(row, candidate.tx_hash, info))
                    break

    async def _receipt(self, tx_id: str, info: dict) -> tuple[TronReceipt, str | None]:
        """The receipt and, for a failed transaction, its result (OUT_OF_ENERGY, REVERT…)."""
        block = int(info["blockNumber"])
        refs = await self.tron.blocks([block])
        result = (info.get("receipt") or {}).get("result", "SUCCESS")
        ok = info.get("result") != "FAILED" and result == "SUCCESS"
        receipt = TronReceipt(
            tx_id,
            block,
            refs[0].hash if refs[0] is not None else "",
            ok,
            int((info.get("receipt") or {}).get("energy_usage_total", 0)),
            int(info.get("fee", 0)),
        )
        failure = None if ok else f"failed on chain ({result if result != 'SUCCESS' else 'FAILED'})"
        return receipt, failure

    async def _record(self, row: Pending, tx_id: str, info: dict) -> None:
        receipt, failure = await self._receipt(tx_id, info)
        confirmations = self._depth(receipt.block)
        async with self.runtime.db.session() as session:
            conn = await session.connection()
            if not await txstore.mark_mined_tron(conn, row.tx.id, receipt, confirmations):
                return
            tx = await txstore.reload(session, row.tx.id)
            await outgoing.notify("mined", session, tx)
            log.info(
                "outgoing_mined",
                tx_id=tx.id,
                purpose=tx.purpose,
                tx_hash=tx_id,
                block=receipt.block,
                energy=receipt.energy,
                fee_sun=receipt.fee,
            )
            if confirmations >= self.network.confirmations:
                await self._finish(session, tx, confirmations, failure)

    async def _follow(self, row: Pending, found: list[Candidate], info: dict | None) -> None:
        mined_hash = row.tx.mined_hash or ""
        if info is None:
            note = (
                f"block {row.tx.mined_block_number} was replaced before it was solidified; the "
                "same signed transaction is broadcast again"
            )
            async with self.runtime.db.engine.begin() as conn:
                if not await txstore.mark_unmined(conn, row.tx.id, mined_hash, note):
                    return
            self.report.reorged += 1
            log.warning("outgoing_reorged", tx_id=row.tx.id, tx_hash=mined_hash)
            winner = next((c for c in found if c.tx_hash == mined_hash), None)
            if winner is not None and winner.raw is not None:
                await self.tron.send(winner.raw)  # refused once expired: the rebuild proof
            return
        receipt, failure = await self._receipt(mined_hash, info)
        confirmations = self._depth(receipt.block)
        async with self.runtime.db.session() as session:
            conn = await session.connection()
            if not await txstore.update_mined_tron(conn, row.tx.id, receipt, confirmations):
                return
            if confirmations >= self.network.confirmations:
                tx = await txstore.reload(session, row.tx.id)
                await self._finish(session, tx, confirmations, failure)

    # --- 2. rebuilds ---------------------------------------------------------------------

    async def rebuild_expired(self) -> None:
        rows, found = await self._rows(["signed", "broadcast"])
        for row in rows:
            newest = found[row.tx.id][-1] if found[row.tx.id] else None
            if newest is None or newest.expiration_ms is None:
                continue
            if self.solid_ms <= newest.expiration_ms + REBUILD_MARGIN_MS:
                continue
            await self._guarded(row, self._rebuild(row, found[row.tx.id]))

    async def _rebuild(self, row: Pending, found: list[Candidate]) -> None:
        for candidate in found:
            if candidate.tx_hash and await self.tron.transaction_info(
                candidate.tx_hash, solid=True
            ):
                return  # it is in a solidified block after all: the receipts step takes it
        newest = found[-1]
        fee_limit = fee_limit_of(self.network)
        raw = self._build(row, fee_limit)
        note = (
            f"candidate {newest.number} ({newest.tx_hash}) expired unmined: the solidified "
            f"chain is past its expiration and holds none of its candidates; signed again"
        )
        candidate = await self._store_first(
            row,
            lambda conn: self._signed(conn, row, newest.number + 1, raw, fee_limit),
            lambda conn: txstore.mark_rebuilt(conn, row.tx.id, note),
        )
        if candidate is None:
            return
        self.report.replaced += 1
        log.info(
            "outgoing_rebuilt",
            tx_id=row.tx.id,
            expired=newest.tx_hash,
            candidate=candidate.number,
            tx_hash=candidate.tx_hash,
        )

    # --- 3. queued -------------------------------------------------------------------------

    def _build(self, row: Pending, fee_limit: int) -> bytes:
        tx = row.tx
        return trontx.build_raw(
            owner=tx.from_address,
            to=tx.to_address,
            token=tx.token_contract,
            amount=tx.amount,
            ref=trontx.RefBlock(self.solid.number, self.solid.hash),
            expiration=self.head_ms + self.settings.wallet_tron_expiration_s * 1000,
            timestamp=int(time.time() * 1000),
            fee_limit=fee_limit,
        )

    async def _signed(
        self, conn, row: Pending, number: int, raw: bytes, fee_limit: int
    ) -> Candidate:
        key = await self._private_key(conn, row)
        signed = trontx.sign(key, raw)
        del key
        expiration = trontx.decode_raw(raw).expiration
        return Candidate(
            row.tx.id,
            number,
            signed.tx_id,
            signed.transaction_hex,
            fee_limit,
            0,
            False,
            0.0,
            expiration,
        )

    async def _cost(self, row: Pending, raw: bytes, energy: int) -> tuple[int, int, str]:
        """(energy's cost in sun, all TRX the transfer needs, how that adds up)."""
        tx = row.tx
        params = await self.chain_parameters()
        resources = await self.tron.account_resource(tx.from_address)
        staked_energy = max(0, resources.get("EnergyLimit", 0) - resources.get("EnergyUsed", 0))
        energy_cost = max(0, energy - staked_energy) * params.get("getEnergyFee", 0)
        free_net = sum(
            max(0, resources.get(limit, 0) - resources.get(used, 0))
            for limit, used in (("freeNetLimit", "freeNetUsed"), ("NetLimit", "NetUsed"))
        )
        create = 0
        if tx.token_contract is None and not await self.tron.account(tx.to_address):
            create = params.get("getCreateNewAccountFeeInSystemContract", 0) + params.get(
                "getCreateAccountFee", 0
            )
        size = bandwidth_of(raw)
        bandwidth = 0 if create or free_net >= size else size * params.get("getTransactionFee", 0)
        reserve = -(-energy_cost * ENERGY_MARGIN_PERCENT // 100)
        amount = tx.amount if tx.token_contract is None else 0
        needed = amount + bandwidth + create + reserve
        how = (
            f"energy {energy} ≈ {energy_cost} sun (+10 %), bandwidth {size} bytes = {bandwidth} "
            f"sun, account creation {create} sun" + (f", amount {amount} sun" if amount else "")
        )
        return energy_cost, needed, how

    async def _sign_first(self, row: Pending) -> None:
        tx = row.tx
        if row.signer == "privy":
            await self._set_error(tx.id, "Privy wallets do not sign Tron transactions here")
            return
        energy = 0
        if tx.token_contract is not None:
            estimate, error = await self.tron.estimate_transfer(
                tx.from_address, tx.token_contract, tx.to_address, tx.amount
            )
            if estimate is None:
                await self._set_error(tx.id, f"energy estimate failed (funds? token?): {error}")
                return
            energy = estimate
        account = await self.tron.account(tx.from_address)
        if not account:
            await self._set_error(
                tx.id, f"{tx.from_address} has never received TRX (not activated): fund it"
            )
            return
        fee_limit = fee_limit_of(self.network)
        raw = self._build(row, fee_limit)
        energy_cost, needed, how = await self._cost(row, raw, energy)
        if energy_cost > fee_limit:
            await self._set_error(
                tx.id,
                f"fee limit reached: the transfer needs {energy} energy ≈ {energy_cost} sun, "
                f"above the network's fee limit of {fee_limit} sun (tron_fee_limit_sun); it "
                "waits until energy is cheaper or staked, or the limit is raised",
            )
            return
        balance = int(account.get("balance", 0))
        if balance < needed:
            await self._set_error(
                tx.id,
                f"not enough TRX on {tx.from_address}: the transfer needs about {needed} sun "
                f"({how}), it holds {balance}; fund it",
            )
            return
        candidate = await self._store_first(
            row,
            lambda conn: self._signed(conn, row, 1, raw, fee_limit),
            lambda conn: txstore.mark_signed_tron(conn, tx.id, energy=energy, fee_limit=fee_limit),
            first=True,
        )
        if candidate is None:
            return
        self._signed_done(
            tx,
            energy=energy,
            fee_limit_sun=fee_limit,
            expiration=candidate.expiration_ms,
            tx_hash=candidate.tx_hash,
        )

    # --- 4. broadcasts -------------------------------------------------------------------

    async def _broadcast(self, row: Pending, candidate: Candidate) -> None:
        assert candidate.raw is not None
        if candidate.expiration_ms is not None and candidate.expiration_ms <= self.head_ms:
            if row.tx.last_error is None:
                await self._set_error(
                    row.tx.id,
                    "expired before it went out: signed again once the solidified chain is "
                    "past its expiration",
                )
            return
        _, error = await self.tron.send(candidate.raw)
        fault_point(self.settings, "wallets.after_broadcast")
        note = None
        if error is not None:
            if not error.startswith("DUP_TRANSACTION_ERROR"):
                await self._set_error(row.tx.id, f"broadcast refused by the node: {error}")
                return
            note = "node answered DUP_TRANSACTION_ERROR: already sent; receipts decide"
        await self._record_broadcast(row, candidate, candidate.tx_hash, note)
