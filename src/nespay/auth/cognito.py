"""Verify Cognito JWTs from the user pool (merchants' people) and the admin pool (backoffice).

PyJWT does the cryptography (`jwt.decode`, RS256 only, keys from `jwt.PyJWK`); this module
decides which pool a token claims to come from, fetches and caches that pool's JWKS without
blocking the event loop, and turns every way a token can be wrong into a 401 with its own code,
so a bad token is never a 500 and a caller can tell "sign in again" from "fix your client".
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import jwt
import structlog

from nespay.config import Settings
from nespay.errors import NespayError

log = structlog.get_logger("nespay.auth.cognito")

Pool = Literal["user", "admin"]
TokenUse = Literal["id", "access"]

ALGORITHM = "RS256"
MAX_TOKEN_CHARS = 16_384  # Cognito tokens are a few KB; anything far larger is not one.
VERIFIED_CACHE_SIZE = 10_000
_WHITESPACE = re.compile(r"\s")
_REQUIRED_CLAIMS = ["exp", "iat", "iss", "sub"]


# --- errors --------------------------------------------------------------------------------
class TokenInvalid(NespayError):
    """A bearer token we refuse: 401 with `WWW-Authenticate` as RFC 6750 asks."""

    status_code = 401
    code = "token_invalid"
    message = "The bearer token is not valid."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


class TokenMalformed(TokenInvalid):
    code = "token_malformed"
    message = "The bearer token is not a well-formed Cognito JWT."


class TokenAlgorithmNotAllowed(TokenInvalid):
    code = "token_algorithm_not_allowed"
    message = "The bearer token's signing algorithm is not allowed; Cognito tokens use RS256."


class TokenSignatureInvalid(TokenInvalid):
    code = "token_signature_invalid"
    message = "The bearer token's signature does not verify."


class TokenExpired(TokenInvalid):
    code = "token_expired"
    message = "The bearer token has expired; refresh it or sign in again."


class TokenNotYetValid(TokenInvalid):
    code = "token_not_yet_valid"
    message = "The bearer token is not valid yet; check the client's clock."


class TokenIssuerUnknown(TokenInvalid):
    code = "token_issuer_unknown"
    message = "The bearer token was not issued by a Cognito user pool this service trusts."


class TokenAudienceInvalid(TokenInvalid):
    code = "token_audience_invalid"
    message = "The bearer token was issued to a different app client."


class TokenUseInvalid(TokenInvalid):
    code = "token_use_invalid"
    message = "Only Cognito id and access tokens are accepted."


class TokenKeyUnknown(TokenInvalid):
    code = "token_key_unknown"
    message = "The bearer token was signed with a key its pool does not publish."


class CognitoUnavailable(NespayError):
    """The pool's keys cannot be fetched: our problem (503), not the caller's token (401)."""

    status_code = 503
    code = "auth_unavailable"
    message = "Sign-in cannot be checked right now (Cognito keys unavailable); try again shortly."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers={"Retry-After": "5"})


# Most specific first: several PyJWT errors subclass DecodeError / InvalidTokenError.
_PYJWT_ERRORS: tuple[tuple[type[Exception], type[TokenInvalid]], ...] = (
    (jwt.ExpiredSignatureError, TokenExpired),
    (jwt.ImmatureSignatureError, TokenNotYetValid),
    (jwt.InvalidSignatureError, TokenSignatureInvalid),
    (jwt.InvalidAlgorithmError, TokenAlgorithmNotAllowed),
    (jwt.InvalidIssuerError, TokenIssuerUnknown),
    (jwt.InvalidAudienceError, TokenAudienceInvalid),
)


# --- claims --------------------------------------------------------------------------------
@dataclass(frozen=True)
class CognitoClaims:
    """What callers need from a verified token; `raw` keeps every claim for the rare rest."""

    pool: Pool
    sub: str
    email: str | None
    username: str | None
    groups: tuple[str, ...]
    token_use: TokenUse
    client_id: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_payload(cls, pool: Pool, payload: dict[str, Any], client_id: str) -> CognitoClaims:
        username = payload.get("cognito:username", payload.get("username"))
        email = payload.get("email")
        return cls(
            pool=pool,
            sub=payload["sub"],
            email=email if isinstance(email, str) else None,
            username=username if isinstance(username, str) else None,
            groups=_strings(payload.get("cognito:groups")),
            token_use=payload["token_use"],
            client_id=client_id,
            raw=payload,
        )


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(item for item in value if isinstance(item, str)) if isinstance(value, list) else ()


def bearer_token(authorization_header: str | None) -> str | None:
    """The token of `Authorization: Bearer <token>`, or None for any other shape.

    None (not an error) lets the caller fall back to another scheme (`X-Api-Key`) or answer
    401 "missing credentials" itself.
    """
    if not authorization_header:
        return None
    scheme, _, token = authorization_header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or _WHITESPACE.search(token):
        return None
    return token


# --- pools and their key caches ------------------------------------------------------------
@dataclass
class _PoolState:
    """One trusted pool: what its tokens must say, and its cached signing keys."""

    name: Pool
    issuer: str
    client_id: str
    jwks_url: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    keys: dict[str, jwt.PyJWK] | None = None
    fetched_at: float = -math.inf  # last successful fetch
    attempted_at: float = -math.inf  # last fetch, successful or not
    failed: bool = False  # whether the last fetch failed


def issuer_for(region: str, pool_id: str) -> str:
    return f"https://cognito-idp.{region}.amazonaws.com/{pool_id}"


def _pool_state(settings: Settings, name: Pool) -> _PoolState | None:
    """A pool is trusted only when its pool id, client id and region are all known."""
    pool_id = getattr(settings, f"cognito_{name}_pool_id")
    client_id = getattr(settings, f"cognito_{name}_client_id")
    region = settings.region
    if not (pool_id and client_id and region):
        return None
    issuer = issuer_for(region, pool_id)
    base = settings.cognito_endpoint_url
    jwks_url = f"{base.rstrip('/')}/{pool_id}" if base else issuer
    return _PoolState(name, issuer, client_id, f"{jwks_url}/.well-known/jwks.json")


def parse_jwks(document: Any) -> dict[str, jwt.PyJWK]:
    """RS256 signing keys by `kid`; other keys are skipped (they can never verify RS256)."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document")
    keys: dict[str, jwt.PyJWK] = {}
    for entry in document["keys"]:
        if not _is_rs256_signing_key(entry):
            continue
        try:
            keys[entry["kid"]] = jwt.PyJWK(entry, algorithm=ALGORITHM)
        except (jwt.PyJWTError, TypeError, ValueError):
            log.warning("cognito_jwks_key_skipped", kid=entry["kid"])
    return keys


