"""What the inbox tests share: provider secrets, signing as each provider does, the real
webhook app (in-process over HTTP, or as a `nespay serve webhook` subprocess), row reads."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import text
from standardwebhooks import Webhook as StandardWebhook

from nespay.apps import webhook
from nespay.config import Settings
from nespay.db import Database
from nespay.inbox.handlers import handlers
from tests.fixtures.app import app_client
from tests.fixtures.database import make_settings

RAIN_KEY = "rain-test-api-key-7f3a"
PRIVY_SECRET = "whsec_" + base64.b64encode(b"privy-test-signing-secret-32byte").decode()
INTRAJASA_TOKEN = "intrajasa-shared-token-91c2"
HOOKS = "/api/v1/webhooks"
# The test client's address (httpx's ASGI transport) and a proxy-forwarded foreign one.
FOREIGN = {"x-forwarded-for": "203.0.113.77"}


def inbox_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "rain_api_key": RAIN_KEY,
        "privy_webhook_secret": PRIVY_SECRET,
        "webhook_intrajasa_token": INTRAJASA_TOKEN,
        "webhook_rain_allowed_ips": ["34.67.3.60", "127.0.0.1"],
        "webhook_allowed_ips": ["127.0.0.0/8"],
        # The test client reaches the app as 127.0.0.1: trusted as a proxy, so a request
        # with X-Forwarded-For comes from the address it names.
        "trusted_proxies": ["127.0.0.1/32"],
        "webhook_sweep_interval_s": 1,
        "webhook_retry_schedule_s": ["1"],
        "webhook_max_attempts": 3,
    }
    values.update(overrides)
    return make_settings(database_url, **values)


def settings_env(**extra: str) -> dict[str, str]:
    return {
        "RAIN_API_KEY": RAIN_KEY,
        "PRIVY_WEBHOOK_SECRET": PRIVY_SECRET,
        "WEBHOOK_INTRAJASA_TOKEN": INTRAJASA_TOKEN,
        "WEBHOOK_RAIN_ALLOWED_IPS": "127.0.0.1",
        "WEBHOOK_ALLOWED_IPS": "127.0.0.1",
        "WEBHOOK_SWEEP_INTERVAL_S": "1",
        **extra,
    }


@asynccontextmanager
async def webhook_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(webhook.create_app, settings) as (_, client):
        yield client


# Rain events the inbox tests send: one no domain handles (cards handle card.* and user.*).
RAIN_KIND = "dispute.updated"


def rain_request(event_id: str = "evt-rain-1", kind: str = RAIN_KIND, **body: Any):
    resource, action = kind.split(".", 1)
    raw = json.dumps(
        {"id": event_id, "resource": resource, "action": action, "body": body or {"x": 1}}
    ).encode()
    return raw, {"signature": rain_signature(raw), "content-type": "application/json"}


def rain_signature(raw: bytes, key: str = RAIN_KEY) -> str:
    return hmac.new(key.encode(), raw, hashlib.sha256).hexdigest()


def privy_request(msg_id: str = "msg_privy_1", kind: str = "user.created", when=None):
    raw = json.dumps({"type": kind, "data": {"id": "did:privy:abc"}}).encode()
    return raw, privy_headers(raw, msg_id, when=when)


def privy_headers(raw: bytes, msg_id: str, *, secret: str = PRIVY_SECRET, when=None):
    when = when or datetime.now(UTC)
    signature = StandardWebhook(secret).sign(msg_id, when, raw.decode(errors="replace"))
    return {
        "svix-id": msg_id,
        "svix-timestamp": str(int(when.timestamp())),
        "svix-signature": signature,
        "content-type": "application/json",
    }


def intrajasa_request(reference: str = "TRX-0001", token: str = INTRAJASA_TOKEN):
    raw = json.dumps(
        {"merchantId": "M1", "transactionId": reference, "vaNumber": "88001234", "status": "paid"}
    ).encode()
    return raw, {"x-callback-token": token, "content-type": "application/json"}


REQUESTS = {
    "rain": lambda ref: rain_request(f"evt-{ref}"),
    "privy": lambda ref: privy_request(f"msg_{ref}"),
    "intrajasa": lambda ref: intrajasa_request(f"TRX-{ref}"),
}
EVENT_TYPES = {"rain": RAIN_KIND, "privy": "user.created", "intrajasa": "va.payment"}


async def rows(database: Database, where: str = "true", **params: Any) -> list[Any]:
    async with database.engine.connect() as conn:
        query = f"SELECT * FROM provider_webhooks WHERE {where} ORDER BY id"  # noqa: S608
        return list((await conn.execute(text(query), params)).mappings())


class Recorder:
    """A handler registered for a (provider, event type) for one test: records each call,
    raises while `failing` is set."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.failing = False

    async def __call__(self, session: Any, stored: Any) -> None:
        self.calls.append(stored.id)
        if self.failing:
            raise RuntimeError("the handler's dependency is down")


@asynccontextmanager
async def recording(provider: str, event_type: str) -> AsyncIterator[Recorder]:
    """The recorder stands in for the registered handler (Intrajasa's `va.payment` has one)
    for the test, which is about the inbox, not what the handler does."""
    recorder = Recorder()
    # In place of the domain's own handler for the test, if there is one (put back after).
    own = handlers.get(provider, event_type)
    handlers.remove(provider, event_type)
    handlers.add(provider, event_type, recorder)
    try:
        yield recorder
    finally:
        handlers.remove(provider, event_type)
        if own is not None:
            handlers.add(provider, event_type, own)
