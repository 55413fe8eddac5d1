"""One error shape everywhere: `{"error":{"code","message","request_id"[,"fields"]}}`.

Domain errors subclass `NespayError` beside their service, with a status and a code.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from nespay.kit.responses import JsonResponse
from nespay.requestid import current_request_id

log = structlog.get_logger("nespay.errors")


class NespayError(Exception):
    status_code = 400
    code = "bad_request"
    message = "The request could not be processed."

    def __init__(
        self, message: str | None = None, *, headers: dict[str, str] | None = None
    ) -> None:
        self.message = message or self.message
        self.headers = headers
        super().__init__(self.message)


class NotFound(NespayError):
    status_code = 404
    code = "not_found"
    message = "Not found."


class Conflict(NespayError):
    status_code = 409
    code = "conflict"
    message = "The request conflicts with the current state."


class ServiceUnavailable(NespayError):
    status_code = 503
    code = "service_unavailable"
    message = "A dependency is unavailable; try again shortly."


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {
        "error": {"code": code, "message": message, "request_id": current_request_id(), **extra}
    }


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JsonResponse:
    return JsonResponse(error_body(code, message, **extra), status_code=status, headers=headers)


async def _nespay_error(request: Request, exc: Exception) -> JsonResponse:
    assert isinstance(exc, NespayError)
    log.info("request_refused", status=exc.status_code, code=exc.code, path=request.url.path)
    return error_response(exc.status_code, exc.code, exc.message, exc.headers)


async def _http_error(request: Request, exc: Exception) -> JsonResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if exc.status_code == 404 and message == "Not Found":
        message = f"No route for {request.method} {request.url.path}."
    headers = getattr(exc, "headers", None)
    if exc.status_code == 405:
        allowed = allowed_methods(request)
        message = (
            f"{request.method} is not allowed on {request.url.path}; use {', '.join(allowed)}."
        )
        headers = {**(headers or {}), "Allow": ", ".join(allowed)}
    if exc.status_code == 400 and message == "There was an error parsing the body":
        # FastAPI's answer to a JSON body that is not UTF-8: the same 422 as malformed JSON.
        return _refused_body(request, "the body could not be read: send JSON encoded as UTF-8")
    log.info("request_refused", status=exc.status_code, code=code, path=request.url.path)
    return error_response(exc.status_code, code, message, headers)


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route answers on this path (RFC 9110 §15.5.6: a 405's `Allow` lists
    them all). Starlette names only the first matching route's, and a path is often served
    by several routes (GET and POST /invoices are two)."""
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in request.app.router.routes
        )
    ]


def _refused_body(request: Request, message: str) -> JsonResponse:
    log.info("request_invalid", path=request.url.path, fields=["body"])
    return error_response(
        422,
        "validation_error",
        "The request has invalid or missing fields.",
        fields=[{"field": "body", "message": message, "type": "json_invalid"}],
    )


async def _validation_error(request: Request, exc: Exception) -> JsonResponse:
    assert isinstance(exc, RequestValidationError)
    fields = [
        {
            "field": ".".join(str(part) for part in item["loc"] if part != "body") or "body",
            "message": item["msg"],
            "type": item["type"],
        }
        for item in exc.errors()
    ]
    log.info("request_invalid", path=request.url.path, fields=[f["field"] for f in fields])
    return error_response(
        422, "validation_error", "The request has invalid or missing fields.", fields=fields
    )


INTERNAL_ERROR_MESSAGE = "Something went wrong on our side; quote the request id to support."


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(NespayError, _nespay_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    # Unhandled exceptions are rendered by RequestIdMiddleware (outermost of ours), so the
    # 500 still carries the request id in its header, body and log line.
