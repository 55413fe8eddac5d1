"""FastAPI dependencies that authenticate, authorise and rate-limit.

Merchant routes take `X-Api-Key` (merchant servers) or `Authorization: Bearer <Cognito JWT>`
from the user pool (merchant people); backoffice routes take admin-pool tokens only.
Missing or invalid credentials are 401 with a code per cause; valid but not allowed is 403.
Every refused sign-in counts against the client IP, and the count reaches the audit log.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nespay.apikeys import service as apikeys
from nespay.apikeys.service import MerchantSuspended
from nespay.audit.service import record_security_event
from nespay.auth import ratelimit
from nespay.auth.clientip import client_ip
from nespay.auth.cognito import CognitoClaims, bearer_token
from nespay.auth.principals import Actor, Principal
from nespay.auth.scopes import ROLE_SCOPES
from nespay.deps import SessionDep
from nespay.errors import NespayError
from nespay.models import Merchant, MerchantUser
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


async def _refused(request: Request, error: NespayError) -> NespayError:
    """Count a refused sign-in for the client IP; log the milestones to the audit log."""
    runtime = _runtime(request)
    ip = request_ip(request)
    count, _ = await runtime.redis.hit(f"authfail:{ip}", FAILURE_WINDOW_S)
    if count in FAILURE_MILESTONES:
        actor = Actor("anonymous", None, None, ip, current_request_id())
        await record_security_event(
            runtime.db.side_engine,
            actor,
            "auth.sign_in_failed",
            detail={"code": error.code, "failures": count, "window_s": FAILURE_WINDOW_S},
        )
    return error


async def _verify_token(request: Request, token: str) -> CognitoClaims:
    try:
        return await _runtime(request).cognito.verify(token)
    except NespayError as error:
        if error.status_code == 401:
            raise await _refused(request, error) from None
        raise


async def _merchant_user(session: AsyncSession, claims: CognitoClaims) -> Principal:
    row = (
        await session.execute(
            select(MerchantUser.id, MerchantUser.merchant_id, MerchantUser.role, Merchant.status)
            .join(Merchant, Merchant.id == MerchantUser.merchant_id)
            .where(MerchantUser.cognito_sub == claims.sub)
        )
    ).one_or_none()
    if row is None:
        return Principal("user", claims.sub, None, frozenset(), email=claims.email)
    if row.status != "active":
        raise MerchantSuspended()
    return Principal(
        "merchant_user",
        row.id,
        row.merchant_id,
        ROLE_SCOPES[row.role],
        email=claims.email,
        role=row.role,
    )


async def authenticate_merchant_side(request: Request, session: SessionDep) -> Principal:
    """An API key or a user-pool token; returns who it is (possibly a user with no merchant)."""
    raw_key = request.headers.get("x-api-key")
    if raw_key is not None:
        try:
            principal = await apikeys.authenticate(session, raw_key.strip())
        except NespayError as error:
            raise await _refused(request, error) from None
    else:
        token = bearer_token(request.headers.get("authorization"))
        if token is None:
            raise AuthenticationRequired()
        claims = await _verify_token(request, token)
        if claims.pool != "user":
            raise WrongPool()
        principal = await _merchant_user(session, claims)
    await ratelimit.enforce_key(request, principal)
    request.state.principal = principal
    return principal


SignedIn = Annotated[Principal, Depends(authenticate_merchant_side)]


def require_scopes(*scopes: str) -> Callable[..., Awaitable[Principal]]:
    """A merchant-side principal that has a merchant and every one of `scopes`."""

    async def dependency(principal: SignedIn) -> Principal:
        if principal.merchant_id is None:
            raise MerchantRequired()
        missing = sorted(set(scopes) - principal.scopes)
        if missing:
            raise ScopeMissing(f"These credentials lack the scope(s) {', '.join(missing)}.")
        return principal

    return dependency


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
