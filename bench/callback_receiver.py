"""The merchant's receiver for `bench_callbacks.py`: a bare ASGI callable under uvicorn
(uvloop, httptools; one process of its own), so that the receiver is never what limits a run.

Every POST (any path) is read to its end and answered `200 ok`; it counts, and keeps each
`webhook-id`'s first arrival (`time.time()` when the request reached the app, i.e. once its
headers were parsed). Read back over GET:

- `/_stats`: `{"hits": n, "distinct": n}`
- `/_arrivals`: `{webhook-id: epoch seconds}` (the lag phase reads it; it is reset first)
- `POST /_reset`: forget the arrivals (the hit counter keeps counting)

`uvicorn bench.callback_receiver:create_app --factory --lifespan off …`
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

OK = [(b"content-type", b"text/plain"), (b"content-length", b"2")]


def create_app() -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    hits = 0
    arrivals: dict[str, float] = {}

    async def answer(send: Send, body: bytes, kind: bytes = b"application/json") -> None:
        headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal hits
        at = time.time()
        if scope["method"] == "POST" and scope["path"] != "/_reset":
            more = True
            while more:
                more = (await receive()).get("more_body", False)
            hits += 1
            for name, value in scope["headers"]:
                if name == b"webhook-id":
                    arrivals.setdefault(value.decode(), at)
                    break
            await send({"type": "http.response.start", "status": 200, "headers": OK})
            await send({"type": "http.response.body", "body": b"ok"})
        elif scope["path"] == "/_stats":
            await answer(send, json.dumps({"hits": hits, "distinct": len(arrivals)}).encode())
        elif scope["path"] == "/_arrivals":
            await answer(send, json.dumps(arrivals).encode())
        elif scope["path"] == "/_reset":
            arrivals.clear()
            await answer(send, b"{}")
        else:
            await answer(send, b"not found", b"text/plain")

    return app
