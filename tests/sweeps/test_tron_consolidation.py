"""Consolidation on Tron (the fake TronGrid): paid TRC-20 deposit addresses swept into the
treasury, each first funded with TRX for its energy from the gas wallet (the transfer queued
by the top-up's confirmed receipt), signed with the key derived from the Tron account xprv;
custody moved to treasury in the ledger and reconciliation at zero — TRX left on each address
and on the gas wallet included — then a stray transfer into the treasury reported."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import text

from nespay.ledger.funding import record_funding
from nespay.ledger.tasks import reconcile_ledger
from nespay.rates.service import set_admin_rate
from nespay.security.encryption import keyring_from_settings
from nespay.sweeps.tasks import consolidate
from nespay.sweeps.treasury import set_treasury
from nespay.wallets import hdkeys, trontx
from nespay.wallets.tasks import send_transactions
from tests.chains.tron_rig import address, tron_chain_on
from tests.fixtures.fake_trongrid import fake_tron  # noqa: F401 - fixture
from tests.payments.conftest import units
from tests.sweeps.conftest import ACTOR
from tests.wallets.tron_sending import TRX, import_tron_key

pytestmark = pytest.mark.own_database
TREASURY = trontx.address_of("0x" + "7e" * 32)


async def _rows(chain, statement: str) -> list[dict]:
    async with chain.runtime.db.engine.connect() as conn:
        found = await conn.execute(text(statement), {"n": chain.network})
        return [dict(row._mapping) for row in found]


async def _account(chain, kind: str, code: str) -> int:
    rows = await _rows(
        chain,
        "SELECT a.debits_posted - a.credits_posted AS b FROM ledger_accounts a JOIN currencies c"
        f" ON c.id = a.currency_id WHERE c.network_code = :n AND c.code = '{code}'"
        f" AND a.kind = '{kind}'",
    )
    return int(rows[0]["b"]) if rows else 0


async def _reconciled(chain) -> dict:
    await reconcile_ledger(chain.runtime)
    (run,) = await _rows(
        chain,
        "SELECT status, lines FROM reconciliation_runs WHERE network_code = :n"
        " ORDER BY id DESC LIMIT 1",
    )
    return run


async def test_paid_tron_deposit_addresses_are_funded_with_trx_and_swept(
    settings,
    database,
    fake_tron,  # noqa: F811
):
    tuned = settings.model_copy(update={"consolidation_job_max_concurrent": 10})
    async with tron_chain_on(tuned, database, fake_tron) as chain:
        _, gas = await import_tron_key(tuned, database, chain.network, role="gas")
        fake_tron.fund(gas.address, 200 * TRX)
        fake_tron.mine()
        async with chain.runtime.db.session() as session:
            await set_treasury(session, ACTOR, chain.network, TREASURY)
            await record_funding(
                session, ACTOR, network=chain.network, currency="TRX", amount="200", reason="gas"
            )
            await set_admin_rate(session, ACTOR, "TRX", "USD", Decimal("0.2"))
        invoices = [await chain.invoice("100") for _ in range(4)]
        for invoice in invoices:
            chain.pay(invoice, units("100"), mine=False)
        fake_tron.mine(3)
        await chain.scan()
        for invoice in invoices:
            assert (await chain.get(invoice["id"]))["status"] == "confirmed"
        deposits = sorted(address(i) for i in invoices)

        # Without the account xprv nothing is planned, and the outcome says why.
        assert "import-xprv --chain-family tron" in await consolidate(chain.runtime)
        async with chain.runtime.db.session() as session:
            await hdkeys.import_xprv(
                session,
                tuned,
                keyring_from_settings(tuned),
                chain_family="tron",
                xprv=hdkeys.dev_account_xprv("tron"),
            )
        assert await consolidate(chain.runtime) == f"{chain.network}: 4 funding"
        sweeps = await _rows(chain, "SELECT * FROM sweeps WHERE network_code = :n")
        assert sorted(s["address"] for s in sweeps) == deposits
        # The "gas" is the TRX its energy burns: 130,285 energy at 100 sun + bandwidth.
        assert all(int(s["gas_limit"]) == 130_285 for s in sweeps)
        assert all(int(s["topup_wei"]) > 13 * TRX for s in sweeps)

        for _ in range(30):
            await send_transactions(chain.runtime)
            sweeps = await _rows(chain, "SELECT * FROM sweeps WHERE network_code = :n")
            if all(s["status"] not in ("funding", "sending") for s in sweeps):
                break
            fake_tron.mine()
        assert [s["status"] for s in sweeps] == ["confirmed"] * 4, sweeps
        assert fake_tron.token_balance(chain.token, TREASURY) == units("400")
        for deposit in deposits:
            assert fake_tron.token_balance(chain.token, deposit) == 0
            (sweep_tx,) = fake_tron.signed_from(deposit)  # one transfer, from the address
            assert trontx.decode_raw(sweep_tx[1].signed.raw_data).to == TREASURY
        txs = {r["id"]: r for r in await _rows(chain, "SELECT * FROM outgoing_transactions")}
        for sweep in sweeps:
            topup, transfer = txs[sweep["topup_tx_id"]], txs[sweep["sweep_tx_id"]]
            assert topup["from_address"] == gas.address and topup["to_address"] == sweep["address"]
            assert transfer["from_address"] == sweep["address"]
            assert transfer["signed_at"] >= topup["finished_at"]
        assert await _account(chain, "custody", "USDT") == 0
        assert await _account(chain, "treasury", "USDT") == units("400")

        fake_tron.mine(3)
        run = await _reconciled(chain)
        assert run["status"] == "ok", run["lines"]
        lines = {(x["currency"], x["account"]): x for x in run["lines"]}
        assert lines[("USDT", "treasury")]["chain"] == str(units("400"))
        assert int(lines[("TRX", "custody")]["chain"]) > 0  # the TRX left on each address
        assert lines[("TRX", "hot_wallet")]["chain"] == str(fake_tron.trx_balance(gas.address))

        fake_tron.mint(chain.token, TREASURY, units("5"))  # nobody's sweep
        fake_tron.mine(3)
        run = await _reconciled(chain)
        assert run["status"] == "difference"
        line = next(
            x for x in run["lines"] if (x["currency"], x["account"]) == ("USDT", "treasury")
        )
        assert line["difference"] == str(units("5"))
        assert [a["address"] for a in line["addresses"]] == [TREASURY]
