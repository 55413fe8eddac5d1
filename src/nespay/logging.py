"""Structured JSON logs on stdout, with the request/correlation id in every line.

Everything goes through the standard library's root logger, so the shipping handlers
(`nespay.logshipping`: OTLP/HTTP and Loki) see the same records as stdout.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog

from nespay.config import Settings
from nespay.kit.urls import mask_urls_in

_SECRET_KEYS = (
    "password",
    "secret",
    "token",
    "api_key",
    "authorization",
    "private_key",
    "master_key",
)


def _serialize(obj: Any, **kwargs: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def _drop_color_message(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    event.pop("color_message", None)
    return event


def redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Belt and braces: a field whose name says it is secret is never written out."""
    for field in list(event):
        lowered = field.lower()
        secret = lowered != "event" and any(word in lowered for word in _SECRET_KEYS)
        if secret and not lowered.endswith(("_id", "_count", "_version")):
            event[field] = "[redacted]"
    return event


def mask_urls(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """No URL is written with its key: RPC URLs carry provider keys in the path or query,
    and an error or traceback may quote one (`nespay.kit.urls`). A string without `://`
    costs one substring test."""
    for field, value in event.items():
        if isinstance(value, str) and "://" in value:
            event[field] = mask_urls_in(value)
    return event


SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
    _drop_color_message,
    redact,
]


def configure_logging(settings: Settings, process: str) -> None:
    """Configure structlog and the root logger once per process."""
    level = getattr(logging, settings.log_level.upper())
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *SHARED_PROCESSORS,
            structlog.processors.format_exc_info,
            mask_urls,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(process=process)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=SHARED_PROCESSORS,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            mask_urls,  # records of other libraries' loggers (their tracebacks included)
            structlog.processors.JSONRenderer(serializer=_serialize),
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for existing in list(root.handlers):
        if isinstance(existing, logging.StreamHandler) and getattr(existing, "_nespay", False):
            root.removeHandler(existing)
    handler._nespay = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # we write our own access line
    for noisy in ("aiormq", "aio_pika", "httpx", "httpcore", "sqlalchemy.engine"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
