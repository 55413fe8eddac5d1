"""The Tron scanner's endpoints: failover past a dead or rate-limited endpoint (its Retry-After
honoured), each endpoint's own API key in TRON-PRO-API-KEY and no key where none is set
(never a shared default), keys stored encrypted and never shown, an endpoint serving another
chain never used, and a replica that answers a block's transaction infos empty (it has not
got the block) caught and backed off instead of hiding a payment."""

from __future__ import annotations

import time

import orjson
import pytest
from sqlalchemy import text

from nespay.chains.faketron import FakeTron
from tests.chains.tron_rig import tron_chain_on
from tests.fixtures.fake_trongrid import serve_fake_tron
from tests.fixtures.json_server import json_server
from tests.fixtures.processes import free_port
from tests.payments.conftest import units


def _forward(fake: FakeTron, *, empty_infos: bool = False):
    """An endpoint in front of `fake` (headers forwarded): another replica of the same chain,
    whose transaction infos may be missing."""

    def handle(method, path, headers, body):
        if empty_infos and path.endswith("/gettransactioninfobyblocknum"):
            return 200, {}, []
        answer = fake.request(path, headers, orjson.loads(body) if body else {})
        return answer.status, answer.headers, answer.body

    return handle


async def _endpoint_ids(chain) -> list[str]:
    async with chain.runtime.db.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT id FROM rpc_endpoints WHERE network_code = :n ORDER BY priority"),
            {"n": chain.network},
        )
        return [row[0] for row in rows]


def _rate_limited(method, path, headers, body):
    return 429, {"retry-after": "30"}, {"Error": "rate limited"}


@pytest.mark.parametrize("first", ["closed_port", "rate_limited"])
async def test_a_dead_or_rate_limited_first_endpoint_fails_over_to_the_second(
    settings, database, first
):
    with serve_fake_tron(solid_lag=1) as fake, json_server(_rate_limited) as limited:
        bad = f"http://127.0.0.1:{free_port()}" if first == "closed_port" else limited
        async with tron_chain_on(settings, database, fake, [(bad, None), (fake.url, None)]) as tron:
            invoice = await tron.invoice("10")
            tron.pay(invoice, units("10"))
            fake.mine(2)
            await tron.scan()
            assert (await tron.get(invoice["id"]))["status"] == "confirmed"
            first_id = (await _endpoint_ids(tron))[0]
            health = tron.scanner.rpc.health[first_id]
            assert health.failures >= 1
            if first == "rate_limited":  # backed off for its Retry-After, not the base second
                assert health.until - time.monotonic() > 20


async def test_each_endpoint_sends_its_own_key_and_none_is_ever_made_up(settings, database):
    with (
        serve_fake_tron(solid_lag=1, api_keys={"key-of-b-123"}) as fake,
        json_server(_forward(fake)) as replica_a,
        json_server(_forward(fake)) as keyless,
    ):
        endpoints = [(replica_a, "key-of-a-123"), (keyless, None), (fake.url, "key-of-b-123")]
        async with tron_chain_on(settings, database, fake, endpoints) as tron:
            invoice = await tron.invoice("10")
            tron.pay(invoice, units("10"))
            fake.mine(2)
            await tron.scan()
            assert (await tron.get(invoice["id"]))["status"] == "confirmed"
            async with tron.runtime.db.engine.connect() as conn:
                stored = await conn.scalar(
                    text(
                        "SELECT string_agg(coalesce(api_key_encrypted, ''), ' ')"
                        " FROM rpc_endpoints WHERE network_code = :n"
                    ),
                    {"n": tron.network},
                )
    # A wrong key and no key were refused (401), then the right key answered.
    assert set(fake.keys_seen) == {"key-of-a-123", None, "key-of-b-123"}
    assert "key-of-" not in stored and stored.count("enc:v1:") == 2


async def test_an_endpoint_serving_another_chain_is_never_used(settings, database):
    with serve_fake_tron(solid_lag=1) as fake, serve_fake_tron(genesis_salt="other") as other:
        other.mine(50)
        endpoints = [(other.url, None), (fake.url, None)]
        async with tron_chain_on(settings, database, fake, endpoints) as tron:
            invoice = await tron.invoice("10")
            tron.pay(invoice, units("10"))
            fake.mine(2)
            await tron.scan()
            assert (await tron.get(invoice["id"]))["status"] == "confirmed"
    assert set(other.requests) == {"/wallet/getblockbynum"}  # only asked which chain it is


async def test_a_replica_without_the_blocks_infos_is_caught_and_backed_off(settings, database):
    with (
        serve_fake_tron(solid_lag=1) as fake,
        json_server(_forward(fake, empty_infos=True)) as lagging,
    ):
        endpoints = [(lagging, None), (fake.url, None)]
        async with tron_chain_on(settings, database, fake, endpoints) as tron:
            invoice = await tron.invoice("10")
            tron.pay(invoice, units("10"))
            fake.mine(2)
            before = tron.scanner.cursor.number
            with pytest.raises(Exception, match="not its transactions"):
                await tron.scan()
            assert tron.scanner.cursor.number == before  # the payment's block was not passed
            await tron.scan()  # the lagging endpoint is backed off: the other one answers
            assert (await tron.get(invoice["id"]))["status"] == "confirmed"
