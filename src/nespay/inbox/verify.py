"""Verification of incoming provider webhooks, as FastAPI dependencies: nothing reaches the
route (or the database) unless the source address, the size, the signature (or token) and
the JSON all pass. Each refusal is one `provider_webhook_refused` log line naming the
provider, the reason and the client address — never a secret, token or signature value.

Order: address (cheapest, before the body is read), size (while reading), signature over the
raw bytes, then JSON."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
import structlog
from fastapi import Request
from svix.webhooks import Webhook as SvixWebhook
from svix.webhooks import WebhookVerificationError

from nespay.auth.clientip import client_ip
from nespay.config import Settings
from nespay.inbox.errors import (
    BodyTooLarge,
    MalformedBody,
    NotConfigured,
    SignatureInvalid,
    SourceNotAllowed,
    TokenInvalid,
    WebhookRefused,
)
from nespay.kit.text import printable, unstorable

log = structlog.get_logger("nespay.inbox")

MAX_BODY_BYTES = 256 * 1024
# Kept with the row for handlers and operators; signatures and tokens never are.
KEPT_HEADERS = ("content-type", "user-agent", "svix-id", "svix-timestamp", "x-forwarded-for")
# Where Intrajasa's shared token may travel (its callback contract is not public; see
# docs/webhooks.md): this header, or `Authorization: Bearer <token>`.
INTRAJASA_TOKEN_HEADER = "x-callback-token"  # noqa: S105 - a header name
# Intrajasa's reference for the transaction a callback is about, first found wins.
INTRAJASA_REFERENCE_KEYS = ("transactionId", "transactionReference", "merchantRefCode", "vaNumber")


@dataclass(frozen=True)
class Received:
    """A verified webhook, ready to store."""

    provider: str
    external_id: str
    event_type: str
    body: bytes
    headers: dict[str, str]
    source_ip: str
    payload: dict[str, Any]


def _settings(request: Request) -> Settings:
    return request.app.state.runtime.settings


@lru_cache(maxsize=16)
def _networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def check_source(request: Request, settings: Settings, allowed: list[str]) -> str:
    """The client address (`X-Forwarded-For` believed only from `TRUSTED_PROXIES`), refused
    when IP validation is on and it is not in `allowed` (an empty list allows nobody)."""
    ip = client_ip(request, settings.trusted_proxies)
    if settings.webhook_enable_ip_validation and not _allowed(ip, tuple(allowed)):
        raise SourceNotAllowed()
    return ip


@lru_cache(maxsize=4096)
def _allowed(ip: str, allowed: tuple[str, ...]) -> bool:
    """Cached: a provider sends from a handful of addresses, each parsed once."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in _networks(allowed))


async def read_body(request: Request) -> bytes:
    """The raw body, refused past `MAX_BODY_BYTES` — by `Content-Length` before reading, or
    while reading a body sent without one."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BodyTooLarge()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyTooLarge()
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # noqa: SLF001 - later reads of the request see the same bytes
    return body


def parse_object(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise MalformedBody() from None
    if not isinstance(payload, dict):
        raise MalformedBody()
    return payload


def body_digest(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def external_id_of(value: Any, body: bytes) -> str:
    """The provider's id when it is a storable string of at most 200 characters, else the
    body's digest (stable, so a retried delivery of the same body is still a duplicate)."""
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        text = str(value)
        if 0 < len(text) <= 200 and not unstorable(text):
            return text
    return body_digest(body)


def event_type_of(value: Any) -> str:
    if isinstance(value, str) and value:
        return printable(value)[:100]
    return "unknown"


_KEPT = frozenset(name.encode() for name in KEPT_HEADERS)


def kept_headers(request: Request) -> dict[str, str]:
    """The first value of each kept header (one pass over the raw, lower-cased names)."""
    kept: dict[str, str] = {}
    for name, value in request.scope["headers"]:
        if name in _KEPT and (key := name.decode()) not in kept:
            kept[key] = printable(value.decode("latin-1"))[:500]
    return kept


def _refused(request: Request, provider: str, error: WebhookRefused) -> WebhookRefused:
    log.warning(
        "provider_webhook_refused",
        provider=provider,
        reason=error.code,
        status=error.status_code,
        client_ip=request.client.host if request.client else None,
        forwarded_for=printable(request.headers.get("x-forwarded-for", ""))[:200] or None,
    )
    return error


# --- Rain -------------------------------------------------------------------------------


