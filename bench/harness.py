"""Shared pieces of the benchmarks: a scratch database, server subprocesses, `wrk`, reporting.

Each benchmark runs Nespay and a raw baseline (no framework) in the same run, alternating
them round by round, so drift on a shared 2-core machine (turbo, other tenants, autovacuum)
hits both sides alike; what we publish is the ratio, not an absolute number.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

TICK_US = 1_000_000 / os.sysconf("SC_CLK_TCK")

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

# Pinned load. One wrk thread drives a single Python worker many times over (wrk does >50k rps
# on one core) and leaves the second core to the server and PostgreSQL; 64 connections keep
# the server's queue full without measuring wrk's own connection churn.
THREADS = 1
CONNECTIONS = 64
DURATION_S = 10
WARMUP_S = 2
ROUNDS = 2

ADMIN_DSN = os.environ.get("BENCH_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")

# Nespay's environment for every server it starts: no Redis (degraded mode, as in `test`), quiet
# logs (an access line per request would measure stdout), and no job that calls out: the seeded
# RPC endpoints are public hosts, and a benchmark sends traffic to this machine only.
NESPAY_ENV = {
    "APP_ENV": "test",
    "REDIS_ENABLED": "false",
    "LOG_LEVEL": "warning",
    "RPC_HEALTH_JOB_ENABLED": "false",
    "CONSOLIDATION_JOB_ENABLED": "false",
    # rates.refresh asks CoinGecko; the scanners ask the enabled networks' RPC endpoints (the
    # chain benchmarks switch them on again against their own anvil).
    "RATES_JOB_ENABLED": "false",
    "SCANNER_ENABLED": "false",
}

# Same uvicorn settings as `nespay serve` (see `nespay.cli.serve`).
UVICORN_ARGS = [
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--workers",
    "1",
    "--no-access-log",
    "--no-server-header",
    "--log-level",
    "warning",
]


# --- load parameters --------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    threads: int = THREADS
    connections: int = CONNECTIONS
    duration_s: int = DURATION_S
    warmup_s: int = WARMUP_S
    rounds: int = ROUNDS
    # Benchmarks of rate-limited routes (auth, invoices) give Nespay a Redis of their own, as
    # deployed; `--no-redis` runs them degraded (counters in PostgreSQL) instead.
    redis: bool = True

    def describe(self) -> str:
        return (
            f"wrk -t{self.threads} -c{self.connections} -d{self.duration_s}s --latency, "
            f"{self.rounds} alternating rounds, {self.warmup_s}s warm-up per server"
        )


def argument_parser(description: str) -> argparse.ArgumentParser:
    """The pinned load as defaults, each overridable (`--duration 30` for a steadier number)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--threads", type=int, default=THREADS, help="wrk threads")
    parser.add_argument("--connections", type=int, default=CONNECTIONS, help="wrk connections")
    parser.add_argument("--duration", type=int, default=DURATION_S, help="seconds per run")
    parser.add_argument("--warmup", type=int, default=WARMUP_S, help="warm-up seconds per server")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="alternating rounds")
    parser.add_argument(
        "--no-redis",
        action="store_true",
        help="rate-limited routes without Redis (degraded: counters in PostgreSQL)",
    )
    return parser


def load_from(args: argparse.Namespace) -> Load:
    return Load(
        args.threads, args.connections, args.duration, args.warmup, args.rounds, not args.no_redis
    )


def invocation() -> str:
    """The command as typed (`python -m bench --rounds 3`), for the record."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    name = spec.name.removesuffix(".__main__") if spec else sys.argv[0]
    return " ".join([".venv/bin/python -m", name, *sys.argv[1:]])


def require_wrk() -> str:
    """The harness installs nothing itself: say what to install and stop."""
    path = shutil.which("wrk")
    if path is None:
        sys.exit("install wrk: apt-get install -y wrk")
    return path


# --- scratch database -------------------------------------------------------------------------


@dataclass(frozen=True)
class ScratchDatabase:
    name: str

    @property
    def dsn(self) -> str:
        """Plain libpq DSN, for the asyncpg baselines."""
        return ADMIN_DSN.rsplit("/", 1)[0] + "/" + self.name

    @property
    def url(self) -> str:
        """The guide's form, as Nespay reads it from DATABASE_URL."""
        return self.dsn + "?schema=public"

    def nespay_env(self) -> dict[str, str]:
        return {**os.environ, **NESPAY_ENV, "DATABASE_URL": self.url}


