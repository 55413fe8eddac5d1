"""The `intrajasa` network (family `va`) next to the chain machinery: with it enabled and a VA
payment credited, no scanner, sweep or reconciliation run is wanted for it, the ledger's
invariants hold, and a merchant sees it among the offered networks."""

from __future__ import annotations

import pytest

from nespay.chains import cursors
from nespay.ledger import invariants
from nespay.ledger import repository as ledger
from nespay.sweeps import repository as sweeps

pytestmark = pytest.mark.own_database


async def test_a_credited_va_network_is_never_scanned_swept_or_reconciled(rig):
    invoice = await rig.invoice()
    raw, headers = rig.fake.pay(invoice["payment_options"][0]["address"])
    await rig.settled((await rig.callback(raw, headers)).json()["id"])
    async with rig.database.engine.connect() as conn:
        assert "intrajasa" not in await cursors.networks_to_scan(conn)
    async with rig.database.driver() as db:
        assert (
            await rig.scalar("SELECT count(*) FROM ledger_accounts WHERE kind = 'custody'") == 1
        )  # the VA's IDR custody account exists ...
        assert [n["code"] for n in await sweeps.networks(db)] == []  # ... and is not swept
        assert [n["code"] for n in await ledger.reconciled_networks(db)] == []
        async with db.transaction(isolation="repeatable_read", readonly=True):
            findings = await invariants.check(db)
    assert findings.ok, findings.summary()


async def test_merchants_see_the_va_network_and_its_currency_offered(rig):
    networks = await rig.api.get("/api/v1/networks", headers=rig.merchant.headers)
    assert networks.status_code == 200, networks.text
    (va,) = [n for n in networks.json()["data"] if n["code"] == "intrajasa"]
    assert va["chain_family"] == "va" and va["chain_id"] is None
    currencies = await rig.api.get(
        "/api/v1/currencies", params={"network": "intrajasa"}, headers=rig.merchant.headers
    )
    assert [(c["code"], c["decimals"]) for c in currencies.json()["data"]] == [("IDR", 2)]
