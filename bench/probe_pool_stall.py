"""Reproduce the api's pool stall on invoice creation, small and deterministic (~35 s).

Not a benchmark: evidence for docs/benchmarks.md. The api app (`nespay.apps.api.create_app`)
runs in this process with a database pool of 2 (`DATABASE_POOL_SIZE=2`,
`DATABASE_MAX_OVERFLOW=0`) and its own redis-server for the rate-limit counters. One invoice is
created (the API key's `last_used_at` is set, the catalog is loaded); then the catalog cache is
expired, as it is every 5 s, and two invoices are created at once. Each request holds a pooled
connection from its key lookup on; the first to reach `runtime.catalog.get()` needs a third
one to reload the catalog, the other waits for the catalog lock: nothing moves until
SQLAlchemy's pool timeout (30 s) fails the reload with a 500. With the default pool (10 + 10)
the same happens whenever 20 creations are in flight at a catalog expiry — always, at 64
connections.

`.venv/bin/python -m bench.probe_pool_stall`
"""

from __future__ import annotations

import asyncio
import os
import time

import httpx

from bench import bench_invoices, harness


async def probe(db: harness.ScratchDatabase, key: str, redis: dict[str, str]) -> None:
    os.environ.update(
        {
            **harness.NESPAY_ENV,
            **bench_invoices.UNLIMITED,
            **redis,
            "DATABASE_URL": db.url,
            "DATABASE_POOL_SIZE": "2",
            "DATABASE_MAX_OVERFLOW": "0",
        }
    )
    from nespay.apps.api import create_app
    from nespay.config import Settings

    app = create_app(Settings(_env_file=None))  # type: ignore[call-arg]
    headers = {"X-Api-Key": key, "Content-Type": "application/json"}
    body = bench_invoices.BODY
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api", timeout=120
        ) as client,
    ):
        first = await client.post("/api/v1/invoices", content=body, headers=headers)
        print(f"one invoice alone: {first.status_code}")
        app.state.runtime.catalog.invalidate()  # what its 5 s TTL does
        began = time.monotonic()
        answers = await asyncio.gather(
            *(
                client.post(
                    "/api/v1/invoices", content=body, headers={**headers, "Idempotency-Key": k}
                )
                for k in ("probe-a", "probe-b")
            )
        )
        took = time.monotonic() - began
        print(f"two at once, pool of 2: {[a.status_code for a in answers]} after {took:.1f}s")
        for answer in answers:
            if answer.status_code != 201:
                print(f"  {answer.text[:200]}")


def main() -> None:
    with harness.scratch_database("_probe") as db, harness.redis_env() as redis:
        key = bench_invoices.prepare(db)
        asyncio.run(probe(db, key, redis))
    print("(the 500 is logged above with its traceback: catalog.get → engine.connect → QueuePool)")


if __name__ == "__main__":
    main()