BENCH_TABLE = """
CREATE TABLE IF NOT EXISTS bench_inserts (
    id bigserial PRIMARY KEY,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""


@contextlib.contextmanager
def scratch_database(suffix: str = "") -> Iterator[ScratchDatabase]:
    """`nespay_bench_<pid><suffix>`, migrated and seeded by Nespay's own CLI, dropped
    afterwards. The chain benchmarks take one each (`_catchup`, …): they load it heavily."""
    db = ScratchDatabase(f"nespay_bench_{os.getpid()}{suffix}")
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{db.name}"', f'CREATE DATABASE "{db.name}"'))
    try:
        for command in ("migrate", "seed"):
            _run_cli(db, "db", command)
        asyncio.run(_execute(db.dsn, BENCH_TABLE))
        yield db
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)'))


async def _admin(*statements: str) -> None:
    await _execute(ADMIN_DSN, *statements)


async def _execute(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def _run_cli(db: ScratchDatabase, *args: str) -> str:
    result = subprocess.run(
        [PYTHON, "-m", "nespay.cli", *args],
        cwd=REPO,
        env=db.nespay_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        sys.exit(f"`nespay {' '.join(args)}` failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def nespay_cli(db: ScratchDatabase, *args: str) -> str:
    """`nespay <args>` against the scratch database, as an operator types it; its stdout."""
    return _run_cli(db, *args)


def create_merchant(db: ScratchDatabase, name: str = "Bench Merchant") -> str:
    """`nespay merchants create …`: the owner API key it prints (its last line)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    output = nespay_cli(db, "merchants", "create", "--name", name, "--email", f"{slug}@example.com")
    return output.strip().splitlines()[-1].strip()


def enable_usdt_on_local(db: ScratchDatabase, contract: str, rpc_url: str | None = None) -> None:
    """The seeded `local` network, enabled, with USDT = `contract` (6 decimals).

    With `rpc_url` (an anvil of the benchmark's own) it becomes the network's only enabled RPC
    endpoint; without, every endpoint is disabled (the seeded one is 127.0.0.1:8545, which may
    be someone else's node) — invoice creation needs no node.
    """
    nespay_cli(db, "currencies", "add", "--network", "local", "--code", "USDT",
               "--contract", contract, "--decimals", "6")  # fmt: skip
    if rpc_url is not None:
        nespay_cli(db, "networks", "set-rpc", "local", rpc_url, "--priority", "1")
    # No CLI verb disables an endpoint: done in SQL, on the scratch database only.
    asyncio.run(
        _execute_args(
            db.dsn,
            "UPDATE rpc_endpoints SET enabled = (url = $1) WHERE network_code = 'local'",
            rpc_url or "",
        )
    )
    nespay_cli(db, "networks", "enable", "local")


async def _execute_args(dsn: str, statement: str, *args: object) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement, *args)
    finally:
        await conn.close()


# --- redis ------------------------------------------------------------------------------------

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