def _is_rs256_signing_key(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("kid"), str)
        and entry.get("kty") == "RSA"
        and entry.get("use", "sig") == "sig"
        and entry.get("alg", ALGORITHM) == ALGORITHM
    )


# --- the verifier --------------------------------------------------------------------------
class CognitoVerifier:
    """Verifies bearer tokens of the configured user and admin pools.

    One instance per process: it owns the JWKS caches. Keys are fetched on first use and kept
    `jwks_ttl` seconds; an unknown `kid` (Cognito rotated keys) triggers a refetch at most once
    per `min_refresh_interval` per pool, so junk tokens cannot turn us into a JWKS flooder.

    A token that verified is remembered by its SHA-256 until it expires (`exp` plus the
    leeway, as the full check would judge it) and while its pool's keys are fresh, so a client
    sending the same token on every request pays for RS256 once. The memory is dropped
    whenever a pool's keys are refetched: a token signed by a key that Cognito no longer
    publishes is then checked again.
    """

    def __init__(
        self,
        settings: Settings,
        http: httpx.AsyncClient | None = None,
        *,
        leeway: float = 30.0,
        jwks_ttl: float = 3600.0,
        min_refresh_interval: float = 60.0,
        failure_backoff: float = 5.0,
        fetch_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.leeway = leeway
        self.jwks_ttl = jwks_ttl
        self.min_refresh_interval = min_refresh_interval
        self.failure_backoff = failure_backoff
        self._clock = clock
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=fetch_timeout, follow_redirects=False)
        self._fetch_timeout = fetch_timeout
        states = (_pool_state(settings, "user"), _pool_state(settings, "admin"))
        self._pools = [state for state in states if state is not None]
        self._verified: OrderedDict[bytes, tuple[CognitoClaims, float, _PoolState]] = OrderedDict()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    @property
    def pools(self) -> tuple[Pool, ...]:
        return tuple(state.name for state in self._pools)

    async def verify(self, token: str) -> CognitoClaims:
        """Claims of a valid token, else a `TokenInvalid` (401) or `CognitoUnavailable` (503)."""
        digest = hashlib.sha256(token.encode()).digest() if isinstance(token, str) else b""
        known = self._verified.get(digest)
        if known is not None:
            claims, valid_until, pool_state = known
            if time.time() < valid_until and self._is_fresh(pool_state):
                return claims
            del self._verified[digest]  # expired, or keys due for a refetch: check it all
        header, unverified = _unverified(token)
        pool = self._pool_for(unverified.get("iss"))
        key = await self._signing_key(pool, header["kid"])
        payload = self._decode(token, key, pool)
        client_id = _check_use_and_client(payload, pool)
        claims = CognitoClaims.from_payload(pool.name, payload, client_id)
        self._remember(digest, claims, payload["exp"], pool)
        return claims

    def _remember(self, digest: bytes, claims: CognitoClaims, exp: Any, pool: _PoolState) -> None:
        if not isinstance(exp, (int, float)):
            return
        self._verified[digest] = (claims, float(exp) + self.leeway, pool)
        while len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)

    def _pool_for(self, issuer: Any) -> _PoolState:
        """The unverified `iss` only picks which pool's keys and rules apply; it proves nothing."""
        for pool in self._pools:
            if issuer == pool.issuer:
                return pool
        raise TokenIssuerUnknown()

    def _decode(self, token: str, key: jwt.PyJWK, pool: _PoolState) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=pool.issuer,
                leeway=self.leeway,
                options={"require": _REQUIRED_CLAIMS, "verify_aud": False},
            )
        except jwt.PyJWTError as error:
            raise _translate(error) from None

    # --- keys ------------------------------------------------------------------------------
    async def _signing_key(self, pool: _PoolState, kid: str) -> jwt.PyJWK:
        keys = pool.keys
        if keys is not None and kid in keys and self._is_fresh(pool):
            return keys[kid]
        async with pool.lock:  # one fetch per pool at a time; waiters reuse its result
            if self._should_fetch(pool, kid):
                await self._refresh(pool, kid)
            if pool.keys is None:
                raise CognitoUnavailable()
            key = pool.keys.get(kid)
        if key is None:
            raise TokenKeyUnknown()
        return key

    def _is_fresh(self, pool: _PoolState) -> bool:
        return self._clock() - pool.fetched_at < self.jwks_ttl

    def _should_fetch(self, pool: _PoolState, kid: str) -> bool:
        since_attempt = self._clock() - pool.attempted_at
        if pool.failed:
            return since_attempt >= self.failure_backoff
        if pool.keys is None or not self._is_fresh(pool):
            return True
        return kid not in pool.keys and since_attempt >= self.min_refresh_interval

    async def _refresh(self, pool: _PoolState, kid: str) -> None:
        """Refetch; when that fails, stale keys still serve a `kid` they already know."""
        try:
            await self._fetch(pool)
        except CognitoUnavailable:
            if pool.keys is None or kid not in pool.keys:
                raise
            log.warning("cognito_jwks_stale_keys_used", pool=pool.name)

    async def _fetch(self, pool: _PoolState) -> None:
        pool.attempted_at = self._clock()
        try:
            response = await self._http.get(pool.jwks_url, timeout=self._fetch_timeout)
            response.raise_for_status()
            keys = parse_jwks(response.json())
        except (httpx.HTTPError, ValueError) as error:
            pool.failed = True
            log.warning(
                "cognito_jwks_unavailable", pool=pool.name, url=pool.jwks_url, error=repr(error)
            )
            raise CognitoUnavailable() from None
        pool.keys, pool.fetched_at, pool.failed = keys, pool.attempted_at, False
        self._verified.clear()
        log.info("cognito_jwks_fetched", pool=pool.name, url=pool.jwks_url, keys=len(keys))


