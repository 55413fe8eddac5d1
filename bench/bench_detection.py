"""Detection latency: from a block's arrival to its payment's invoice being `paid` in the
database, for Nespay's jobs process and for a raw polling detector, side by side.

Setup: an anvil of its own with `--block-time 1` (`start_anvil(block_time=1)`), a test token
registered as USDT on the seeded `local` network (`nespay currencies add`, `nespay networks
set-rpc`, `nespay networks enable`), a merchant from `nespay merchants create`, and
`nespay serve api` to create the invoices through (`POST /api/v1/invoices`).

Per poll interval (`SCANNER_POLL_INTERVAL_MS`, 100 and 50 by default), round after round:
`nespay serve jobs` (its scanner on) and `bench.raw_detector` (the baseline: eth_blockNumber
polling at the same interval, eth_getLogs, one indexed match query, one insert) run together;
N/rounds invoices are created, then paid one per block: right after a new head arrives, one
exact 10 USDT transfer, which the next block carries.

Clocks: the head's arrival is taken from this process's own `eth_subscribe newHeads` websocket
(anvil serves ws on its http port); `paid` is the invoice's `paid_at` (the database's clock at
the start of the scanner's transaction that recorded the payment; the commit follows a few ms
later); the baseline's is `bench_detections.detected_at`. Same machine, same clock.
Goal: Nespay's p95 at most 300 ms.

`.venv/bin/python -m bench.bench_detection [--invoices 40 --polls 100,50 --rounds 2]`
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import asyncpg
import httpx

from bench import chain, harness
from bench.chain import AMOUNT, Chain
from bench.harness import ScratchDatabase, Server

BODY = {"amount": "10", "currency": "USDT", "network": "local"}
HEALTH = "/api/v1/health"


class Heads:
    """`eth_subscribe newHeads` in a thread of its own: block number → arrival (epoch s)."""

    def __init__(self, ws_url: str) -> None:
        self.ws_url = ws_url
        self.arrived: dict[int, float] = {}
        self.latest = -1
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Heads:
        self._thread.start()
        if not self._ready.wait(15):
            raise SystemExit("no newHeads subscription")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    async def _run(self) -> None:
        import websockets

        async with websockets.connect(self.ws_url, max_size=None) as ws:
            request = {"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}
            await ws.send(json.dumps(request))
            await ws.recv()  # the subscription id
            self._ready.set()
            while not self._stop.is_set():
                try:
                    message = await asyncio.wait_for(ws.recv(), 0.5)
                except TimeoutError:
                    continue
                now = time.time()
                head = json.loads(message)["params"]["result"]
                number = int(head["number"], 16)
                with self._cond:
                    self.arrived.setdefault(number, now)
                    self.latest = max(self.latest, number)
                    self._cond.notify_all()

    def wait_after(self, number: int, timeout: float = 5.0) -> int:
        """Block until a head above `number` arrives; its number."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.latest > number, timeout):
                raise SystemExit(f"no new head after {number} within {timeout}s")
            return self.latest


@dataclass
class Interval:
    poll_ms: int
    payments: list[tuple[str, str, str]] = field(default_factory=list)  # invoice, address, tx
    jobs_cpu_s: float = 0.0
    raw_cpu_s: float = 0.0
    blocks: int = 0
    nespay_ms: list[float] = field(default_factory=list)
    raw_ms: list[float] = field(default_factory=list)


def create_invoices(api: Server, key: str, count: int) -> list[tuple[str, str]]:
    """(invoice id, deposit address) of `count` new invoices, through the API."""
    made = []
    with httpx.Client(base_url=f"http://127.0.0.1:{api.port}", timeout=30) as http:
        for _ in range(count):
            answer = http.post("/api/v1/invoices", json=BODY, headers={"X-Api-Key": key})
            if answer.status_code != 201:
                raise SystemExit(f"invoice creation failed: {answer.status_code} {answer.text}")
            body = answer.json()
            made.append((body["id"], body["payment_options"][0]["address"].lower()))
    return made


async def _cursor(db: ScratchDatabase) -> int:
    conn = await asyncpg.connect(db.dsn)
    try:
        return (
            await conn.fetchval(
                "SELECT block_number FROM chain_cursors WHERE network_code = 'local'"
            )
            or -1
        )
    finally:
        await conn.close()


async def _paid(db: ScratchDatabase, ids: list[str]) -> int:
    conn = await asyncpg.connect(db.dsn)
    try:
        return await conn.fetchval(
            "SELECT count(*) FROM invoices WHERE id = ANY($1) AND paid_at IS NOT NULL", ids
        )
    finally:
        await conn.close()


def wait_until(check, what: str, timeout: float) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def raw_detector(db: ScratchDatabase, node: Chain, poll_ms: int) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        [
            sys.executable,
            "-m",
            "bench.raw_detector",
            "--rpc",
            node.url,
            "--dsn",
            db.dsn,
            "--token",
            node.token,
            "--poll-ms",
            str(poll_ms),
        ],  # fmt: skip
        cwd=harness.REPO,
    )
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)


def ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def measure(
    db: ScratchDatabase, node: Chain, heads: Heads, api: Server, key: str, result: Interval,
    count: int,
) -> None:  # fmt: skip
    from nespay.chains import localchain

    env = {"SCANNER_ENABLED": "true", "SCANNER_POLL_INTERVAL_MS": str(result.poll_ms)}
    jobs = harness.nespay_server(f"nespay jobs ({result.poll_ms} ms)", "jobs", HEALTH, db, env)
    with harness.running([jobs]), raw_detector(db, node, result.poll_ms) as raw:
        head = heads.latest
        wait_until(lambda: asyncio.run(_cursor(db)) >= head, "the scanner to reach the head", 60)
        made = create_invoices(api, key, count)
        jobs_before, raw_before = jobs.cpu_ticks(), ticks(raw.pid)
        first = heads.latest
        number = first
        for invoice_id, address in made:
            number = heads.wait_after(number)
            tx = localchain.transfer_token(node.url, node.token, address, AMOUNT, wait=False)
            result.payments.append((invoice_id, address, tx))
        ids = [invoice_id for invoice_id, _ in made]
        wait_until(lambda: asyncio.run(_paid(db, ids)) == len(ids), "every invoice paid", 30)
        result.blocks += heads.latest - first
        result.jobs_cpu_s += (jobs.cpu_ticks() - jobs_before) * harness.TICK_US / 1e6
        result.raw_cpu_s += (ticks(raw.pid) - raw_before) * harness.TICK_US / 1e6


async def latencies(db: ScratchDatabase, node: Chain, heads: Heads, result: Interval) -> None:
    from nespay.chains import localchain

    conn = await asyncpg.connect(db.dsn)
    try:
        for invoice_id, address, tx in result.payments:
            receipt = localchain.wait_for_receipt(node.url, tx)
            arrived = heads.arrived[int(receipt["blockNumber"], 16)]
            paid_at = await conn.fetchval("SELECT paid_at FROM invoices WHERE id = $1", invoice_id)
            detected = await conn.fetchval(
                "SELECT min(detected_at) FROM bench_detections WHERE address = $1 AND poll_ms = $2",
                address,
                result.poll_ms,
            )
            result.nespay_ms.append((paid_at.timestamp() - arrived) * 1000)
            if detected is not None:
                result.raw_ms.append((detected.timestamp() - arrived) * 1000)
            else:
                block = int(receipt["blockNumber"], 16)
                print(f"  note: the raw detector has no row for {address} (block {block})")
    finally:
        await conn.close()


def run(args: argparse.Namespace) -> str:
    polls = [int(p) for p in args.polls.split(",")]
    per_round = -(-args.invoices // args.rounds)
    print(
        f"detection: polls {polls} ms, {per_round * args.rounds} invoices per poll interval, "
        f"{args.rounds} round(s), anvil --block-time 1"
    )
    results = {p: Interval(p) for p in polls}
    with (
        harness.scratch_database("_detect") as db,
        chain.anvil(block_time=1) as node,
        Heads(node.ws_url) as heads,
    ):
        chain.register(db, node)
        key = harness.create_merchant(db, "Bench Detection")
        api = harness.nespay_server("nespay api", "api", HEALTH, db)
        with harness.running([api]):
            for round_no in range(1, args.rounds + 1):
                for poll in polls:
                    measure(db, node, heads, api, key, results[poll], per_round)
                    print(f"  round {round_no}: poll {poll} ms, {per_round} payments done")
        for result in results.values():
            asyncio.run(latencies(db, node, heads, result))
    return report(args, results)


def report(args: argparse.Namespace, results: dict[int, Interval]) -> str:
    lines = [
        "\n## detection latency\n",
        "block arrival (own newHeads websocket) → invoice `paid_at`; anvil --block-time 1, one "
        f"payment per block, {args.rounds} round(s)",
        chain.machine_line(),
        "",
        "| poll ms | side | n | p50 ms | p95 ms | max ms | CPU ms per block "
        "| p95 ratio nespay/raw |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for poll, result in results.items():
        for label, values, cpu in (
            ("nespay serve jobs (scanner)", result.nespay_ms, result.jobs_cpu_s),
            ("raw detector", result.raw_ms, result.raw_cpu_s),
        ):
            if not values:
                lines.append(f"| {poll} | {label} | 0 | — | — | — | — | — |")
                continue
            ratio = (
                f"{chain.percentile(result.nespay_ms, 95) / chain.percentile(values, 95):.2f}×"
                if label == "raw detector"
                else "—"
            )
            lines.append(
                f"| {poll} | {label} | {len(values)} | {chain.percentile(values, 50):.0f} "
                f"| {chain.percentile(values, 95):.0f} | {max(values):.0f} "
                f"| {cpu / max(result.blocks, 1) * 1000:.1f} | {ratio} |"
            )
    for poll, result in results.items():
        p95 = chain.percentile(result.nespay_ms, 95)
        lines.append(
            f"\npoll {poll} ms: Nespay p95 {p95:.0f} ms — goal ≤ 300 ms "
            f"{'met' if p95 <= 300 else 'missed'}"
        )
    return "\n".join(lines)


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=40, help="per poll interval")
    parser.add_argument("--polls", default="100,50", help="SCANNER_POLL_INTERVAL_MS values")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds")
    return parser


def main() -> None:
    print(run(argument_parser().parse_args()))


if __name__ == "__main__":
    main()
