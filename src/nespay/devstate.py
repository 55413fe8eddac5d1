"""What a running `nespay dev` tells the other commands run in its folder: `.nespay/dev.json`.

`nespay dev` writes the file once its database and chain are up (its pid, the private
PostgreSQL cluster's URL, the api's and the chain's URLs) and removes it when it stops. The
settings loader reads it as its lowest-priority source, below the environment and `.env`, so
`./nespay merchants create …` in a new terminal finds the private cluster without
DATABASE_URL. A file left by a stack that is gone (killed, machine rebooted) is never used
silently: loading settings stops with one line saying how to start the stack again.

Only the private cluster's URL is written (trust authentication on loopback, no password); a
DATABASE_URL the developer configured stays where they put it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

FILE = Path(".nespay") / "dev.json"


class DevStackStopped(Exception):
    """The folder's dev stack file names a process that is not running any more."""


@dataclass(frozen=True)
class DevStack:
    pid: int
    started_at: str
    api_url: str
    database_url: str | None = None  # the private cluster's; None when DATABASE_URL was set
    chain_url: str | None = None


def path(folder: Path | None = None) -> Path:
    return (folder or Path.cwd()) / FILE


def write(stack: DevStack, folder: Path | None = None) -> None:
    """Atomically (a reader never sees half a file), readable by its owner only."""
    target = path(folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".json.partial")
    partial.write_text(json.dumps(asdict(stack), indent=2) + "\n")
    partial.chmod(0o600)
    os.replace(partial, target)


def read(folder: Path | None = None) -> DevStack | None:
    try:
        values = json.loads(path(folder).read_text())
        return DevStack(**values)
    except (OSError, ValueError, TypeError):
        return None  # no file, or not one we wrote


def remove(pid: int, folder: Path | None = None) -> None:
    """Remove the file if it is `pid`'s (a second stack's file is left alone)."""
    stack = read(folder)
    if stack is not None and stack.pid == pid:
        path(folder).unlink(missing_ok=True)


def alive(pid: int) -> bool:
    """Whether `pid` runs and (where /proc tells) is a nespay process, not a reused pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        return b"nespay" in cmdline.read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no /proc here: trust the signal probe
    except OSError:
        return True


def running(folder: Path | None = None) -> DevStack | None:
    """The folder's running dev stack, if there is one."""
    stack = read(folder)
    return stack if stack is not None and alive(stack.pid) else None


def database_url(folder: Path | None = None) -> str | None:
    """The running dev stack's private database, or None when the folder has no dev stack
    (or it uses a configured DATABASE_URL); DevStackStopped when its stack is gone."""
    stack = read(folder)
    if stack is None or stack.database_url is None:
        return None
    if not alive(stack.pid):
        raise DevStackStopped(
            f"not set, and the dev stack recorded in {FILE} (pid {stack.pid}, started "
            f"{stack.started_at}) is not running: start it with `./run` in this folder (or set "
            "DATABASE_URL)"
        )
    return stack.database_url


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
