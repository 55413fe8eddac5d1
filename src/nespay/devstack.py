"""`nespay dev`: everything on one machine.

When `DATABASE_URL` is not set (environment or `.env`), a private PostgreSQL cluster is made
from the machine's PostgreSQL binaries in `.nespay/pg` of the working directory and started on
a free loopback port; as root it runs as the unprivileged `postgres` user, since `initdb` and
`postgres` refuse to run as root. Then: migrate, seed, and the three processes as children,
stopped together on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import glob
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from nespay import devstate
from nespay.config import load_settings

PG_HINT = (
    "PostgreSQL binaries (initdb, pg_ctl) were not found. Install them "
    "(Debian/Ubuntu: `sudo apt-get install postgresql`; they land in /usr/lib/postgresql/<v>/bin) "
    "or point DATABASE_URL at an existing PostgreSQL 15+ server."
)


class DevStackError(RuntimeError):
    pass


def find_pg_bindir() -> Path | None:
    """`NESPAY_PG_BINDIR` if set; else `pg_config --bindir`, the newest Debian
    `/usr/lib/postgresql/<v>/bin`, or wherever `initdb` is on PATH."""
    if override := os.environ.get("NESPAY_PG_BINDIR"):
        path = Path(override)
        return path if (path / "initdb").exists() and (path / "pg_ctl").exists() else None
    candidates = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(out.stdout.strip())
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True
    )
    candidates += versions
    if shutil.which("initdb"):
        candidates.append(str(Path(shutil.which("initdb")).parent))  # type: ignore[arg-type]
    for candidate in candidates:
        if (
            candidate
            and (Path(candidate) / "initdb").exists()
            and (Path(candidate) / "pg_ctl").exists()
        ):
            return Path(candidate)
    return None


def free_port(preferred: int) -> int:
    for port in [preferred, 0]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise DevStackError("no free port on 127.0.0.1")


@dataclass
class PrivateCluster:
    """A PostgreSQL cluster in a project folder, run as an unprivileged user when we are root."""

    root: Path
    bindir: Path
    port: int = 0

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/nespay?schema=public"

    def _as_owner(self, *args: str) -> list[str]:
        if os.geteuid() != 0:
            return list(args)
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise DevStackError(
                "running as root needs the unprivileged `postgres` user for the private cluster "
                "(`sudo adduser --system --group postgres`), or set DATABASE_URL"
            ) from None
        return ["runuser", "-u", "postgres", "--", *args]

    def _run(self, *args: str) -> None:
        result = subprocess.run(self._as_owner(*args), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise DevStackError(f"{Path(args[0]).name} failed: {result.stderr.strip()[-500:]}")

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "run").mkdir(exist_ok=True)
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", "postgres:postgres", str(self.root)], check=True)
        if not (self.data / "PG_VERSION").exists():
            self._run(
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
            )
        self.port = free_port(int(os.environ.get("NESPAY_DEV_PG_PORT", "5439")))
        options = f"-p {self.port} -k {self.root / 'run'} -c listen_addresses=127.0.0.1"
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "postgres.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        asyncio.run(self._create_database())

    async def _create_database(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres")
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = 'nespay'"):
                await conn.execute("CREATE DATABASE nespay")
        finally:
            await conn.close()

    def stop(self) -> None:
        subprocess.run(
            self._as_owner(
                str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"
            ),
            capture_output=True,
            check=False,
        )


def project_folder() -> Path:
    """`NESPAY_DEV_PG_DIR` if set, else `.nespay/pg` here, unless the unprivileged user cannot
    reach it (e.g. under /root): then a folder of its own in /var/tmp."""
    if override := os.environ.get("NESPAY_DEV_PG_DIR"):
        return Path(override)
    here = Path.cwd() / ".nespay" / "pg"
    if os.geteuid() != 0:
        return here
    probe = subprocess.run(
        ["runuser", "-u", "postgres", "--", "test", "-x", str(Path.cwd())], check=False
    )
    if probe.returncode == 0:
        return here
    digest = hashlib.sha256(str(Path.cwd()).encode()).hexdigest()[:12]
    return Path("/var/tmp") / f"nespay-pg-{digest}"


def database_url_configured() -> bool:
    if os.environ.get("DATABASE_URL"):
        return True
    env_file = Path(".env")
    return env_file.exists() and any(
        line.strip().startswith("DATABASE_URL=") for line in env_file.read_text().splitlines()
    )


def run_dev(console: Console) -> None:
    already = devstate.running()
    if already is not None and already.pid != os.getpid():
        console.print(
            f"[red]error:[/red] a dev stack already runs in this folder (pid {already.pid}, "
            f"since {already.started_at}): stop it first (Ctrl-C in its terminal)"
        )
        raise SystemExit(1)
    devstate.path().unlink(missing_ok=True)  # a stopped stack's: this one replaces it
    cluster: PrivateCluster | None = None
    env = dict(os.environ)
    if not database_url_configured():
        bindir = find_pg_bindir()
        if bindir is None:
            console.print(f"[red]error:[/red] {PG_HINT}")
            raise SystemExit(1)
        cluster = PrivateCluster(project_folder(), bindir)
        with console.status(f"starting a private PostgreSQL in {cluster.root}…"):
            try:
                cluster.start()
            except DevStackError as error:
                console.print(f"[red]error:[/red] {error}")
                raise SystemExit(1) from None
        env["DATABASE_URL"] = cluster.url
        console.print(f"PostgreSQL: {cluster.url}")
    _callbacks_for_development(console, env)
    chain = None
    try:
        _migrate_and_seed(env)
        chain = _local_chain(console, env)
        _announce(cluster, chain)
        _serve_all(console, env)
    finally:
        devstate.remove(os.getpid())
        if chain is not None:
            chain.stop()
        if cluster is not None:
            cluster.stop()


def _announce(cluster: PrivateCluster | None, chain: Any) -> None:
    """Tell the commands run in this folder (another terminal) where this stack is."""
    settings = load_settings()
    devstate.write(
        devstate.DevStack(
            pid=os.getpid(),
            started_at=devstate.now(),
            api_url=f"http://localhost:{settings.api_port}",
            database_url=cluster.url if cluster is not None else None,
            chain_url=chain.url if chain is not None else None,
        )
    )


def _callbacks_for_development(console: Console, env: dict[str, str]) -> None:
    """On one machine a merchant's test receiver is on localhost: let callbacks reach it,
    unless the developer said otherwise (`.env` or the environment)."""
    configured = "CALLBACK_ALLOW_PRIVATE_URLS" in env or (
        Path(".env").exists()
        and "CALLBACK_ALLOW_PRIVATE_URLS=" in Path(".env").read_text(errors="replace")
    )
    if not configured:
        env["CALLBACK_ALLOW_PRIVATE_URLS"] = "true"
    mode = "through RabbitMQ" if env.get("RABBITMQ_URL") else "straight from the outbox"
    console.print(f"Callbacks: delivered {mode}; see docs/callbacks.md")


def _nespay(*args: str) -> list[str]:
    return [sys.executable, "-m", "nespay.cli", *args]


def _migrate_and_seed(env: dict[str, str]) -> None:
    for step in (("db", "migrate"), ("db", "seed")):
        if subprocess.run(_nespay(*step), env=env, check=False).returncode != 0:
            raise SystemExit(1)


def _local_chain(console: Console, env: dict[str, str]) -> Any:
    """Where the machine allows (anvil installed, its port free): a local chain with one block
    a second and the test token, registered as the enabled `local` network. The chain is kept
    in `.nespay/anvil/state.json` across restarts (delete the folder for a new one)."""
    from nespay import sandbox
    from nespay.chains.localchain import find_anvil
    from nespay.db import Database

    if os.environ.get("NESPAY_DEV_CHAIN", "1") == "0" or find_anvil() is None:
        console.print("local chain: off (no anvil; `npm ci` installs it)")
        return None
    port = int(os.environ.get("NESPAY_DEV_CHAIN_PORT", "8545"))
    try:
        chain = _start_kept_chain(console, port, Path.cwd() / ".nespay" / "anvil" / "state.json")
    except sandbox.SandboxError as error:
        console.print(f"local chain: off ({error})")
        return None

    async def register() -> list[str]:
        overrides = {"database_url": env["DATABASE_URL"]} if "DATABASE_URL" in env else {}
        db = Database(load_settings(**overrides))
        try:
            return await sandbox.prepare_local_chain(db, chain)
        finally:
            await db.dispose()

    try:
        said = asyncio.run(register())
    except BaseException:
        chain.stop()
        raise
    for line in said:
        console.print(line)
    console.print(f"local chain: {chain.url} (network `local`, token TUSD at {chain.token})")
    return chain


def _start_kept_chain(console: Console, port: int, state: Path) -> Any:
    """anvil with its state file; one it cannot read (cut short by a kill during a save) is
    kept aside and a new chain starts (`prepare_local_chain` then forgets the old cursor)."""
    from nespay import sandbox

    try:
        return sandbox.start_chain(port, block_time=1, state=state)
    except sandbox.SandboxError as error:
        if not state.exists() or "--state" not in str(error):
            raise
    aside = state.with_name(f"state-unreadable-{int(time.time())}.json")
    state.rename(aside)
    console.print(f"local chain: its saved state could not be read (kept as {aside}); a new chain")
    return sandbox.start_chain(port, block_time=1, state=state)


def _serve_all(console: Console, env: dict[str, str]) -> None:
    settings = load_settings()
    children = {
        name: subprocess.Popen(_nespay("serve", name), env=env)
        for name in ("api", "webhook", "jobs")
    }
    ports = {"api": settings.api_port, "webhook": settings.webhook_port, "jobs": settings.job_port}
    prefix = settings.public_api_prefix
    for name, port in ports.items():
        console.print(f"{name:<8} http://localhost:{port}/{prefix}/health")
    if settings.swagger_enable:
        console.print(f"swagger  http://localhost:{settings.api_port}/api")
    console.print(
        "In another terminal, in this folder: `./nespay merchants create --name … --email …` "
        "(the CLI finds this stack by itself); see README.md."
    )
    console.print("Ctrl-C stops everything.")
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping and all(child.poll() is None for child in children.values()):
            time.sleep(0.5)
    finally:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children.values():
            try:
                child.wait(timeout=25)
            except subprocess.TimeoutExpired:
                child.kill()
    failed = [name for name, child in children.items() if child.returncode not in (0, -15, None)]
    if failed and not stopping:
        console.print(f"[red]error:[/red] {', '.join(failed)} stopped; see its log above")
        raise SystemExit(1)
