"""`nespay sandbox`: a local chain, the test token, an invoice paid and confirmed end to end."""

import asyncio
import subprocess
import sys
import time

import pytest

from nespay.db import migrate
from tests.fixtures.database import create_database, drop_database, make_settings
from tests.fixtures.processes import base_env, free_port


@pytest.fixture
async def seeded_database():
    name = f"nespay_sandbox_{free_port()}"
    url = await create_database(name)
    await migrate(make_settings(url))
    subprocess.run(
        [sys.executable, "-m", "nespay.cli", "db", "seed"],
        env=base_env(url),
        check=True,
        capture_output=True,
    )
    yield url
    await drop_database(name)


def test_sandbox_pays_an_invoice_and_prints_each_state(seeded_database):
    output = run_sandbox(seeded_database)
    assert states_of(output) == ["pending", "paid", "confirmed"]
    assert "paid 25 of 25 TUSD" in output


def run_sandbox(database_url):
    result = subprocess.run(
        [sys.executable, "-m", "nespay.cli", "sandbox", "--port", str(free_port())],
        env=base_env(database_url, COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def states_of(output):
    return [line.split("→ ")[1].split(" ")[0] for line in output.splitlines() if "→ " in line]


@pytest.mark.timeout(400)
def test_a_second_sandbox_on_a_new_chain_forgets_the_first_chains_cursor(seeded_database):
    first = run_sandbox(seeded_database)
    second = run_sandbox(seeded_database)  # a fresh anvil: another chain behind `local`
    assert "a new chain" not in first
    assert "local chain: a new chain (the saved one is gone)" in second
    assert states_of(second) == ["pending", "paid", "confirmed"]


def test_sandbox_on_a_taken_port_says_what_to_do(seeded_database):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "nespay.cli", "sandbox", "--port", str(port)],
            env=base_env(seeded_database),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode != 0
    assert "--port" in result.stderr and "Traceback" not in result.stderr


# --- nespay sandbox pay ----------------------------------------------------------------------


@pytest.fixture
async def dev_chain(seeded_database, tmp_path):
    """What `nespay dev` gives `sandbox pay`: a local chain mining a block a second, set up as
    the `local` network with the test token, and the jobs process scanning it."""
    from nespay import sandbox
    from nespay.db import Database
    from tests.fixtures.anvil import run_anvil
    from tests.fixtures.processes import nespay_process

    with run_anvil(31337, "--block-time", "1") as node:
        chain = sandbox.LocalChain(node.url, node.process)
        db = Database(make_settings(seeded_database))
        try:
            await sandbox.prepare_local_chain(db, chain)
        finally:
            await db.dispose()
        env = base_env(seeded_database, SCANNER_POLL_INTERVAL_MS="100")
        with nespay_process("jobs", env, tmp_path):
            yield node


async def new_invoice(database_url, **body):
    from nespay.invoices import service as invoices
    from nespay.invoices.schemas import InvoiceCreate
    from nespay.merchants.service import create_merchant
    from nespay.runtime import Runtime
    from nespay.sandbox import ACTOR

    runtime = Runtime(make_settings(database_url), "tests")
    await runtime.start()
    try:
        async with runtime.db.session() as session:
            merchant = await create_merchant(session, ACTOR, "Pay Shop", "pay@example.com", "ID")
        created = await invoices.create(runtime, merchant.id, InvoiceCreate(**body), None)
    finally:
        await runtime.close()
    return created.data["id"]


async def sandbox_pay(database_url, *args):
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "nespay.cli", "sandbox", "pay", *args],
        env=base_env(database_url, COLUMNS="250"),
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.timeout(300)
async def test_sandbox_pay_pays_an_invoice_in_parts_and_prints_each_state(
    seeded_database, dev_chain
):
    invoice = await new_invoice(seeded_database, amount="25", currency="TUSD", network="local")
    part = await sandbox_pay(seeded_database, invoice, "--amount", "10")
    rest = await sandbox_pay(seeded_database, invoice)
    again = await sandbox_pay(seeded_database, invoice)

    assert part.returncode == 0, part.stdout + part.stderr
    assert states_of(part.stdout) == ["pending", "partially_paid"]
    assert "sent 10 TUSD to 0x" in part.stdout
    assert f"invoice {invoice} is partially_paid: 15 TUSD still due" in part.stdout
    assert rest.returncode == 0, rest.stdout + rest.stderr
    assert "sent 15 TUSD" in rest.stdout  # by default, what is still due
    assert states_of(rest.stdout) == ["partially_paid", "paid", "confirmed"]
    assert "paid 25 of 25 TUSD, 2 payment(s)" in rest.stdout
    assert f"invoice {invoice} is confirmed" in rest.stdout
    assert again.returncode == 1
    assert f"invoice {invoice} is confirmed: nothing is due" in again.stderr
    assert "Traceback" not in part.stderr + rest.stderr + again.stderr