# --- token checks that need no keys --------------------------------------------------------
def _unverified(token: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims before any key is touched, refusing non-RS256 algorithms outright.

    Checking `alg` here, not only in `jwt.decode`, is what stops `none` and the HS256-with-
    the-public-key trick without ever handing attacker-chosen algorithms to the crypto layer.
    """
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise TokenMalformed()
    try:  # one parse for both parts
        complete = jwt.decode_complete(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise TokenMalformed() from None
    header, claims = complete["header"], complete["payload"]
    if header.get("alg") != ALGORITHM:
        raise TokenAlgorithmNotAllowed()
    if not isinstance(header.get("kid"), str) or not isinstance(claims, dict):
        raise TokenMalformed("The bearer token has no key id (`kid`) in its header.")
    return header, claims


def _check_use_and_client(payload: dict[str, Any], pool: _PoolState) -> str:
    """Id tokens name their client in `aud`, access tokens in `client_id` (Cognito's rule)."""
    token_use = payload.get("token_use")
    if token_use not in ("id", "access"):
        raise TokenUseInvalid()
    client_claim = "client_id" if token_use == "access" else "aud"  # noqa: S105 - a claim name
    client_id = payload.get(client_claim)
    if client_id != pool.client_id:
        raise TokenAudienceInvalid()
    return pool.client_id


def _translate(error: jwt.PyJWTError) -> TokenInvalid:
    for pyjwt_error, ours in _PYJWT_ERRORS:
        if isinstance(error, pyjwt_error):
            return ours()
    if isinstance(error, jwt.MissingRequiredClaimError):
        return TokenMalformed(f"The bearer token lacks the `{error.claim}` claim.")
    return TokenMalformed()
