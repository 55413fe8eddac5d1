"""FastAPI dependencies that authenticate, authorise and rate-limit.

Merchant routes take `X-Api-Key` (merchant servers) or `Authorization: Bearer <Cognito JWT>`
from the user pool (merchant people); backoffice routes take admin-pool tokens only.
Missing or invalid credentials are 401 with a code per cause; valid but not allowed is 403.
Every refused sign-in counts against the client IP, and the count reaches the audit log.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Annotated

from fastapi import Depends, Request

from nespay.apikeys import service as apikeys
from nespay.apikeys.service import MerchantSuspended
from nespay.audit.service import record_security_event
from nespay.auth import ratelimit
from nespay.auth.cache import GENERATION_KEY, Entry, MerchantSettings, PrincipalCache
from nespay.auth.clientip import client_ip
from nespay.auth.cognito import CognitoClaims, bearer_token
from nespay.auth.principals import Actor, Principal
from nespay.auth.scopes import ROLE_SCOPES
from nespay.deps import principal_cache
from nespay.errors import NespayError
from nespay.kit.openapi import accepts, answers
from nespay.merchants import repository as merchants_repository
from nespay.requestid import current_request_id
from nespay.runtime import Runtime

# Failure counts at which a `auth.sign_in_failed` entry is written (per IP and window).
FAILURE_MILESTONES = frozenset({1, 5, 10, 25, 50, 100, 250, 500, 1000})
FAILURE_WINDOW_S = 900


class AuthenticationRequired(NespayError):
    status_code = 401
    code = "authentication_required"
    message = "Send an API key in X-Api-Key or a Cognito token in Authorization: Bearer …"


class WrongPool(NespayError):
    status_code = 403
    code = "wrong_user_pool"
    message = "This token is from another user pool; it cannot be used here."


class MerchantRequired(NespayError):
    status_code = 403
    code = "merchant_required"
    message = "This user has no merchant yet: create one with POST /merchants."


class ScopeMissing(NespayError):
    status_code = 403
    code = "scope_missing"
    message = "The credentials do not allow this action."


class AdminRoleMissing(NespayError):
    status_code = 403
    code = "admin_role_missing"
    message = "Your admin groups do not allow this action."


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def request_ip(request: Request) -> str:
    return client_ip(request, _runtime(request).settings.trusted_proxies)


async def _refused(
    request: Request, error: NespayError, *, ip_counted: bool = False
) -> NespayError:
    """Count a refused sign-in for the client IP (with the IP rate limit, when the route left
    that to authentication); log the milestones to the audit log. Over the IP limit, the
    refusal is a 429, as it would have been before looking at the credentials."""
    runtime = _runtime(request)
    ip = request_ip(request)
    counters = [(f"authfail:{ip}", FAILURE_WINDOW_S)]
    group = None if ip_counted else getattr(request.state, "ip_limit_group", None)
    if group is not None:
        key, window, limit = ratelimit.ip_counter(request, group)
        counters.append((key, window))
    counts, _, _ = await runtime.redis.hits(counters, GENERATION_KEY)
    count = counts[0][0]
    if count in FAILURE_MILESTONES:
        actor = Actor("anonymous", None, None, ip, current_request_id())
        await record_security_event(
            runtime.db.side_engine,
            actor,
            "auth.sign_in_failed",
            detail={"code": error.code, "failures": count, "window_s": FAILURE_WINDOW_S},
        )
    if group is not None:
        ratelimit.check([limit], counts[1:])
    return error


async def _not_signed_in(
    request: Request, error: NespayError, *, ip_counted: bool = False
) -> NespayError:
    """A refusal that is not a failed sign-in (no credentials, another pool, a suspended
    merchant): it still counts against the client IP's rate limit the route left to us."""
    group = getattr(request.state, "ip_limit_group", None)
    if group is not None and not ip_counted:
        await ratelimit.enforce_ip(request, group)
    return error


async def _verify_token(request: Request, token: str) -> CognitoClaims:
    try:
        return await _runtime(request).cognito.verify(token)
    except NespayError as error:
        if error.status_code == 401:
            raise await _refused(request, error) from None
        raise


async def _merchant_user(
    runtime: Runtime, claims: CognitoClaims, generation: bytes | None
) -> Entry:
    async with runtime.db.driver() as conn:
        row = await merchants_repository.user_principal(conn, claims.sub)
    if row is None:  # signed in, no merchant yet: not cached (creating one changes that)
        return Entry(
            Principal("user", claims.sub, None, frozenset(), email=claims.email), None, None, 0.0
        )
    if row["status"] != "active":
        raise MerchantSuspended()
    principal = Principal(
        "merchant_user",
        row["id"],
        row["merchant_id"],
        ROLE_SCOPES[row["role"]],
        email=claims.email,
        role=row["role"],
    )
    settings = MerchantSettings(row["default_expiry_s"], row["underpayment_tolerance_bps"])
    return Entry(principal, settings, generation, time.monotonic())


async def _count(request: Request, principal: Principal, cache: PrincipalCache) -> None:
    """The caller's rate-limit counters (its own, and the client IP's when the route left it to
    us) and the auth cache's generation, in one round trip."""
    counters = [ratelimit.key_counter(request, principal)]
    group = getattr(request.state, "ip_limit_group", None)
    if group is not None:
        counters.append(ratelimit.ip_counter(request, group))
    counts, generation, known = await _runtime(request).redis.hits(
        [(key, window) for key, window, _ in counters], GENERATION_KEY
    )
    cache.observe(generation, known)
    ratelimit.check([limit for _, _, limit in counters], counts)


