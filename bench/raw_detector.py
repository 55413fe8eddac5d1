"""The raw baseline of detection latency: the least a polling detector must do, by hand.

Every `--poll-ms`: `eth_blockNumber`; on a new head, `eth_getLogs` of the token's Transfer logs
over the new blocks, recipients decoded by hand, matched against invoice_options with one
indexed `= ANY($1)` query (as Nespay's scanner matches), and one row per match written to
`bench_detections` (`detected_at` = the database clock, like Nespay's `paid_at`). No lease, no
reorg check, no payments, no invoice state. Runs as its own process next to `nespay serve jobs`
during bench_detection.

`python -m bench.raw_detector --rpc URL --dsn DSN --token 0x… --poll-ms 100`
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

import asyncpg
import httpx
import orjson

TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
TABLE = """
CREATE TABLE IF NOT EXISTS bench_detections (
    address text NOT NULL,
    block_number bigint NOT NULL,
    poll_ms integer NOT NULL,
    detected_at timestamptz NOT NULL DEFAULT now()
)
"""
MATCH = """
SELECT address FROM invoice_options
WHERE chain_family = 'evm' AND network_code = 'local' AND address = ANY($1::text[])
"""
RECORD = "INSERT INTO bench_detections (address, block_number, poll_ms) VALUES ($1, $2, $3)"


async def rpc(http: httpx.AsyncClient, url: str, method: str, params: list) -> object:
    body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    response = await http.post(url, content=body, headers={"content-type": "application/json"})
    return orjson.loads(response.content)["result"]


async def detect(url: str, dsn: str, token: str, poll_ms: int, stop: asyncio.Event) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    await pool.execute(TABLE)
    async with httpx.AsyncClient(timeout=10) as http:
        last = int(await rpc(http, url, "eth_blockNumber", []), 16)  # type: ignore[arg-type]
        while not stop.is_set():
            head = int(await rpc(http, url, "eth_blockNumber", []), 16)  # type: ignore[arg-type]
            if head > last:
                logs = await rpc(
                    http,
                    url,
                    "eth_getLogs",
                    [
                        {
                            "fromBlock": hex(last + 1),
                            "toBlock": hex(head),
                            "address": [token],
                            "topics": [TRANSFER_TOPIC],
                        }
                    ],  # fmt: skip
                )
                seen = {
                    "0x" + entry["topics"][2][-40:]: int(entry["blockNumber"], 16)
                    for entry in logs  # type: ignore[union-attr]
                    if len(entry["topics"]) == 3
                }
                if seen:
                    for row in await pool.fetch(MATCH, list(seen)):
                        await pool.execute(RECORD, row["address"], seen[row["address"]], poll_ms)
                last = head
                continue  # look again at once: more blocks may be waiting
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_ms / 1000)
    await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rpc", required=True)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--poll-ms", type=int, required=True)
    args = parser.parse_args()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await detect(args.rpc, args.dsn, args.token.lower(), args.poll_ms, stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