def rain_signature_ok(key: bytes, body: bytes, signature: str) -> bool:
    """`signature` = lowercase hex HMAC-SHA256 of the raw body under the Rain API key."""
    expected = hmac.new(key, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.strip().encode("latin-1"))


async def verified_rain(request: Request) -> Received:
    settings = _settings(request)
    try:
        ip = check_source(
            request, settings, [*settings.webhook_rain_allowed_ips, *settings.webhook_allowed_ips]
        )
        body = await read_body(request)
        if settings.webhook_enable_signature_validation:
            if settings.rain_api_key is None:
                raise NotConfigured("RAIN_API_KEY is not configured; Rain webhooks are refused.")
            key = settings.rain_api_key.get_secret_value().encode()
            if not rain_signature_ok(key, body, request.headers.get("signature", "")):
                raise SignatureInvalid()
        payload = parse_object(body)
    except WebhookRefused as error:
        raise _refused(request, "rain", error) from None
    resource, action = payload.get("resource"), payload.get("action")
    kind = f"{resource}.{action}" if isinstance(resource, str) and isinstance(action, str) else None
    return Received(
        "rain",
        external_id_of(payload.get("id"), body),
        event_type_of(kind),
        body,
        kept_headers(request),
        ip,
        payload,
    )


# --- Intrajasa ---------------------------------------------------------------------------


def _intrajasa_token(request: Request) -> str:
    token = request.headers.get(INTRAJASA_TOKEN_HEADER)
    if token is None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        token = value if scheme.lower() == "bearer" else ""
    return token.strip()


async def verified_intrajasa(request: Request) -> Received:
    settings = _settings(request)
    try:
        ip = check_source(request, settings, settings.webhook_allowed_ips)
        if settings.webhook_enable_signature_validation:
            if settings.webhook_intrajasa_token is None:
                raise NotConfigured(
                    "WEBHOOK_INTRAJASA_TOKEN is not configured; Intrajasa callbacks are refused."
                )
            expected = settings.webhook_intrajasa_token.get_secret_value().encode()
            if not hmac.compare_digest(expected, _intrajasa_token(request).encode("latin-1")):
                raise TokenInvalid()
        body = await read_body(request)
        payload = parse_object(body)
    except WebhookRefused as error:
        raise _refused(request, "intrajasa", error) from None
    reference = next((payload[k] for k in INTRAJASA_REFERENCE_KEYS if payload.get(k)), None)
    return Received(
        "intrajasa",
        external_id_of(reference, body),
        event_type_of(payload.get("type") or "va.payment"),
        body,
        kept_headers(request),
        ip,
        payload,
    )


# --- Privy (Svix) -------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _svix(secret: str) -> SvixWebhook:
    return SvixWebhook(secret)


def privy_signature_ok(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    """Svix: `svix-signature` holds `v1,<base64 HMAC-SHA256("{svix-id}.{svix-timestamp}.{body}")>`
    under the base64-decoded `whsec_` secret; `svix-timestamp` within 5 minutes of now."""
    try:
        verifier = _svix(secret)
    except Exception:  # noqa: BLE001 - a secret that is not whsec_<base64>
        raise NotConfigured("PRIVY_WEBHOOK_SECRET is not a whsec_… secret.") from None
    try:
        verifier.verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


async def verified_privy(request: Request) -> Received:
    settings = _settings(request)
    try:
        ip = check_source(request, settings, settings.webhook_allowed_ips)
        body = await read_body(request)
        try:
            body.decode()  # Svix signs text: bytes that are not UTF-8 cannot be its body
        except UnicodeDecodeError:
            raise MalformedBody() from None
        if settings.webhook_enable_signature_validation:
            if settings.privy_webhook_secret is None:
                raise NotConfigured(
                    "PRIVY_WEBHOOK_SECRET is not configured; Privy webhooks are refused."
                )
            svix_headers = {
                name: request.headers.get(name, "")
                for name in ("svix-id", "svix-timestamp", "svix-signature")
            }
            secret = settings.privy_webhook_secret.get_secret_value()
            if not privy_signature_ok(secret, body, svix_headers):
                raise SignatureInvalid()
        payload = parse_object(body)
    except WebhookRefused as error:
        raise _refused(request, "privy", error) from None
    return Received(
        "privy",
        external_id_of(request.headers.get("svix-id"), body),
        event_type_of(payload.get("type")),
        body,
        kept_headers(request),
        ip,
        payload,
    )
