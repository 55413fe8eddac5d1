"""`nespay dev` (what `./run` ends with): a private PostgreSQL when DATABASE_URL is unset,
migrated and seeded, and all three processes serving."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

import httpx
import pytest

from tests.fixtures.processes import ROOT, free_port


def dev_env(tmp_path, **extra):
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "API_PORT": str(free_port()),
        "WEBHOOK_PORT": str(free_port()),
        "JOB_PORT": str(free_port()),
        "NESPAY_DEV_PG_PORT": str(free_port()),
        "NESPAY_DEV_CHAIN_PORT": str(free_port()),
        "LOG_LEVEL": "warning",
    }
    env.update(extra)
    return env


def wait_healthy(url, child, timeout_s=90):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert child.poll() is None, "nespay dev exited early"
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return response.json()
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} never became healthy")


def test_dev_runs_a_private_database_and_all_three_processes(tmp_path):
    # /var/tmp, since the unprivileged postgres user cannot enter pytest's private tmp dirs.
    data = f"/var/tmp/nespay-test-pg-{os.getpid()}"
    env = dev_env(tmp_path, NESPAY_DEV_PG_DIR=data)
    log = (tmp_path / "dev.log").open("w")
    child = subprocess.Popen(
        [sys.executable, "-m", "nespay.cli", "dev"], env=env, cwd=tmp_path, stdout=log, stderr=log
    )
    try:
        bodies = [
            wait_healthy(f"http://127.0.0.1:{env[var]}/api/v1/health", child)
            for var in ("API_PORT", "WEBHOOK_PORT", "JOB_PORT")
        ]
        jobs = httpx.get(f"http://127.0.0.1:{env['JOB_PORT']}/api/v1/jobs").json()
    finally:
        child.send_signal(signal.SIGINT)
        child.wait(timeout=60)
        shutil.rmtree(data, ignore_errors=True)
    output = (tmp_path / "dev.log").read_text()
    assert all(body["info"]["database"] == {"status": "up"} for body in bodies)
    assert f"127.0.0.1:{env['NESPAY_DEV_PG_PORT']}/nespay" in output
    assert f"http://localhost:{env['API_PORT']}/api/v1/health" in output
    assert "17 networks" in output  # seeded (15 chains, tron-local and intrajasa)
    assert f"local chain: http://127.0.0.1:{env['NESPAY_DEV_CHAIN_PORT']}" in output
    assert {job["name"] for job in jobs["jobs"]} >= {"chains.rpc_health", "invoices.expire"}
    # Ctrl-C stopped the processes and the private cluster.
    assert child.returncode == 0, output[-2000:]
    for var in ("API_PORT", "NESPAY_DEV_PG_PORT"):
        try:
            httpx.get(f"http://127.0.0.1:{env[var]}/", timeout=1)
            raise AssertionError(f"something still listens on {var}")
        except httpx.TransportError:
            pass


def test_dev_without_postgresql_binaries_says_how_to_get_them(tmp_path):
    env = dev_env(tmp_path, NESPAY_PG_BINDIR=str(tmp_path / "nowhere"))
    result = subprocess.run(
        [sys.executable, "-m", "nespay.cli", "dev"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "apt-get install postgresql" in result.stdout + result.stderr
    assert "DATABASE_URL" in result.stdout + result.stderr


def test_dev_lets_callbacks_reach_localhost_unless_configured(tmp_path, monkeypatch):
    from rich.console import Console

    from nespay.devstack import _callbacks_for_development

    monkeypatch.chdir(tmp_path)  # no .env here
    quiet = Console(file=open(os.devnull, "w"))  # noqa: SIM115 - closed with the process
    unset: dict[str, str] = {}
    _callbacks_for_development(quiet, unset)
    assert unset["CALLBACK_ALLOW_PRIVATE_URLS"] == "true"
    chosen = {"CALLBACK_ALLOW_PRIVATE_URLS": "false"}
    _callbacks_for_development(quiet, chosen)
    assert chosen["CALLBACK_ALLOW_PRIVATE_URLS"] == "false"
    (tmp_path / ".env").write_text("CALLBACK_ALLOW_PRIVATE_URLS=false\n")
    from_file: dict[str, str] = {}
    _callbacks_for_development(quiet, from_file)
    assert "CALLBACK_ALLOW_PRIVATE_URLS" not in from_file  # the process reads .env itself


def load_database_url(folder, **env):
    """What `nespay` commands run in `folder` connect to (a fresh interpreter, like a new
    terminal: no DATABASE_URL unless given)."""
    code = (
        "from nespay.config import load_settings; "
        "print(load_settings().database_url.get_secret_value())"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        env={"PATH": "/usr/bin:/bin", "HOME": str(folder), **env},
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_commands_in_the_folder_find_the_running_dev_stacks_database_and_refuse_a_stopped_one(
    tmp_path,
):
    from nespay import devstate

    # Stands in for `nespay dev` (a process whose command line names nespay).
    stack = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "nespay"])
    url = "postgresql://postgres@127.0.0.1:5999/nespay?schema=public"
    devstate.write(
        devstate.DevStack(stack.pid, devstate.now(), "http://localhost:8000", url), tmp_path
    )
    try:
        found = load_database_url(tmp_path)
        configured = load_database_url(tmp_path, DATABASE_URL="postgresql://me@db:5432/shop")
    finally:
        stack.kill()
        stack.wait()
    stopped = load_database_url(tmp_path)
    stopped_but_configured = load_database_url(tmp_path, DATABASE_URL="postgresql://me@db/shop")

    assert found.returncode == 0 and found.stdout.strip() == url, found.stderr
    assert configured.stdout.strip() == "postgresql://me@db:5432/shop"  # the environment wins
    assert stopped.returncode == 2 and stopped.stdout == ""
    assert stopped.stderr.strip().splitlines() == [
        f"config error: DATABASE_URL: not set, and the dev stack recorded in .nespay/dev.json "
        f"(pid {stack.pid}, started {devstate.read(tmp_path).started_at}) is not running: start "
        "it with `./run` in this folder (or set DATABASE_URL)"
    ]
    assert stopped_but_configured.returncode == 0
    # Another folder knows nothing of this stack: the default, as before.
    elsewhere = load_database_url(tmp_path.parent)
    assert elsewhere.stdout.strip().endswith("127.0.0.1:5432/nespay?schema=public")


def test_the_nespay_wrapper_says_to_run_setup_when_there_is_no_venv(tmp_path):
    def wrapper(*args):
        return subprocess.run(
            ["./nespay", *args],
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=30,
        )

    shutil.copy(ROOT / "nespay", tmp_path / "nespay")
    result = wrapper("merchants", "--help")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: {tmp_path}/.venv has no nespay yet: run ./run setup (or ./run) in {tmp_path} first"
    )
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    works = wrapper("merchants", "--help")
    assert works.returncode == 0 and "create" in works.stdout


@contextmanager
def dev_stack(folder, env, log_name):
    """`nespay dev` in `folder`, healthy; stopped with Ctrl-C (SIGINT) on leaving."""
    log = (folder / log_name).open("w")
    child = subprocess.Popen(
        [sys.executable, "-m", "nespay.cli", "dev"], env=env, cwd=folder, stdout=log, stderr=log
    )
    try:
        for var in ("API_PORT", "WEBHOOK_PORT", "JOB_PORT"):
            wait_healthy(f"http://127.0.0.1:{env[var]}/api/v1/health", child)
        yield child
    finally:
        child.send_signal(signal.SIGINT)
        child.wait(timeout=60)
        log.close()


def local_scanner(env, *, past=-1, timeout_s=60):
    """`local` as GET /jobs shows it, once its scanner has read past block `past`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        jobs = httpx.get(f"http://127.0.0.1:{env['JOB_PORT']}/api/v1/jobs", timeout=5).json()
        local = next((n for n in jobs["networks"] if n["code"] == "local"), None)
        if local and local["cursor"] is not None and local["cursor"] > past:
            return local
        time.sleep(0.5)
    raise AssertionError(f"the local scanner did not pass block {past}: {local}")


