"""`nespay sandbox`: a local chain, the test token, an invoice paid and confirmed end to end."""

import subprocess
import sys

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
    result = subprocess.run(
        [sys.executable, "-m", "nespay.cli", "sandbox", "--port", str(free_port())],
        env=base_env(seeded_database, COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    states = [
        line.split("→ ")[1].split(" ")[0] for line in result.stdout.splitlines() if "→ " in line
    ]
    assert states == ["pending", "paid", "confirmed"]
    assert "paid 25 of 25 TUSD" in result.stdout


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
