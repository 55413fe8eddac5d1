"""Rate limits per client IP and per API key, in fixed windows counted by Redis (or, degraded,
by PostgreSQL). Over the limit: 429 with `Retry-After`.

Limits are set per route group: `RATE_LIMIT_IP` and `RATE_LIMIT_KEY` read
`group=requests/seconds,…` (e.g. `default=600/60,public=300/60`); a group without its own
entry uses `default`.

On a route that authenticates merchant-side callers, the IP counter is not hit by the router's
dependency: the authentication dependency hits it together with the caller's own counter (and
reads the auth cache's generation) in one Redis round trip. Every other route hits it at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any

from fastapi import Request

from nespay.auth.clientip import client_ip
from nespay.auth.principals import Principal
from nespay.config import parse_rate_limits
from nespay.errors import NespayError
from nespay.kit.openapi import answers

# The attribute a dependency carries when it counts the IP limit itself (see the docstring).
COUNTS_IP = "nespay_counts_ip_limit"
_DEFERS = "nespay_defers_ip_limit"


class RateLimited(NespayError):
    status_code = 429
    code = "rate_limited"
    message = "Too many requests; retry after the number of seconds in Retry-After."


@lru_cache(maxsize=64)
def _limit(spec: str, group: str) -> tuple[int, int]:
    limits = parse_rate_limits(spec)
    return limits.get(group) or limits["default"]


def counter(bucket: str, spec: str, group: str) -> tuple[str, int, int]:
    """(Redis key, window seconds, limit) of `bucket`'s counter in `group`."""
    limit, window = _limit(spec, group)
    return f"rl:{bucket}:{group}:{window}", window, limit


def ip_counter(request: Request, group: str) -> tuple[str, int, int]:
    settings = request.app.state.runtime.settings
    ip = client_ip(request, settings.trusted_proxies)
    return counter(f"ip:{ip}", settings.rate_limit_ip, group)


def key_counter(
    request: Request, principal: Principal, group: str = "default"
) -> tuple[str, int, int]:
    """Per API key (or per merchant user) limit, applied once the caller is known."""
    settings = request.app.state.runtime.settings
    return counter(f"{principal.kind}:{principal.id}", settings.rate_limit_key, group)


def check(limits: list[int], counts: list[tuple[int, int]]) -> None:
    for limit, (count, reset_in) in zip(limits, counts, strict=True):
        if count > limit:
            raise RateLimited(headers={"Retry-After": str(reset_in)})


def _defers(route: Any) -> bool:
    """Whether `route` has a dependency that counts the IP limit itself (cached per route)."""
    if route is None:
        return False
    known = getattr(route, _DEFERS, None)
    if known is None:
        pending, known = [route.dependant], False
        while pending and not known:
            dependant = pending.pop()
            known = getattr(dependant.call, COUNTS_IP, False)
            pending.extend(dependant.dependencies)
        setattr(route, _DEFERS, known)
    return known


def limit_ip(group: str = "default") -> Callable[[Request], Awaitable[None]]:
    """A router dependency counting requests per client IP in `group`."""

    @answers(429)
    async def dependency(request: Request) -> None:
        if _defers(request.scope.get("route")):
            request.state.ip_limit_group = group
            return
        await enforce_ip(request, group)

    return dependency


async def enforce_ip(request: Request, group: str) -> None:
    """Count this request against its client IP's limit in `group`; 429 when over."""
    key, window, limit = ip_counter(request, group)
    count, reset_in = await request.app.state.runtime.redis.hit(key, window)
    check([limit], [(count, reset_in)])
