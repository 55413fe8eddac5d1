"""Request ids: taken from a well-formed incoming `x-request-id` or made, returned on every
response, bound into every log line of the request (and carried into the jobs it causes)."""

from __future__ import annotations

import logging
import re
import secrets
import time
from contextvars import ContextVar

import orjson
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
_VALID = re.compile(rb"^[A-Za-z0-9._:\-]{8,128}$")
log = structlog.get_logger("nespay.access")
_access = logging.getLogger("nespay.access")


def current_request_id() -> str | None:
    return _request_id.get()


class RequestIdMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware cost): id in, id out, one access log line."""

    def __init__(self, app: ASGIApp, *, access_log: bool = True) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        if incoming and _VALID.match(incoming):
            request_id = incoming.decode()
        else:
            request_id = secrets.token_hex(16)
        token = _request_id.set(request_id)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        header = request_id.encode()
        started = time.perf_counter()
        status = 500
        status_sent = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, status_sent
            if message["type"] == "http.response.start":
                status, status_sent = message["status"], True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", header)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as error:  # noqa: BLE001 - rendered in the one error shape
            # The traceback goes to our logs only; the client gets the id to quote.
            log.error("unhandled_exception", path=scope["path"], exc_info=error)
            if status_sent:
                raise
            status = 500
            await _internal_error(send, header)
        finally:
            # Checked first: with LOG_LEVEL above info, the line is not even built.
            if self.access_log and _access.isEnabledFor(logging.INFO):
                log.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                )
            structlog.contextvars.unbind_contextvars("request_id")
            _request_id.reset(token)


async def _internal_error(send: Send, request_id: bytes) -> None:
    from nespay.errors import INTERNAL_ERROR_MESSAGE

    body = orjson.dumps(
        {
            "error": {
                "code": "internal_error",
                "message": INTERNAL_ERROR_MESSAGE,
                "request_id": request_id.decode(),
            }
        }
    )
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id),
    ]
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": body})
