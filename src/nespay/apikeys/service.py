"""Issuing, authenticating and revoking API keys.

A key reads `npk_<prefix>_<secret>`: the prefix (12 base32 characters) finds the row through a
unique index; only SHA-256 of the whole key is stored (keys carry 240 random bits, so a fast
hash is enough) and compared in constant time. An unknown prefix still pays for one
comparison, so timing tells nothing about which prefixes exist.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from nespay.apikeys import repository
from nespay.apikeys.schemas import ApiKeyCreate
from nespay.audit.service import record
from nespay.auth.cache import Entry, MerchantSettings, mark_changed
from nespay.auth.principals import Actor, Principal
from nespay.db import Database
from nespay.errors import NespayError, NotFound
from nespay.kit.ids import new_id
from nespay.kit.pagination import fetch_size, split_page
from nespay.models import ApiKey

KEY_PATTERN = re.compile(r"^npk_([a-z2-7]{12})_([A-Za-z0-9_-]{40})$")
_DUMMY_HASH = hashlib.sha256(b"nespay:no-such-key").digest()
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiKeyMalformed(NespayError):
    status_code = 401
    code = "api_key_malformed"
    message = (
        "The X-Api-Key header does not look like a Nespay key (npk_…); check it was copied whole."
    )


class ApiKeyInvalid(NespayError):
    status_code = 401
    code = "api_key_invalid"
    message = "The API key is not valid."


class ApiKeyRevoked(NespayError):
    status_code = 401
    code = "api_key_revoked"
    message = "The API key was revoked; create a new one."


class ApiKeyExpired(NespayError):
    status_code = 401
    code = "api_key_expired"
    message = "The API key has expired; create a new one."


class MerchantSuspended(NespayError):
    status_code = 403
    code = "merchant_suspended"
    message = "This merchant is suspended; contact support."


class ScopesExceedCaller(NespayError):
    status_code = 403
    code = "scopes_not_allowed"
    message = "A key cannot be given scopes its creator does not have."


class ApiKeyNotFound(NotFound):
    code = "api_key_not_found"
    message = "No such API key."


def generate_key() -> tuple[str, str]:
    prefix = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(12))
    return prefix, f"npk_{prefix}_{secrets.token_urlsafe(30)}"


def _hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def prefix_of(raw_key: str) -> str:
    match = KEY_PATTERN.match(raw_key)
    if match is None:
        raise ApiKeyMalformed()
    return match.group(1)


async def authenticate(db: Database, raw_key: str, generation: bytes | None) -> Entry:
    """Check a key against its row (one query with its merchant); the cache entry it makes is
    tagged with `generation`, the auth cache's generation known before the read."""
    async with db.driver() as conn:
        found = await repository.find_by_prefix(conn, prefix_of(raw_key))
    stored = found.secret_hash if found else _DUMMY_HASH
    if not hmac.compare_digest(stored, _hash(raw_key)) or found is None:
        raise ApiKeyInvalid()
    now = datetime.now(UTC)
    if found.revoked_at is not None:
        raise ApiKeyRevoked()
    if found.expires_at is not None and found.expires_at <= now:
        raise ApiKeyExpired()
    if found.merchant_status != "active":
        raise MerchantSuspended()
    return Entry(
        Principal("api_key", found.id, found.merchant_id, found.scopes),
        MerchantSettings(found.default_expiry_s, found.underpayment_tolerance_bps),
        generation,
        time.monotonic(),
        secret_hash=found.secret_hash,
        expires_at=found.expires_at,
        last_used_at=found.last_used_at,
    )


def check_cached(entry: Entry, raw_key: str) -> None:
    """What a cached key still needs per request: its secret, and its expiry."""
    if not hmac.compare_digest(entry.secret_hash, _hash(raw_key)):
        raise ApiKeyInvalid()
    if entry.expires_at is not None and entry.expires_at <= datetime.now(UTC):
        raise ApiKeyExpired()


async def touch_if_due(db: Database, entry: Entry) -> None:
    """last_used_at is kept to the minute: one write a minute per key (and replica), committed
    on its own."""
    now = datetime.now(UTC)
    if entry.last_used_at is None or now - entry.last_used_at > LAST_USED_RESOLUTION:
        entry.last_used_at = now
        async with db.driver() as conn:
            await repository.touch(conn, entry.principal.id, now)


async def create(
    session: AsyncSession, principal: Principal, actor: Actor, body: ApiKeyCreate
) -> tuple[ApiKey, str]:
    assert principal.merchant_id is not None
    if not set(body.scopes) <= principal.scopes:
        raise ScopesExceedCaller()
    return await issue(
        session, principal.merchant_id, body.name, body.scopes, body.expires_at, actor
    )


async def issue(
    session: AsyncSession,
    merchant_id: str,
    name: str,
    scopes: Sequence[str],
    expires_at: datetime | None,
    actor: Actor,
) -> tuple[ApiKey, str]:
    prefix, raw = generate_key()
    key = ApiKey(
        id=new_id("key"),
        merchant_id=merchant_id,
        name=name,
        prefix=prefix,
        secret_hash=_hash(raw),
        scopes=list(scopes),
        created_by=actor.id,
        created_at=datetime.now(UTC),
        expires_at=expires_at,
    )
    session.add(key)
    await session.flush()
    await record(
        session,
        actor,
        "api_key.created",
        target_type="api_key",
        target_id=key.id,
        merchant_id=merchant_id,
        after={"name": name, "scopes": list(scopes), "prefix": prefix},
    )
    return key, raw


async def revoke(session: AsyncSession, merchant_id: str, key_id: str, actor: Actor) -> ApiKey:
    key = await repository.get(session, merchant_id, key_id)
    if key is None:
        raise ApiKeyNotFound()
    if key.revoked_at is None:
        key.revoked_at = datetime.now(UTC)
        await session.flush()
        mark_changed(session)
        await record(
            session,
            actor,
            "api_key.revoked",
            target_type="api_key",
            target_id=key.id,
            merchant_id=merchant_id,
            before={"revoked_at": None},
            after={"revoked_at": key.revoked_at.isoformat()},
        )
    return key


async def list_keys(
    session: AsyncSession, merchant_id: str, *, limit: int, starting_after: str | None
) -> tuple[Sequence[ApiKey], bool]:
    rows = await repository.list_for_merchant(
        session, merchant_id, limit=fetch_size(limit), starting_after=starting_after
    )
    return split_page(rows, limit)
