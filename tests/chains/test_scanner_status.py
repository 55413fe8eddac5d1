"""A scanner that cannot go on is visible: a node serving another chain is refused with a clear
error (never read), `GET /jobs` shows each network's head, cursor, lag, last scan and error,
the jobs health check names a stuck scanner and reports a lagging one, and the lag is a
Prometheus metric. Each test has a database of its own: the health check judges every network
in it."""

import asyncio
import json
import logging
import time

import httpx
import pytest
from prometheus_client import generate_latest
from sqlalchemy import text

from nespay.apps import jobs
from nespay.chains import service as chains
from nespay.chains.rpcclient import RpcError
from nespay.chains.scanner import NetworkScanner
from nespay.health import collect
from nespay.logging import configure_logging
from nespay.runtime import Runtime
from tests.fixtures.anvil import run_anvil
from tests.fixtures.app import app_client
from tests.fixtures.factories import TEST_ACTOR, register_network
from tests.fixtures.json_server import json_server
from tests.payments.conftest import chain_on, units

pytestmark = pytest.mark.own_database


@pytest.fixture
async def chain(settings, database):
    with run_anvil() as node:
        async with chain_on(settings, database, node) as value:
            yield value


async def run_for(scanner: NetworkScanner, seconds: float) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(scanner.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await task


async def jobs_view(settings, network: str) -> dict:
    async with app_client(jobs.create_app, settings) as (_, client):
        listed = (await client.get("/api/v1/jobs")).json()["networks"]
    return next(n for n in listed if n["code"] == network)


async def test_a_node_serving_another_chain_is_refused_and_shown_until_the_cursor_is_reset(
    chain, settings, database, caplog
):
    chain.pay(await chain.invoice("10"), units("10"))
    await chain.scan()
    cursor = chain.scanner.cursor.number
    # Same chain id, another chain (a fresh node; its block 0 made at another second than the
    # first node's, as after a restart: two nodes started in the same second share it).
    with run_anvil(31337, "--timestamp", str(int(time.time()) + 10_000)) as fresh:
        assert fresh.block(0)["hash"] != chain.node.block(0)["hash"]
        fresh.mine(cursor + 5)
        async with database.engine.begin() as conn:
            await conn.execute(
                text("UPDATE rpc_endpoints SET url = :u WHERE network_code = :n"),
                {"u": fresh.url, "n": chain.network},
            )
        chain.scanner._endpoints_at = 0  # re-read the endpoints now, not in 5 s
        with caplog.at_level(logging.WARNING):
            await run_for(chain.scanner, 3)
        failures = [r for r in caplog.records if "scan_failed" in r.getMessage()]
        assert len(failures) == 1, "a failure that does not change is said once, not each retry"
        assert "serves another chain than the one scanned here" in failures[0].getMessage()
        async with database.engine.connect() as conn:
            stored = await conn.scalar(
                text("SELECT block_number FROM chain_cursors WHERE network_code = :n"),
                {"n": chain.network},
            )
        assert stored == cursor  # nothing of the other chain was read
        shown = await jobs_view(settings, chain.network)
        assert "serves another chain" in shown["last_error"]
        assert "nespay networks reset-cursor" in shown["last_error"]
        assert shown["failing_since"] is not None and shown["cursor"] == cursor

        # on purpose (a new local chain): the operator resets the cursor
        async with database.session() as session:
            assert await chains.reset_cursor(session, TEST_ACTOR, chain.network)
        scanner = NetworkScanner(
            chain.runtime, chain.network, "after-reset", chain.scanner.rpc.http
        )
        assert await scanner.acquire()
        assert scanner.cursor.genesis == fresh.block(0)["hash"]
        await scanner.step()
        await scanner.release()


async def test_a_node_of_another_chain_id_is_never_read(chain, settings, database):
    async with database.engine.begin() as conn:
        await conn.execute(
            text("UPDATE networks SET chain_id = 137 WHERE code = :n"), {"n": chain.network}
        )
    chain.reference_changed()
    scanner = NetworkScanner(chain.runtime, chain.network, "other", chain.scanner.rpc.http)
    with pytest.raises(RpcError, match="serves chain id 31337, not the network's 137"):
        await scanner.acquire()


async def test_jobs_lists_each_networks_head_cursor_lag_and_last_scan(chain, settings, database):
    await chain.scan()
    chain.node.mine(3)
    await chain.scan()
    shown = await jobs_view(settings, chain.network)
    assert shown["cursor"] == chain.node.head() and shown["head"] == chain.node.head()
    assert shown["lag_blocks"] == 0 and shown["last_scan_at"]
    assert shown["last_error"] is None and shown["scanned_by"] == "test-scanner"
    metrics = generate_latest().decode()
    assert f'nespay_scanner_lag_blocks{{network="{chain.network}"}} 0.0' in metrics


async def test_the_jobs_health_names_a_stuck_scanner_and_reports_a_lagging_one(
    chain, settings, database
):
    scanning = settings.model_copy(update={"scanner_enabled": True})
    runtime = Runtime(scanning, "jobs")
    await runtime.start()
    try:
        await chain.scan()
        status, body = await collect(runtime)
        assert status == 200 and body["info"]["scanners"] == {"status": "up"}

        async with database.engine.begin() as conn:  # 1,000 blocks behind the head
            await conn.execute(
                text("UPDATE chain_cursors SET head_number = block_number + 1000"
                     " WHERE network_code = :n"),
                {"n": chain.network},
            )  # fmt: skip
        status, body = await collect(runtime)
        assert status == 200 and body["info"]["scanners"]["status"] == "lagging"
        assert f"{chain.network}: 1000 blocks behind" in body["info"]["scanners"]["message"]

        async with database.engine.begin() as conn:  # failing for ten minutes
            await conn.execute(
                text(
                    "INSERT INTO scanner_status (network_code, last_error, failing_since,"
                    " last_error_at) VALUES (:n, 'every endpoint failed', now() - interval"
                    " '10 minutes', now())"
                ),
                {"n": chain.network},
            )
        status, body = await collect(runtime)
        assert status == 503 and body["status"] == "error"
        message = body["error"]["scanners"]["message"]
        assert chain.network in message and "every endpoint failed" in message

        async with database.engine.begin() as conn:  # nobody scans it for ten minutes
            await conn.execute(
                text("DELETE FROM scanner_status WHERE network_code = :n"), {"n": chain.network}
            )
            await conn.execute(
                text(
                    "UPDATE chain_cursors SET updated_at = now() - interval '10 minutes',"
                    " head_number = block_number WHERE network_code = :n"
                ),
                {"n": chain.network},
            )
        status, body = await collect(runtime)
        assert status == 503 and "no scan for" in body["error"]["scanners"]["message"]
    finally:
        await runtime.close()


KEY = "SECRETKEY123456789"


def quoting_node(method, path, headers, body):
    """A provider that refuses the key and quotes the URL it was called on, key and all (as
    gateways' error pages and some providers' messages do)."""
    calls = json.loads(body)
    quoted = f"http://{headers['host']}{path}"
    answers = [
        {"jsonrpc": "2.0", "id": c["id"], "error": {"code": -32000, "message": f"bad key {quoted}"}}
        for c in (calls if isinstance(calls, list) else [calls])
    ]
    return 200, {}, answers


def written(records) -> str:
    """The lines the process writes for these records: its own formatter (stdout, and what
    log shipping sends), masking included."""
    handler = next(h for h in logging.getLogger().handlers if getattr(h, "_nespay", False))
    return "\n".join(handler.formatter.format(record) for record in records)


async def test_an_rpc_urls_key_quoted_by_a_failing_node_is_in_no_log_line_nor_in_get_jobs(
    settings, database, caplog
):
    configure_logging(settings, "jobs")
    runtime = Runtime(settings, "jobs")
    await runtime.start()
    with json_server(quoting_node) as base:
        url = f"{base}/v2/{KEY}?apikey={KEY}"
        network = await register_network(database, [url], "0x" + "11" * 20)
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                scanner = NetworkScanner(runtime, network, "key-test", http)
                with caplog.at_level(logging.INFO):
                    await run_for(scanner, 1.5)
            shown = await jobs_view(settings, network)
        finally:
            async with database.engine.begin() as conn:
                await conn.execute(
                    text("UPDATE networks SET enabled = false WHERE code = :n"), {"n": network}
                )
            await runtime.close()
    failures = [r for r in caplog.records if "scan_failed" in r.getMessage()]
    assert failures and "bad key http://127.0.0.1" in failures[0].getMessage()
    assert "/v2/***" in shown["last_error"] and KEY not in shown["last_error"]
    assert "rpc_endpoint_failed" in caplog.text
    assert KEY not in caplog.text and KEY not in written(caplog.records)
    async with database.engine.connect() as conn:
        stored = await conn.scalar(
            text("SELECT url FROM rpc_endpoints WHERE network_code = :n"), {"n": network}
        )
    assert stored == url  # what the scanner calls is untouched


async def test_a_failure_left_by_a_replica_that_died_is_not_current_once_another_scans(
    chain, settings, database
):
    async with database.engine.begin() as conn:  # a replica failed, then was killed
        await conn.execute(
            text(
                "INSERT INTO scanner_status (network_code, last_error, failing_since,"
                " last_error_at) VALUES (:n, 'node gone', now() - interval '1 hour',"
                " now() - interval '10 minutes')"
            ),
            {"n": chain.network},
        )
    await chain.scan()  # another replica scans fine
    shown = await jobs_view(settings, chain.network)
    assert shown["last_error"] is None and shown["failing_since"] is None
    scanning = settings.model_copy(update={"scanner_enabled": True})
    runtime = Runtime(scanning, "jobs")
    await runtime.start()
    try:
        status, body = await collect(runtime)
    finally:
        await runtime.close()
    assert status == 200 and body["info"]["scanners"] == {"status": "up"}