@pytest.mark.timeout(300)
async def test_sandbox_pay_sends_the_native_coin_for_a_native_option(seeded_database, dev_chain):
    invoice = await new_invoice(seeded_database, amount="0.5", currency="ETH", network="local")
    paid = await sandbox_pay(seeded_database, invoice)
    assert paid.returncode == 0, paid.stdout + paid.stderr
    assert "sent 0.5 ETH" in paid.stdout
    assert states_of(paid.stdout) == ["pending", "paid", "confirmed"]


async def test_sandbox_pay_refuses_an_invoice_off_the_local_chain_and_a_stopped_chain(
    seeded_database, dev_chain, tmp_path
):
    from nespay.db import Database
    from tests.fixtures.factories import register_network

    db = Database(make_settings(seeded_database))
    try:
        elsewhere = await register_network(db, ["http://127.0.0.1:9"], "0x" + "ab" * 20)
    finally:
        await db.dispose()
    other = await new_invoice(seeded_database, amount="5", currency="USDT", network=elsewhere)
    off_local = await sandbox_pay(seeded_database, other)
    local = await new_invoice(seeded_database, amount="5", currency="TUSD", network="local")
    dev_chain.process.terminate()
    dev_chain.process.wait(timeout=10)
    stopped = await sandbox_pay(seeded_database, local)

    assert off_local.returncode == 1
    assert " ".join(off_local.stderr.split()) == (
        f"error: invoice {other} is payable in USDT on {elsewhere}, not on the `local` network: "
        "`nespay sandbox pay` only sends on the local development chain"
    )
    assert stopped.returncode == 1
    assert f"the local chain does not answer ({dev_chain.url}" in " ".join(stopped.stderr.split())
    assert "start the dev stack with `./run`" in " ".join(stopped.stderr.split())
    assert "Traceback" not in off_local.stderr + stopped.stderr


def test_a_kept_chain_restarts_with_the_same_block_0_and_blocks_on_the_wall_clock(tmp_path):
    # anvil 1.7.1 makes a new genesis block at every start and keeps every one in its state
    # file: without a fixed genesis timestamp, block 0 answers with any of them (a restarted
    # dev chain then looks like another chain to the scanner's genesis check).
    from nespay import sandbox
    from nespay.chains import localchain

    state = tmp_path / "anvil" / "state.json"
    port = free_port()
    seen = []
    for _ in range(12):
        chain = sandbox.start_chain(port, block_time=1, state=state)
        try:
            seen.append(localchain.get_block(chain.url, 0)["hash"])
            localchain.mine(chain.url, 1)
        finally:
            chain.stop()
    assert len(set(seen)) == 1, f"block 0 changed across restarts: {seen}"

    time.sleep(4)  # downtime: the restored chain must not stay behind the clock by it
    chain = sandbox.start_chain(port, block_time=1, state=state)
    try:
        head = localchain.mine(chain.url, 1)
        stamp = int(localchain.get_block(chain.url, head)["timestamp"], 16)
        assert localchain.get_block(chain.url, 0)["hash"] == seen[0]
    finally:
        chain.stop()
    assert abs(stamp - time.time()) <= 2, f"block {head} is {time.time() - stamp:.0f}s behind"


