"""Consolidation on anvil, end to end: twenty paid deposit addresses swept into the treasury
with gas top-ups from the gas wallet (each transfer sent only after its top-up's receipt),
custody moved to treasury in the ledger, reconciliation at zero, then a stray transfer into
the treasury reported."""

from __future__ import annotations

import pytest

from nespay.chains import localchain
from nespay.ledger.tasks import reconcile_ledger
from tests.payments.conftest import units

# The sender and consolidation work every network: in the shared database other tests'
# networks (no node behind them) would have work.
pytestmark = pytest.mark.own_database


async def _latest_run(sweeping) -> dict:
    await reconcile_ledger(sweeping.runtime)
    rows = await sweeping.rows(
        "SELECT status, lines FROM reconciliation_runs WHERE network_code = :n"
        " ORDER BY id DESC LIMIT 1"
    )
    return rows[0]


async def test_twenty_paid_deposit_addresses_are_swept_with_gas_top_ups(sweeping):
    chain = sweeping.chain
    addresses = await sweeping.paid(20)
    assert (await _latest_run(sweeping))["status"] == "ok"

    outcome = await sweeping.consolidate()
    assert outcome == f"{chain.network}: 20 funding"
    sweeps = await sweeping.sweeps()
    assert sorted(s["address"] for s in sweeps) == sorted(addresses)
    assert all(s["status"] == "funding" and s["topup_wei"] > 0 for s in sweeps)
    # Planned once: a second pass finds every address busy.
    assert await sweeping.consolidate() == f"{chain.network}: nothing to sweep"

    done = await sweeping.run_until_swept()
    assert [s["status"] for s in done] == ["confirmed"] * 20
    assert localchain.token_balance(chain.node.url, chain.token, sweeping.treasury) == units("200")
    for address in addresses:
        assert localchain.token_balance(chain.node.url, chain.token, address) == 0

    # Each transfer was signed only after its top-up was confirmed: a later block, from the
    # deposit address itself, at its own first nonce.
    txs = {
        row["id"]: row
        for row in await sweeping.rows(
            "SELECT * FROM outgoing_transactions WHERE network_code = :n"
        )
    }
    for sweep in done:
        topup, transfer = txs[sweep["topup_tx_id"]], txs[sweep["sweep_tx_id"]]
        assert topup["from_address"] == sweeping.gas_wallet
        assert topup["to_address"] == sweep["address"] and topup["token_contract"] is None
        assert transfer["from_address"] == sweep["address"] and transfer["nonce"] == 0
        assert transfer["signed_at"] >= topup["finished_at"]
        assert transfer["mined_block_number"] > topup["mined_block_number"]
    # The ledger moved custody to treasury, merchants untouched.
    assert await sweeping.account("custody", "USDT") == 0
    assert await sweeping.account("treasury", "USDT") == units("200")

    run = await _latest_run(sweeping)
    assert run["status"] == "ok", run["lines"]
    lines = {(line["currency"], line["account"]): line for line in run["lines"]}
    assert lines[("USDT", "treasury")]["chain"] == str(units("200"))

    # A transfer into the treasury the ledger does not know.
    chain.node.transfer(chain.token, sweeping.treasury, units("5"))
    chain.node.mine(3)
    run = await _latest_run(sweeping)
    assert run["status"] == "difference"
    line = next(x for x in run["lines"] if (x["currency"], x["account"]) == ("USDT", "treasury"))
    assert line["difference"] == str(units("5"))
    assert [a["address"] for a in line["addresses"]] == [sweeping.treasury]