def chain_rpc(env, method, *params):
    url = f"http://127.0.0.1:{env['NESPAY_DEV_CHAIN_PORT']}"
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    return httpx.post(url, json=body, timeout=5).json()["result"]


def token_of(log_text):
    return re.findall(r"token TUSD at (0x[0-9a-f]{40})", log_text)[-1]


@pytest.mark.timeout(400)
def test_dev_keeps_its_chain_across_restarts_and_scans_afresh_on_a_new_one(tmp_path):
    data = f"/var/tmp/nespay-test-pg-keep-{os.getpid()}"
    env = dev_env(tmp_path, NESPAY_DEV_PG_DIR=data, COLUMNS="250")
    state = tmp_path / ".nespay" / "anvil" / "state.json"
    try:
        with dev_stack(tmp_path, env, "first.log"):
            first = local_scanner(env, past=2)
            sender = chain_rpc(env, "eth_accounts")[0]
        assert state.exists() and not (tmp_path / ".nespay" / "dev.json").exists()

        with dev_stack(tmp_path, env, "second.log"):
            second = local_scanner(env, past=first["cursor"] + 2)
            nonce = int(chain_rpc(env, "eth_getTransactionCount", sender, "latest"), 16)
            genesis = chain_rpc(env, "eth_getBlockByNumber", "0x0", False)["hash"]

        state.write_text(state.read_text()[:1000])  # cut short, as by a kill during a save
        with dev_stack(tmp_path, env, "third.log"):
            fresh = local_scanner(env, past=0)
            new_genesis = chain_rpc(env, "eth_getBlockByNumber", "0x0", False)["hash"]
            time.sleep(3)
            third = local_scanner(env, past=fresh["cursor"])
    finally:
        shutil.rmtree(data, ignore_errors=True)
    logs = {name: (tmp_path / f"{name}.log").read_text() for name in ("first", "second", "third")}

    # Restarted: the same chain, the token where it was, not deployed again, scanned on.
    assert token_of(logs["second"]) == token_of(logs["first"])
    assert nonce == 1, "the test token was deployed again"
    assert second["last_error"] is None and second["cursor"] > first["cursor"]
    assert "a new chain" not in logs["second"]
    # A new chain (the saved one unreadable): said once, and its scanner runs on it.
    assert "its saved state could not be read" in logs["third"]
    assert logs["third"].count("a new chain (the saved one is gone)") == 1
    assert new_genesis != genesis
    assert third["last_error"] is None and third["cursor"] is not None
    # The old cursor was forgotten: the first cursor on the new chain is below the old one (a
    # kept cursor would read at least the old one at once). Compared at the first reading, not
    # after the scan moved on, so a slow start of the third stack cannot catch up with it.
    assert fresh["cursor"] < second["cursor"]
    assert third["cursor"] > fresh["cursor"]
