"""The raw baseline of `bench_callbacks.py`: aio-pika consumes a pre-filled queue and POSTs
each message's body with httpx to the receiver, then acks it. Nothing is read from or written
to a database, nothing is signed, nothing is retried (a non-2xx answer only counts as an error).

Concurrency like Nespay's jobs process: prefetch 1,600 (the consumer's 200 × 8 batches) and at
most 256 POSTs in flight (`CALLBACK_CONCURRENCY`'s default), one httpx client with the sender's
limits. Timed from the consume call to the last ack; prints one JSON line:
`{"count", "seconds", "cpu_s", "errors"}`.

`python -m bench.raw_callbacks --amqp URL --queue NAME --count N --url RECEIVER`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time

import aio_pika
import httpx


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def consume(args: argparse.Namespace) -> dict[str, float]:
    connection = await aio_pika.connect(args.amqp)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=args.prefetch)
    queue = await channel.get_queue(args.queue, ensure=False)
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(10.0),
        limits=httpx.Limits(max_connections=512, max_keepalive_connections=256),
        trust_env=False,
    )
    slots = asyncio.Semaphore(args.concurrency)
    finished = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()
    done = errors = 0

    async def handle(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal done, errors
        headers = {"content-type": "application/json", "webhook-id": message.message_id or ""}
        async with slots:
            try:
                answer = await client.post(args.url, content=message.body, headers=headers)
                errors += not answer.is_success
            except httpx.HTTPError:
                errors += 1
        await message.ack()
        done += 1
        if done >= args.count:
            finished.set()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        task = asyncio.create_task(handle(message))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    cpu_before, started = cpu_s(), time.perf_counter()
    await queue.consume(on_message)
    await asyncio.wait_for(finished.wait(), args.timeout)
    seconds, cpu = time.perf_counter() - started, cpu_s() - cpu_before
    await client.aclose()
    await connection.close()
    return {"count": done, "seconds": seconds, "cpu_s": cpu, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amqp", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefetch", type=int, default=1600)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    import uvloop

    # uvloop, as Nespay's processes run (uvicorn --loop uvloop).
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        print(json.dumps(runner.run(consume(args))), flush=True)


if __name__ == "__main__":
    main()
