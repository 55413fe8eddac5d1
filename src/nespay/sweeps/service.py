"""One consolidation pass over one network, and what the sender's outcomes do to sweeps.

A pass (under the network's lease, `nespay.sweeps.tasks`):

1. What each deposit address holds by the ledger's account (`custody_expected`: confirmed
   payments, plus gas top-ups, less what its own transfers moved and burnt). Addresses with a
   transfer or a sweep still under way are left for a later pass.
2. Balances read on chain (`latest`); an address holding less than the ledger expects is not
   swept (reconciliation lists it). Tokens first; the native coin only once no token of the
   address is being swept (its coin pays the tokens' gas).
3. Per (address, currency): the gas (`eth_estimateGas` +10 %, fees from `eth_feeHistory`:
   2 × base fee + tip). If the gas would cost more than CONSOLIDATION_MAX_GAS_SHARE_BPS of the
   value (tokens priced in USD through the rate book; no rate: not priced, so not spent), the
   sweep is `dust`: listed in the backoffice and re-judged every pass.
4. Otherwise a sweep: when the address lacks native coin for the gas (with a 25 % margin), a
   top-up from the network's `gas` hot wallet is queued first (`funding`, purpose
   `sweep_gas`); the token transfer is queued only when that top-up's receipt is confirmed
   (the handler below), never after a sleep. With enough gas, the transfer is queued at once
   (`sending`, purpose `sweep`), sent by the deposit address with its own nonce sequence.
   At most CONSOLIDATION_JOB_MAX_CONCURRENT sweeps are live per network.

Outcomes (in the sender's transaction): a top-up confirmed → hot wallet → custody (native) in
the ledger and the sweep's transfer queued; a sweep confirmed → custody → treasury; gas always
to network fees, paid by the hot wallet (top-ups) or custody (sweeps). A failed step fails the
sweep; the next pass plans the address afresh.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from nespay.chains.rpcclient import RpcClient
from nespay.chains.tron_adapter import TronAdapter
from nespay.db import Sql, sql
from nespay.kit.ids import new_id
from nespay.ledger import postings
from nespay.ledger import repository as ledger_repository
from nespay.ledger.reconcile import Currency, TronBalances, balances
from nespay.rates.service import RatesUnavailable, get_rate
from nespay.runtime import Runtime
from nespay.sweeps import repository
from nespay.wallets import evmtx, hdkeys, outgoing
from nespay.wallets.evmtx import Market
from nespay.wallets.hotkeys import NoHotWallet, active_wallet
from nespay.wallets.outgoing import OutgoingTx

log = structlog.get_logger("nespay.sweeps")

BPS = 10_000
MARGIN_PERCENT = 125  # gas bought for a sweep: the estimate at today's fees, plus 25 %
FEE_HISTORY_BLOCKS = 5
PURPOSE_TOPUP = "sweep_gas"
PURPOSE_SWEEP = "sweep"
# A signed TRC-20 transfer's bandwidth (its bytes + 64), priced in case the address has no
# free bandwidth left: a TRX transfer's is smaller.
TRON_SWEEP_BANDWIDTH_BYTES = 350


@dataclass
class Report:
    funding: int = 0
    sending: int = 0
    dust: int = 0
    short: int = 0  # the chain holds less than the ledger expects
    waiting: list[str] = field(default_factory=list)  # why nothing could be planned
    dust_reasons: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [
            f"{value} {name}"
            for name, value in (
                ("funding", self.funding),
                ("sending", self.sending),
                ("dust", self.dust),
                ("short", self.short),
            )
            if value
        ]
        # Dust "because there is no price" is worth saying in the outcome: it never resolves
        # by itself. Gas above the share is the normal case and stays a count.
        unpriced = [reason for reason in self.dust_reasons if reason.startswith("no USD rate")]
        return ", ".join(parts + unpriced + self.waiting) or "nothing to sweep"


@dataclass(frozen=True)
class Candidate:
    currency: Currency
    address: str
    deposit: Any  # deposit_addresses row
    amount: int  # what the ledger expects the address to hold


def _with_margin(wei: int) -> int:
    return -(-wei * MARGIN_PERCENT // 100)


class NetworkConsolidation:
    """An EVM network's pass (TronConsolidation changes how the chain is read and the gas
    priced; the plan, the books and the outcomes are the same)."""

    family = "evm"

    def __init__(self, runtime: Runtime, network: Any, rpc: RpcClient, report: Report) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.network = network
        self.code: str = network["code"]
        self.treasury: str | None = network["treasury_address"]
        self.rpc = rpc
        self.report = report

    async def _balances(self, wanted: list[tuple[Currency, str]]) -> dict[tuple[str, str], int]:
        return await balances(self.rpc, wanted, "latest")

    async def run(self) -> None:
        if self.treasury is None:
            self.report.waiting.append(
                f"no treasury address (nespay networks set-treasury --network {self.code})"
            )
            return
        async with self.runtime.db.engine.connect() as conn:
            db = sql(conn)
            currencies = [
                Currency(r["id"], r["code"], r["contract"], r["decimals"])
                for r in await repository.currencies(db, self.code)
            ]
            expected = await ledger_repository.custody_expected(db, self.code)
            busy = await repository.busy_addresses(db, self.code)
            slots = self.settings.consolidation_job_max_concurrent - await repository.live_count(
                db, self.code
            )
            wanted = sorted({r["address"] for r in expected if int(r["amount"]) > 0} - busy)
            deposits = await repository.deposit_addresses(db, wanted, self.family)
            has_key = await hdkeys.has_account_key(conn, self.family)
        if slots <= 0 or not deposits:
            return
        if not has_key and any(d["provider"] == "hd" for d in deposits.values()):
            self.report.waiting.append(
                "no account key to sign sweeps (nespay wallets import-xprv --chain-family "
                f"{self.family})"
            )
            deposits = {a: d for a, d in deposits.items() if d["provider"] != "hd"}
        by_id = {c.id: c for c in currencies}
        native = next((c for c in currencies if c.contract is None), None)
        if native is None:
            return
        candidates = [
            Candidate(
                by_id[r["currency_id"]], r["address"], deposits[r["address"]], int(r["amount"])
            )
            for r in expected
            if r["address"] in deposits and r["currency_id"] in by_id and int(r["amount"]) > 0
        ]
        # Tokens before the native coin; addresses in a stable order.
        candidates.sort(key=lambda c: (c.currency.contract is None, c.address, c.currency.code))
        wanted_balances = [(c.currency, c.address) for c in candidates]
        wanted_balances += [(native, a) for a in sorted({c.address for c in candidates})]
        chain = await self._balances(sorted(set(wanted_balances), key=_balance_key))
        market = await self._market()
        dust = await self._dust_ids()
        sweeping: set[str] = set()  # addresses with a token sweep planned in this pass
        for candidate in candidates:
            if slots <= 0:
                break
            if candidate.currency.contract is None and candidate.address in sweeping:
                continue
            held = chain[(candidate.currency.id, candidate.address)]
            if held < candidate.amount:
                self.report.short += 1
                log.warning(
                    "sweep_chain_short",
                    network=self.code,
                    address=candidate.address,
                    currency=candidate.currency.code,
                    expected=str(candidate.amount),
                    chain=str(held),
                )
                continue
            planned = await self._plan(
                candidate, chain[(native.id, candidate.address)], native, market, dust
            )
            if planned:
                slots -= 1
                if candidate.currency.contract is not None:
                    sweeping.add(candidate.address)

    async def _market(self) -> Any:
        history = await self.rpc.call(
            "eth_feeHistory",
            [hex(FEE_HISTORY_BLOCKS), "latest", [self.settings.wallet_send_tip_percentile]],
        )
        return evmtx.market_from_fee_history(
            history, self.settings.wallet_send_min_priority_fee_wei
        )

    async def _dust_ids(self) -> dict[tuple[str, str], str]:
        async with self.runtime.db.engine.connect() as conn:
            return await repository.dust_ids(sql(conn), self.code)

    async def _gas_cost(
        self, candidate: Candidate, amount: int, market: Market
    ) -> tuple[int, int] | None:
        """(gas units, what they cost in the native coin's base units), or None when the
        transfer cannot be estimated."""
        gas = await self._gas(candidate, amount)
        return None if gas is None else (gas, gas * market.fees().max_fee_per_gas)

    def _estimate_failed(self, candidate: Candidate, error: object) -> None:
        log.warning(
            "sweep_gas_estimate_failed",
            network=self.code,
            address=candidate.address,
            currency=candidate.currency.code,
            error=error,
        )

    async def _gas(self, candidate: Candidate, amount: int) -> int | None:
        assert self.treasury is not None
        call = evmtx.transfer_call(self.treasury, candidate.currency.contract, amount)
        estimate, error = await self.rpc.call_answered(
            "eth_estimateGas", [call.as_rpc(candidate.address)]
        )
        if error is not None:
            self._estimate_failed(candidate, error)
            return None
        return evmtx.buffered_gas(int(estimate, 16))

    async def _plan(
        self,
        candidate: Candidate,
        native_held: int,
        native: Currency,
        market: Market,
        dust: dict[tuple[str, str], str],
    ) -> bool:
        """Record a sweep (or dust) for the candidate; True when a live sweep was started."""
        is_native = candidate.currency.contract is None
        costed = await self._gas_cost(candidate, candidate.amount if not is_native else 1, market)
        if costed is None:
            return False
        gas, gas_cost = costed
        reserve = _with_margin(gas_cost)
        amount = candidate.amount - reserve if is_native else candidate.amount
        reason = await self._dust_reason(candidate, gas_cost, native)
        if reason is None and amount <= 0:
            reason = "the gas would cost more than the coin held"
        sweep_id = dust.get((candidate.deposit["id"], candidate.currency.id)) or new_id("swp")
        row = {
            "id": sweep_id,
            "network": self.code,
            "currency_id": candidate.currency.id,
            "deposit_address_id": candidate.deposit["id"],
            "address": candidate.address,
            "treasury": self.treasury,
            "amount": candidate.amount if reason else amount,
            "gas_limit": gas,
            "gas_cost_wei": gas_cost,
            "topup_wei": None,
            "reason": reason,
        }
        if reason is not None:
            row["status"] = "dust"
            async with self.runtime.db.session() as session:
                await repository.upsert(sql(session), row)
            self.report.dust += 1
            self.report.dust_reasons[reason] = self.report.dust_reasons.get(reason, 0) + 1
            return False
        shortfall = 0 if is_native else max(0, reserve - native_held)
        async with self.runtime.db.session() as session:
            db = sql(session)
            if shortfall:
                try:
                    await active_wallet(session, self.code, "gas")
                except NoHotWallet:
                    self.report.waiting.append(
                        f"no gas hot wallet to fund sweeps (nespay wallets import-hot-key "
                        f"--network {self.code} --role gas)"
                    )
                    return False
            row.update(status="funding" if shortfall else "sending", topup_wei=shortfall or None)
            stored = await repository.upsert(db, row)
            if stored is None:
                return False  # planned by another replica
            if shortfall:
                tx_id = await outgoing.enqueue(
                    session,
                    purpose=PURPOSE_TOPUP,
                    source_id=sweep_id,
                    network=self.code,
                    role="gas",
                    to_address=candidate.address,
                    amount=shortfall,
                )
                await repository.set_tx(db, sweep_id, "topup_tx_id", tx_id)
                self.report.funding += 1
            else:
                await _queue_transfer(
                    session,
                    sweep_id=sweep_id,
                    network=self.code,
                    deposit_address_id=candidate.deposit["id"],
                    address=candidate.address,
                    treasury=self.treasury,
                    contract=candidate.currency.contract,
                    amount=amount,
                )
                self.report.sending += 1
        log.info(
            "sweep_planned",
            sweep_id=sweep_id,
            network=self.code,
            address=candidate.address,
            currency=candidate.currency.code,
            amount=str(row["amount"]),
            topup_wei=str(shortfall),
        )
        return True

    async def _dust_reason(
        self, candidate: Candidate, gas_cost: int, native: Currency
    ) -> str | None:
        """Why sweeping would cost too much, or None. Same coin: compared in base units."""
        share = self.settings.consolidation_max_gas_share_bps
        if candidate.currency.contract is None:
            if gas_cost * BPS > share * candidate.amount:
                return f"gas ({gas_cost} wei) above {share} bps of the value"
            return None
        try:
            async with self.runtime.db.session() as session:
                gas_rate = await get_rate(session, self.settings, native.code, "USD")
                value_rate = await get_rate(session, self.settings, candidate.currency.code, "USD")
        except RatesUnavailable:
            return (
                f"no USD rate for {native.code} or {candidate.currency.code}: the gas cannot be "
                "priced against the value, so it is not spent (set one in the backoffice, or "
                "check the rates.refresh job)"
            )
        gas_usd = Decimal(gas_cost).scaleb(-native.decimals) * gas_rate
        value_usd = Decimal(candidate.amount).scaleb(-candidate.currency.decimals) * value_rate
        if gas_usd * BPS > share * value_usd:
            return f"gas (about {gas_usd:.6f} USD) above {share} bps of the value ({value_usd} USD)"
        return None


class TronConsolidation(NetworkConsolidation):
    """A Tron network's pass: balances read by `getaccount` and `balanceOf`, the "gas" is the
    TRX the sweep burns — its energy measured by running the transfer from the deposit address
    (`triggerconstantcontract`) at the chain's `getEnergyFee`, plus its bandwidth at
    `getTransactionFee` (and the treasury's creation when it has no account yet) — and the
    top-up from the gas wallet is TRX, as docs/consolidation.md says for EVM."""

    family = "tron"

    def __init__(self, runtime: Runtime, network: Any, tron: TronAdapter, report: Report) -> None:
        super().__init__(runtime, network, tron.rpc, report)  # type: ignore[arg-type]
        self.tron = tron

    async def _balances(self, wanted: list[tuple[Currency, str]]) -> dict[tuple[str, str], int]:
        return await TronBalances(self.tron).read(wanted, None)

    async def _market(self) -> dict[str, int]:
        return await self.tron.chain_parameters()

    async def _gas_cost(
        self, candidate: Candidate, amount: int, market: Any
    ) -> tuple[int, int] | None:
        assert self.treasury is not None
        energy, create = 0, 0
        if candidate.currency.contract is not None:
            energy, error = await self.tron.estimate_transfer(
                candidate.address, candidate.currency.contract, self.treasury, amount
            )
            if energy is None:
                self._estimate_failed(candidate, error)
                return None
        elif not await self.tron.account(self.treasury):
            create = market.get("getCreateNewAccountFeeInSystemContract", 0) + market.get(
                "getCreateAccountFee", 0
            )
        bandwidth = TRON_SWEEP_BANDWIDTH_BYTES * market.get("getTransactionFee", 0)
        return energy, energy * market.get("getEnergyFee", 0) + bandwidth + create


def _balance_key(item: tuple[Currency, str]) -> tuple[str, str]:
    return item[0].id, item[1]


async def _queue_transfer(
    session: AsyncSession,
    *,
    sweep_id: str,
    network: str,
    deposit_address_id: str,
    address: str,
    treasury: str,
    contract: str | None,
    amount: int,
) -> None:
    """Queue the sweep's transfer, sent by the deposit address itself."""
    tx_id = await outgoing.enqueue_from_deposit(
        session,
        purpose=PURPOSE_SWEEP,
        source_id=sweep_id,
        network=network,
        deposit_address_id=deposit_address_id,
        from_address=address,
        to_address=treasury,
        token_contract=contract,
        amount=amount,
    )
    await repository.set_tx(sql(session), sweep_id, "sweep_tx_id", tx_id)


# --- outcomes (registered in nespay.sweeps.tasks) ---------------------------------------------


async def _contract_of(db: Sql, currency_id: str) -> str | None:
    return await db.fetchval(
        f"SELECT {repository.STORED_CONTRACT} FROM currencies WHERE id = $1",  # noqa: S608
        currency_id,
    )


async def topup_confirmed(session: AsyncSession, tx: OutgoingTx) -> None:
    db = sql(session)
    await postings.post_network_fee(db, tx.network_code, tx.id, tx.network_fee_wei)
    sweep = await repository.get_for_update(db, tx.source_id)
    if sweep is None or not await repository.move(db, sweep["id"], "funding", "sending", None):
        return
    native = await ledger_repository.native_currency(db, tx.network_code)
    assert native is not None
    await postings.post_sweep_topup(db, sweep["id"], native, tx.amount)
    await _queue_transfer(
        session,
        sweep_id=sweep["id"],
        network=sweep["network_code"],
        deposit_address_id=sweep["deposit_address_id"],
        address=sweep["address"],
        treasury=sweep["treasury_address"],
        contract=await _contract_of(db, sweep["currency_id"]),
        amount=int(sweep["amount"]),
    )


async def topup_failed(session: AsyncSession, tx: OutgoingTx) -> None:
    db = sql(session)
    await postings.post_network_fee(db, tx.network_code, tx.id, tx.network_fee_wei)
    reason = f"gas top-up failed: {tx.last_error or 'the transaction failed'}"
    await repository.move(db, tx.source_id, "funding", "failed", reason[:500])


async def sweep_confirmed(session: AsyncSession, tx: OutgoingTx) -> None:
    db = sql(session)
    await postings.post_network_fee(
        db, tx.network_code, tx.id, tx.network_fee_wei, paid_by="custody"
    )
    sweep = await repository.get_for_update(db, tx.source_id)
    if sweep is None or not await repository.move(db, sweep["id"], "sending", "confirmed", None):
        return
    await postings.post_sweep(db, sweep["id"], sweep["currency_id"], int(sweep["amount"]))
    log.info("sweep_confirmed", sweep_id=sweep["id"], tx_hash=tx.mined_hash)


async def sweep_failed(session: AsyncSession, tx: OutgoingTx) -> None:
    db = sql(session)
    await postings.post_network_fee(
        db, tx.network_code, tx.id, tx.network_fee_wei, paid_by="custody"
    )
    reason = f"sweep failed: {tx.last_error or 'the transaction failed'}"
    await repository.move(db, tx.source_id, "sending", "failed", reason[:500])
    log.warning("sweep_failed", sweep_id=tx.source_id, reason=reason)