@contextlib.contextmanager
def redis_env(enabled: bool = True) -> Iterator[dict[str, str]]:
    """Nespay settings for a throw-away `redis-server` on a free loopback port (no
    persistence), stopped afterwards; with `enabled` false, `{}` (degraded mode, no server)."""
    if not enabled:
        yield {}
        return
    if not Path(REDIS_SERVER).exists():
        sys.exit("install redis-server (apt-get install -y redis-server), or pass --no-redis")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="bench-redis-")
    process = subprocess.Popen(  # noqa: S603 - our own arguments
        [
            REDIS_SERVER,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                sys.exit("redis-server did not start")
            time.sleep(0.05)
        yield {"REDIS_ENABLED": "true", "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(port)}
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


# --- servers ----------------------------------------------------------------------------------


@dataclass
class Server:
    """A server subprocess: the label it is reported under and the URL wrk loads."""

    label: str
    argv: list[str]
    path: str
    env: dict[str, str]
    port: int = field(default_factory=lambda: free_port())
    ready_path: str | None = None  # a GET that answers 200 once up; defaults to `path`
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    @property
    def ready_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.ready_path or self.path}"

    def cpu_ticks(self) -> int:
        """utime + stime of the server process, in clock ticks (/proc/<pid>/stat)."""
        assert self.process is not None
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        return int(fields[11]) + int(fields[12])

    def rss_mb(self) -> float:
        """Resident memory now (VmRSS); the process is uvicorn itself, no reloader/worker pair."""
        assert self.process is not None
        text = Path(f"/proc/{self.process.pid}/status").read_text()
        kb = int(re.search(r"^VmRSS:\s+(\d+) kB", text, re.M).group(1))  # type: ignore[union-attr]
        return kb / 1024


def nespay_server(
    label: str,
    process: str,
    path: str,
    db: ScratchDatabase,
    env: dict[str, str] | None = None,
    ready_path: str | None = None,
) -> Server:
    """`nespay serve <process>` exactly as operators start it (`env` adds to its settings)."""
    argv = [PYTHON, "-m", "nespay.cli", "serve", process, "--port", "{port}"]
    return Server(label, argv, path, {**db.nespay_env(), **(env or {})}, ready_path=ready_path)


def baseline_server(
    label: str, factory: str, path: str, db: ScratchDatabase, ready_path: str | None = None
) -> Server:
    """A raw ASGI app from `bench.baselines`, under the same uvicorn settings as Nespay."""
    argv = [
        PYTHON,
        "-m",
        "uvicorn",
        f"bench.baselines:{factory}",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        *UVICORN_ARGS,
    ]
    env = {**os.environ, "BENCH_DSN": db.dsn, "PYTHONPATH": str(REPO)}
    return Server(label, argv, path, env, ready_path=ready_path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running(servers: Sequence[Server], timeout_s: float = 60.0) -> Iterator[Sequence[Server]]:
    """Start every server, wait until each answers its benchmarked path, stop them all after."""
    try:
        for server in servers:
            _start(server)
        for server in servers:
            _wait_ready(server, timeout_s)
        yield servers
    finally:
        for server in servers:
            _stop(server)


def _start(server: Server) -> None:
    argv = [arg.replace("{port}", str(server.port)) for arg in server.argv]
    handle, name = tempfile.mkstemp(prefix=f"bench-{server.port}-", suffix=".log")
    server.log = Path(name)
    server.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        argv, cwd=REPO, env=server.env, stdout=handle, stderr=subprocess.STDOUT
    )
    os.close(handle)


def _wait_ready(server: Server, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert server.process is not None
        if server.process.poll() is not None:
            sys.exit(f"{server.label} exited while starting:\n{_tail(server)}")
        if _answers(server.ready_url):
            return
        time.sleep(0.2)
    sys.exit(
        f"{server.label} did not answer {server.ready_url} within {timeout_s:g}s:\n{_tail(server)}"
    )


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - loopback only
            return answer.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _stop(server: Server) -> None:
    if server.process is not None and server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=25)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    if server.log is not None:
        server.log.unlink(missing_ok=True)


def _tail(server: Server, lines: int = 30) -> str:
    if server.log is None or not server.log.exists():
        return ""
    return "\n".join(server.log.read_text(errors="replace").splitlines()[-lines:])


# --- load generator ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    rps: float
    requests: int
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    errors: int  # socket errors plus non-2xx/3xx answers: a run with errors is not a result


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


Lua = str | Callable[[], str] | None


def run_wrk(url: str, load: Load, duration_s: int, lua: Lua = None) -> WrkResult:
    """One wrk run; `lua` is a script body (for POSTs), written to a temporary file, or a
    function that writes a fresh one per run (e.g. with a new Idempotency-Key prefix)."""
    if callable(lua):
        lua = lua()
    argv = [
        require_wrk(),
        f"-t{load.threads}",
        f"-c{load.connections}",
        f"-d{duration_s}s",
        "--latency",
        "--timeout",
        "10s",
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        if lua is not None:
            script.write(lua)
            script.flush()
            argv += ["-s", script.name]
        done = subprocess.run(  # noqa: S603 - our own arguments
            [*argv, url], capture_output=True, text=True, check=True
        )
    if done.stderr.strip():
        # A script that fails to load (or raises) is reported here and wrk goes on with bare
        # GETs: whatever it measured then is not the benchmark.
        sys.exit(f"wrk complained, the run is not a result:\n{done.stderr.strip()}")
    return parse_wrk(done.stdout)


def parse_wrk(output: str) -> WrkResult:
    """Requests/s, the `--latency` percentiles, and every kind of error wrk reports."""
    pattern = r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$"
    percentiles = {
        int(p): float(value) * _UNITS_MS[unit]
        for p, value, unit in re.findall(pattern, output, re.M)
    }
    rps = float(re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    percentiles = {p: percentiles.get(p, 0.0) for p in (50, 75, 90, 99)}
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    errors = int(non_2xx.group(1)) if non_2xx else 0
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    if requests == 0:  # nothing answered within the run (a stalled server): not a result either
        errors += 1
    return WrkResult(
        rps, requests, percentiles[50], percentiles[75], percentiles[90], percentiles[99], errors
    )


# --- comparisons ------------------------------------------------------------------------------


@dataclass
class Measured:
    """A server's runs. Besides rps, the CPU the server process spent per request: on a
    shared 2-core machine rps moves with the neighbours' load, CPU per request much less."""

    server: Server
    runs: list[WrkResult] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)  # server CPU per request, per run
    # A benchmark's own probe per request, per run (e.g. PostgreSQL backends' CPU µs).
    probe_us: list[float] = field(default_factory=list)
    rss_mb: float = 0.0
    label: str | None = None  # a route of a shared server (`Target`); default: the server's

    @property
    def name(self) -> str:
        return self.label or self.server.label

    @property
    def rps(self) -> float:
        return statistics.median(run.rps for run in self.runs)

    @property
    def cpu_us_per_request(self) -> float:
        return statistics.median(self.cpu_us)

    @property
    def p99_ms(self) -> float:
        return statistics.median(run.p99_ms for run in self.runs)

    @property
    def errors(self) -> int:
        return sum(run.errors for run in self.runs)


def wait_idle(servers: Sequence[Server], timeout_s: float = 45.0, log=print) -> None:
    """Wait until the servers burn (almost) no CPU: requests of the previous run that wrk gave
    up on may still be running (a stalled server finishes them later), and would take CPU
    from the next run."""
    deadline = time.monotonic() + timeout_s
    while True:
        before = [server.cpu_ticks() for server in servers]
        time.sleep(0.5)
        busy = [
            (server.cpu_ticks() - ticks) * TICK_US / 500_000
            for server, ticks in zip(servers, before, strict=True)
        ]
        if max(busy) < 0.05:
            return
        if time.monotonic() > deadline:
            log(f"  note: a server is still {max(busy):.0%} busy after {timeout_s:g}s; going on")
            return


@dataclass(frozen=True)
class Target:
    """One thing wrk loads: a path (and request script) on a server. Several targets can share
    one server process (three routes of one api process); each is run on its own, so the
    process's CPU time over a run is that target's."""

    label: str
    server: Server
    path: str | None = None  # default: the server's path
    lua: Lua = None
    connections: int | None = None  # default: the load's

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}{self.path or self.server.path}"

    def load(self, load: Load) -> Load:
        if self.connections is None:
            return load
        return dataclasses.replace(load, connections=self.connections)


def measure_alternating(
    servers: Sequence[Server], load: Load, lua: Lua = None, log=print
) -> dict[str, Measured]:
    """Warm every server up, then run them in turn, round after round (baselines first).

    The servers stay up together; an idle one costs nothing, and alternating keeps slow drift
    of the machine out of the ratio. RSS is read after the last round, i.e. after the load.
    """
    targets = [Target(server.label, server, lua=lua) for server in servers]
    return measure_targets(targets, load, log=log)


def measure_targets(
    targets: Sequence[Target], load: Load, log=print, probe: Callable[[], float] | None = None
) -> dict[str, Measured]:
    """`measure_alternating` for targets: warm-up each, then rounds of each in turn. `probe`:
    a running total (µs) read around each run, reported per request (`Measured.probe_us`)."""
    measured = {t.label: Measured(t.server, label=t.label) for t in targets}
    servers = list({id(t.server): t.server for t in targets}.values())
    for target in targets:
        wait_idle(servers, log=log)
        run_wrk(target.url, target.load(load), load.warmup_s, target.lua)
    for round_no in range(1, load.rounds + 1):
        for target in targets:
            wait_idle(servers, log=log)
            before = target.server.cpu_ticks()
            probed = probe() if probe else 0.0
            result = run_wrk(target.url, target.load(load), load.duration_s, target.lua)
            cpu_us = (target.server.cpu_ticks() - before) * TICK_US / max(result.requests, 1)
            measured[target.label].runs.append(result)
            measured[target.label].cpu_us.append(cpu_us)
            if probe:
                measured[target.label].probe_us.append((probe() - probed) / max(result.requests, 1))
            errors = f"  ERRORS {result.errors}" if result.errors else ""
            log(
                f"  round {round_no}: {target.label:<34} {result.rps:>9.0f} rps  "
                f"p99 {result.p99_ms:>7.1f} ms  CPU {cpu_us:>6.0f} µs/req{errors}"
            )
    for item in measured.values():
        item.rss_mb = item.server.rss_mb()
    return measured


@dataclass(frozen=True)
class Row:
    """One line of the results table: a thing against its baseline (or a baseline alone)."""

    bench: str
    thing: Measured
    baseline: Measured | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """thing rps / baseline rps: the headline number."""
        return self.thing.rps / self.baseline.rps if self.baseline else None

    @property
    def cpu_ratio(self) -> float | None:
        """baseline CPU/req ÷ thing CPU/req: the same question, less sensitive to neighbours."""
        if self.baseline is None:
            return None
        return self.baseline.cpu_us_per_request / self.thing.cpu_us_per_request


def render_table(rows: Sequence[Row]) -> str:
    """A Markdown table: what docs/benchmarks.md records."""
    columns = [
        "benchmark",
        "thing",
        "rps",
        "p99 ms",
        "CPU µs/req",
        "RSS MB",
        "baseline",
        "rps",
        "p99 ms",
        "CPU µs/req",
        "RSS MB",
        "ratio (rps)",
        "ratio (CPU)",
    ]
    lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    for row in rows:
        lines.append(
            "| "
            + " | ".join([row.bench, *_cells(row.thing), *_cells(row.baseline), *_ratios(row)])
            + " |"
        )
    errors = [
        f"{m.name}: {m.errors}"
        for row in rows
        for m in (row.thing, row.baseline)
        if m is not None and m.errors
    ]
    if errors:
        lines.append(
            "\nERRORS during the load (these numbers are not results): "
            + ", ".join(sorted(set(errors)))
        )
    return "\n".join(lines)


def _cells(item: Measured | None) -> list[str]:
    if item is None:
        return ["—"] * 5
    answered = any(run.requests for run in item.runs)
    return [
        item.name,
        f"{item.rps:.0f}",
        f"{item.p99_ms:.1f}" if answered else "—",
        f"{item.cpu_us_per_request:.0f}" if answered else "—",
        f"{item.rss_mb:.0f}",
    ]


def _ratios(row: Row) -> list[str]:
    if row.ratio is None or row.cpu_ratio is None:
        return [row.note or "—", "—"]
    return [f"**{row.ratio:.2f}×**", f"{row.cpu_ratio:.2f}×"]


def memory_report(rows: Sequence[Row], limit_mb: float = 150.0) -> str:
    """Nespay's processes against the memory goal (baselines are listed for scale only)."""
    seen: dict[str, float] = {}
    for row in rows:
        for item in (row.thing, row.baseline):
            if item is not None:
                seen.setdefault(item.server.label, item.rss_mb)  # per process, not per route
    return "\n".join(
        f"  {label:<36} {rss:6.1f} MB"
        + (
            f"  {'OK' if rss < limit_mb else 'OVER'} (< {limit_mb:g} MB)"
            if label.startswith("nespay")
            else ""
        )
        for label, rss in seen.items()
    )


def print_results(title: str, load: Load, rows: Sequence[Row]) -> None:
    load_avg = ", ".join(f"{n:.2f}" for n in os.getloadavg())
    redis = "own redis-server" if load.redis else "none (--no-redis: counters in PostgreSQL)"
    print(
        f"\n## {title}\n\nload: {load.describe()}\n"
        f"Redis for the rate-limited routes (auth, invoices): {redis}\n"
        f"load average at the end: {load_avg}\n"
    )
    print(render_table(rows))
    print("\nRSS after the load:")
    print(memory_report(rows))
