"""Reconciliation on a real chain: the ledger's custody and hot wallets against balanceOf at one
block; a transfer the ledger does not know shows up with its address, a recorded top-up does
not; each run is stored and the jobs health check reports a difference."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from nespay.auth.principals import Actor
from nespay.db import sql
from nespay.health import collect
from nespay.ledger import repository
from nespay.ledger.funding import record_funding
from nespay.ledger.tasks import reconcile_ledger
from tests.payments.conftest import CONFIRMATIONS, units
from tests.wallets.sending import import_key

pytestmark = pytest.mark.own_database


async def _latest(chain) -> dict:
    async with chain.runtime.db.engine.connect() as conn:
        runs = {run["network_code"]: run for run in await repository.latest_runs(sql(conn))}
    return runs[chain.network]


def _line(run: dict, account: str, currency: str = "USDT") -> dict:
    return next(
        line for line in run["lines"] if line["account"] == account and line["currency"] == currency
    )


async def _paid(chain) -> dict:
    invoice = await chain.invoice("10")
    chain.pay(invoice, units("10"))
    chain.node.mine(CONFIRMATIONS)
    await chain.scan()
    return invoice


async def test_the_books_agree_with_the_chain_then_a_stray_deposit_shows_with_its_address(chain):
    invoice = await _paid(chain)
    await reconcile_ledger(chain.runtime)
    run = await _latest(chain)
    assert run["status"] == "ok", run
    custody = _line(run, "custody")
    assert (custody["ledger"], custody["chain"], custody["difference"]) == (
        str(units("10")),
        str(units("10")),
        "0",
    )
    address = invoice["payment_options"][0]["address"]
    chain.node.transfer(chain.token, address, units("3"))  # the scanner has not read it
    chain.node.mine(CONFIRMATIONS)
    await reconcile_ledger(chain.runtime)
    run = await _latest(chain)
    assert run["status"] == "difference"
    custody = _line(run, "custody")
    assert custody["difference"] == str(units("3"))
    assert custody["addresses"] == [
        {"address": address.lower(), "expected": str(units("10")), "chain": str(units("13"))}
    ]
    status, body = await collect(chain.runtime)
    assert status == 200  # a difference is reported, it does not take the jobs process down
    assert body["info"]["reconciliation"]["status"] == "difference"
    assert chain.network in body["info"]["reconciliation"]["message"]


async def test_a_hot_wallet_top_up_is_a_difference_until_it_is_recorded(chain):
    await _paid(chain)
    _, wallet = await import_key(chain.runtime.settings, chain.runtime.db, chain.network)
    chain.node.transfer(chain.token, wallet.address, units("5"))
    chain.node.mine(CONFIRMATIONS)
    await reconcile_ledger(chain.runtime)
    line = _line(await _latest(chain), "hot_wallet")
    assert (line["ledger"], line["chain"]) == ("0", str(units("5")))
    assert line["addresses"] == [{"address": wallet.address, "chain": str(units("5"))}]
    async with chain.runtime.db.session() as session:
        await record_funding(
            session,
            Actor("system", "tests"),
            network=chain.network,
            currency="USDT",
            amount="5",
            reason="float from the treasury",
        )
    await reconcile_ledger(chain.runtime)
    run = await _latest(chain)
    assert _line(run, "hot_wallet")["difference"] == "0"
    assert run["status"] == "ok", run
    async with chain.runtime.db.engine.connect() as conn:
        action = await conn.scalar(
            text("SELECT action FROM audit_logs WHERE action = 'hot_wallet.funding_recorded'")
        )
    assert action == "hot_wallet.funding_recorded"


async def test_a_node_that_cannot_be_read_is_an_error_run(chain):
    await _paid(chain)
    async with chain.runtime.db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE rpc_endpoints SET url = 'http://127.0.0.1:9' WHERE network_code = :n"),
            {"n": chain.network},
        )
    with pytest.raises(Exception, match="no network could be read"):
        await reconcile_ledger(chain.runtime)
    run = await _latest(chain)
    assert run["status"] == "error" and run["error"]
