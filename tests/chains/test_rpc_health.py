"""`chains.rpc_health`: endpoints of enabled networks are probed against real nodes and marked
up (with head and latency) or down (with why). In a database of its own: the job probes every
endpoint of every enabled network it finds, and says how many are up."""

import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from sqlalchemy import text

from nespay.chains.tasks import rpc_health
from nespay.kit.ids import new_id
from nespay.logging import configure_logging
from nespay.runtime import Runtime
from tests.fixtures.anvil import run_anvil
from tests.fixtures.json_server import json_server
from tests.fixtures.processes import free_port

pytestmark = pytest.mark.own_database


class RateLimited(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        self.send_response(429)
        self.send_header("retry-after", "1")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def rate_limited_node():
    server = HTTPServer(("127.0.0.1", 0), RateLimited)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
async def runtime(settings):
    configure_logging(settings, "jobs")  # the process's log lines, as a jobs process writes them
    runtime = Runtime(settings, "jobs")
    await runtime.start()
    yield runtime
    await runtime.close()


async def add_network(runtime, code, chain_id, urls, enabled=True):
    ids = []
    async with runtime.db.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO networks (code, name, chain_family, chain_id, enabled)"
                " VALUES (:c, :c, 'evm', :id, :e)"
            ),
            {"c": code, "id": chain_id, "e": enabled},
        )
        for priority, url in enumerate(urls):
            ids.append(new_id("rpc"))
            await conn.execute(
                text(
                    "INSERT INTO rpc_endpoints (id, network_code, url, priority)"
                    " VALUES (:i, :n, :u, :p)"
                ),
                {"i": ids[-1], "n": code, "u": url, "p": priority},
            )
    return ids


async def endpoint(runtime, endpoint_id):
    async with runtime.db.engine.connect() as conn:
        result = await conn.execute(
            text("SELECT * FROM rpc_endpoints WHERE id = :i"), {"i": endpoint_id}
        )
        return result.mappings().one()


async def test_probe_marks_live_node_up_and_dead_wrong_or_limited_ones_down(
    runtime, rate_limited_node
):
    with run_anvil(31337) as node, run_anvil(999) as other_chain:
        node.rpc("anvil_mine", "0x5")
        dead = f"http://127.0.0.1:{free_port()}"
        live, gone, wrong, limited = await add_network(
            runtime, "probe-net", 31337, [node.url, dead, other_chain.url, rate_limited_node]
        )
        (ignored,) = await add_network(runtime, "probe-off", 31337, [node.url], enabled=False)
        summary = await rpc_health(runtime)

        up = await endpoint(runtime, live)
        assert up["status"] == "up" and up["head_block"] == 5 and up["latency_ms"] is not None
        assert up["consecutive_failures"] == 0 and up["last_error"] is None
        down = await endpoint(runtime, gone)
        assert down["status"] == "down" and "unreachable" in down["last_error"]
        assert down["consecutive_failures"] == 1
        mismatch = await endpoint(runtime, wrong)
        assert mismatch["status"] == "down" and "chain id 999" in mismatch["last_error"]
        assert (await endpoint(runtime, limited))["last_error"] == "rate limited (HTTP 429)"
        assert (await endpoint(runtime, ignored))["status"] == "unknown"
        assert summary == "1 of 4 endpoints up"  # the disabled network's is not probed

        assert await rpc_health(runtime) == "1 of 4 endpoints up"
        assert (await endpoint(runtime, gone))["consecutive_failures"] == 2


async def test_probing_endpoints_with_keys_in_their_urls_logs_and_records_no_key(runtime, caplog):
    """Failing probes (refused connection, 401 from a gateway): the job's warnings and the
    endpoint's `last_error` name the endpoint by id and never carry the key in its URL."""
    key = "SECRETKEY123456789"
    with json_server(lambda method, path, headers, body: (401, {}, {"error": path})) as base:
        urls = [f"{base}/v2/{key}", f"http://127.0.0.1:{free_port()}/v3/{key}?apikey={key}"]
        ids = await add_network(runtime, f"probe-key-{free_port()}", 31337, urls)
        with caplog.at_level(logging.WARNING):
            await rpc_health(runtime)
    rows = [await endpoint(runtime, endpoint_id) for endpoint_id in ids]
    assert [row["status"] for row in rows] == ["down", "down"]
    assert [row["url"] for row in rows] == urls  # what the scanner calls is untouched
    handler = next(h for h in logging.getLogger().handlers if getattr(h, "_nespay", False))
    lines = "\n".join(handler.formatter.format(record) for record in caplog.records)
    assert "rpc_endpoint_down" in lines and all(i in lines for i in ids)
    assert key not in lines and key not in caplog.text
    assert all(key not in row["last_error"] for row in rows)