async def _resolve(
    request: Request,
    cache_key: str,
    load: Callable[[bytes | None], Awaitable[Entry]],
    check: Callable[[Entry], None] | None = None,
    refused: Callable[..., Awaitable[NespayError]] = _refused,
) -> Entry:
    """The caller's cache entry: from the cache when its generation is still Redis's, else
    loaded from the database (and cached). Counts the rate limits on the way."""
    cache = principal_cache(request)
    entry = cache.get(cache_key)
    cached = entry is not None
    try:
        if entry is not None and check is not None:
            check(entry)
        if entry is None:
            entry = await load(cache.generation)
    except NespayError as error:
        raise await refused(request, error) from None
    await _count(request, entry.principal, cache)
    if cache.valid(entry):
        if not cached:
            cache.put(cache_key, entry)
        return entry
    if not cached:
        return entry  # read from the database: current, just not cacheable now
    try:  # a credential changed somewhere since this entry was made: read it again
        entry = await load(cache.generation)
    except NespayError as error:
        raise await refused(request, error, ip_counted=True) from None
    cache.put(cache_key, entry)
    return entry


@answers(401, 403, 429, 503)
@accepts("ApiKey", "CognitoToken")
async def authenticate_merchant_side(request: Request) -> Principal:
    """An API key or a user-pool token; returns who it is (possibly a user with no merchant).
    Once per request: a second call (another dependency) gets the first one's answer."""
    known = getattr(request.state, "principal", None)
    if known is not None:
        return known
    runtime = _runtime(request)
    raw_key = request.headers.get("x-api-key")
    if raw_key is not None:
        raw_key = raw_key.strip()
        try:
            cache_key = "key:" + apikeys.prefix_of(raw_key)
        except NespayError as error:
            raise await _refused(request, error) from None
        entry = await _resolve(
            request,
            cache_key,
            lambda generation: apikeys.authenticate(runtime.db, raw_key, generation),
            lambda cached: apikeys.check_cached(cached, raw_key),
        )
        await apikeys.touch_if_due(runtime.db, entry)
        principal = entry.principal
    else:
        token = bearer_token(request.headers.get("authorization"))
        if token is None:
            raise await _not_signed_in(request, AuthenticationRequired())
        claims = await _verify_token(request, token)
        if claims.pool != "user":
            raise await _not_signed_in(request, WrongPool())
        entry = await _resolve(
            request,
            "sub:" + claims.sub,
            lambda generation: _merchant_user(runtime, claims, generation),
            refused=_not_signed_in,
        )
        principal = entry.principal
        if principal.email != claims.email:
            principal = replace(principal, email=claims.email)
    request.state.principal = principal
    request.state.merchant_settings = entry.settings
    return principal


# The IP rate limit of a route that authenticates is counted here, with the caller's own.
setattr(authenticate_merchant_side, ratelimit.COUNTS_IP, True)


SignedIn = Annotated[Principal, Depends(authenticate_merchant_side)]


def require_scopes(*scopes: str) -> Callable[..., Awaitable[Principal]]:
    """A merchant-side principal that has a merchant and every one of `scopes`."""

    # Authenticates itself rather than through a `SignedIn` sub-dependency: one level of
    # dependency resolution less on every merchant route.
    @answers(401, 403, 429, 503)
    @accepts("ApiKey", "CognitoToken")
    async def dependency(request: Request) -> Principal:
        principal = await authenticate_merchant_side(request)
        if principal.merchant_id is None:
            raise MerchantRequired()
        missing = sorted(set(scopes) - principal.scopes)
        if missing:
            raise ScopeMissing(f"These credentials lack the scope(s) {', '.join(missing)}.")
        return principal

    setattr(dependency, ratelimit.COUNTS_IP, True)
    return dependency


@answers(401, 403, 503)
@accepts("CognitoToken")
async def authenticate_admin(request: Request) -> Principal:
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise AuthenticationRequired("Send an admin Cognito token in Authorization: Bearer …")
    claims = await _verify_token(request, token)
    if claims.pool != "admin":
        raise WrongPool()
    principal = Principal(
        "admin", claims.sub, None, frozenset(), groups=frozenset(claims.groups), email=claims.email
    )
    request.state.principal = principal
    return principal


def require_admin(*groups: str) -> Callable[..., Awaitable[Principal]]:
    """An admin-pool principal in at least one of `groups`."""

    @answers(403)
    async def dependency(
        principal: Annotated[Principal, Depends(authenticate_admin)],
    ) -> Principal:
        if not principal.groups & set(groups):
            raise AdminRoleMissing(
                f"This action needs one of the admin groups: {', '.join(sorted(groups))}."
            )
        return principal

    return dependency


async def merchant_actor(request: Request, principal: SignedIn) -> Actor:
    """The audit actor of a merchant-side request."""
    return Actor.of(principal, request_ip(request), current_request_id())


async def admin_actor(
    request: Request, principal: Annotated[Principal, Depends(authenticate_admin)]
) -> Actor:
    return Actor.of(principal, request_ip(request), current_request_id())


MerchantActor = Annotated[Actor, Depends(merchant_actor)]
AdminActor = Annotated[Actor, Depends(admin_actor)]
