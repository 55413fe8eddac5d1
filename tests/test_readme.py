"""The README's commands, exactly as printed, in a new terminal against a running `nespay dev`.

Every fenced bash block after the two commands runs, in order, as one script in a fresh shell:
a new environment (no DATABASE_URL, a PATH without ~/.local/bin or .venv/bin), in a copy of
the checkout's folder where `nespay dev` (what `./run` ends with) runs. A block the machine
running the tests cannot run is marked in the README, on the line before its fence, with
`<!-- not run by tests/test_readme.py: reason -->`, and listed in NOT_RUN below.

The stack uses the README's ports (8000-8002, 8545), so it runs in a network namespace of its
own when the machine allows one (root, or user namespaces), whatever else listens there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys

import pytest

from tests.fixtures.processes import ROOT

README = ROOT / "README.md"
MARKER = re.compile(r"<!-- not run by tests/test_readme\.py: (.+?) -->")
NOT_RUN: list[str] = []  # the reasons of the blocks marked in the README; none today
FRESH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def readme_blocks(text: str) -> tuple[list[str], list[str]]:
    """(the bash blocks after the two commands' block, the reasons of those marked not run)."""
    lines = text[text.index("## Two commands") :].splitlines()
    blocks: list[tuple[str | None, str]] = []
    index = 0
    while index < len(lines):
        if lines[index].strip() == "```bash":
            end = lines.index("```", index + 1)
            marker = MARKER.search(lines[index - 1]) if index else None
            blocks.append((marker.group(1) if marker else None, "\n".join(lines[index + 1 : end])))
            index = end
        index += 1
    after_two_commands = blocks[1:]
    run = [body for reason, body in after_two_commands if reason is None]
    skipped = [reason for reason, _ in after_two_commands if reason is not None]
    return run, skipped


def namespace_prefix() -> list[str] | None:
    """How to run in a network namespace of our own here, or None if the machine cannot."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return None
    prefix = (
        ["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "--map-current-user", "--net"]
    )
    probe = subprocess.run([*prefix, "ip", "link", "set", "lo", "up"], capture_output=True)
    return prefix if probe.returncode == 0 else None


def ports_free(ports: tuple[int, ...]) -> bool:
    for port in ports:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def test_the_readme_blocks_are_found_and_only_the_listed_ones_are_not_run():
    run, skipped = readme_blocks(README.read_text())
    assert skipped == NOT_RUN
    assert any("./nespay merchants create" in block for block in run)
    assert any("./nespay sandbox pay" in block for block in run)
    assert any("/api/v1/health" in block for block in run)
    assert not any("uv run" in block for block in run), "a new terminal may not find uv"


@pytest.mark.timeout(600)
def test_the_readmes_commands_work_verbatim_in_a_new_terminal(tmp_path):
    prefix = namespace_prefix()
    if prefix is None and not ports_free((8000, 8001, 8002, 8545)):
        pytest.fail(
            "the README's ports 8000-8002/8545 are taken and no network namespace can be made "
            "here (`ip netns add` needs root and iproute2): free the ports and run again"
        )
    run, _ = readme_blocks(README.read_text())
    folder = tmp_path / "checkout"
    folder.mkdir()
    shutil.copy(ROOT / "nespay", folder / "nespay")
    (folder / ".venv").symlink_to(ROOT / ".venv")
    script = tmp_path / "readme.sh"
    script.write_text("\n".join(run) + "\n")
    home = tmp_path / "home"
    home.mkdir()
    # /var/tmp: the unprivileged postgres user (as root) cannot enter pytest's tmp dirs.
    cluster = f"/var/tmp/nespay-readme-pg-{os.getpid()}"
    spec = {
        "folder": str(folder),
        "script": str(script),
        "lo_up": prefix is not None,
        "dev_env": {
            "PATH": os.environ["PATH"],
            "HOME": str(home),
            "NESPAY_DEV_PG_DIR": cluster,
            "LOG_LEVEL": "warning",
            "COLUMNS": "250",
        },
        "shell_env": {"PATH": FRESH_PATH, "HOME": str(home), "LANG": "C.UTF-8", "TERM": "dumb"},
    }
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    try:
        driver = subprocess.run(
            [*(prefix or []), sys.executable, "-m", "tests.fixtures.readme_stack", str(spec_path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=540,
        )
    finally:
        shutil.rmtree(cluster, ignore_errors=True)
    assert driver.returncode == 0, driver.stderr[-3000:]
    result = json.loads(driver.stdout.strip().splitlines()[-1])
    shown = f"{result.get('stdout', '')}\n{result.get('stderr', '')}\n{result['dev_log']}"
    assert "error" not in result, result["error"] + "\n" + shown[-5000:]
    assert result["returncode"] == 0, shown[-5000:]
    out = result["stdout"]
    states = [line.split("→ ")[1].split(" ")[0] for line in out.splitlines() if "  → " in line]
    assert states == ["pending", "paid", "confirmed"], out
    # curl prints no newline: the invoice's JSON runs into the health checks' answers
    invoice, _ = json.JSONDecoder().raw_decode(out[out.index('{"id":"inv_') :])
    assert invoice["status"] == "confirmed" and invoice["amount_paid"] == "25"
    assert out.count('"status":"ok"') == 3  # the three health checks
    assert result["swagger"] == [200, True]  # Swagger UI at /api in development