async def nespay_cli(database_url, *args):
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "nespay.cli", *args],
        env=base_env(database_url, COLUMNS="250"),
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.timeout(300)
async def test_sandbox_wallets_then_a_consolidation_sweeps_paid_invoices_into_the_treasury(
    seeded_database, dev_chain
):
    """A developer's money-out tour on the dev stack: `sandbox wallets`, two invoices paid,
    one consolidation pass, the jobs process's sender funds and sweeps them, reconciliation
    is at zero."""
    from nespay.chains import localchain
    from nespay.sandbox_wallets import TREASURY_ACCOUNT, dev_key

    ready = await nespay_cli(seeded_database, "sandbox", "wallets")
    assert ready.returncode == 0, ready.stdout + ready.stderr
    assert "payouts hot wallet: 0x" in ready.stdout and "gas hot wallet: 0x" in ready.stdout
    again = await nespay_cli(seeded_database, "sandbox", "wallets")
    assert again.stdout.count("already") == 4, again.stdout

    for _ in range(2):
        invoice = await new_invoice(seeded_database, amount="25", currency="TUSD", network="local")
        paid = await sandbox_pay(seeded_database, invoice)
        assert paid.returncode == 0, paid.stdout + paid.stderr
    swept = await nespay_cli(seeded_database, "jobs", "run", "consolidation.sweep")
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert "consolidation.sweep: ok (local: 2 funding)" in swept.stdout

    from eth_account import Account

    treasury = Account.from_key(dev_key(TREASURY_ACCOUNT)).address
    token = await _token_contract(seeded_database)
    for _ in range(120):  # the jobs process sends every 5 s; blocks come every second
        if localchain.token_balance(dev_chain.url, token, treasury) == 50 * 10**6:
            break
        await asyncio.sleep(1)
    else:
        raise AssertionError("the sweeps did not reach the treasury")
    for _ in range(30):  # the ledger posts once the sender confirms each sweep
        checked = await nespay_cli(seeded_database, "jobs", "run", "ledger.reconcile")
        if "ledger.reconcile: ok (local: ok)" in checked.stdout:
            break
        await asyncio.sleep(1)
    else:
        raise AssertionError(checked.stdout + checked.stderr)


async def _token_contract(database_url) -> str:
    import asyncpg

    from nespay.db import plain_dsn

    conn = await asyncpg.connect(plain_dsn(database_url))
    try:
        return await conn.fetchval(
            "SELECT contract FROM currencies WHERE network_code = 'local' AND code = 'TUSD'"
        )
    finally:
        await conn.close()


def run_tron_sandbox(database_url):
    result = subprocess.run(
        [sys.executable, "-m", "nespay.cli", "sandbox", "--chain", "tron"]
        + ["--port", str(free_port())],
        env=base_env(database_url, COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.timeout(400)
def test_the_tron_sandbox_pays_a_trc20_invoice_on_the_fake_trongrid_twice(seeded_database):
    """Each start is a new in-memory chain: the second forgets the first's cursor."""
    for _ in range(2):
        output = run_tron_sandbox(seeded_database)
        assert states_of(output) == ["pending", "paid", "confirmed"]
        assert "paid 25 of 25 TUSD" in output and "fake TronGrid on http://127.0.0.1:" in output
        address = output.split("pay 25 TUSD to ")[1].split()[0]
        assert address.startswith("T") and len(address) == 34


def test_an_unknown_sandbox_chain_is_refused_clearly(seeded_database):
    result = subprocess.run(
        [sys.executable, "-m", "nespay.cli", "sandbox", "--chain", "solana"],
        env=base_env(seeded_database),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "expected evm or tron" in result.stderr
    assert "Traceback" not in result.stderr
