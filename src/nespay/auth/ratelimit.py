"""Rate limits per client IP and per API key, in fixed windows counted by Redis (or, degraded,
by PostgreSQL). Over the limit: 429 with `Retry-After`.

Limits are set per route group: `RATE_LIMIT_IP` and `RATE_LIMIT_KEY` read
`group=requests/seconds,…` (e.g. `default=600/60,public=300/60`); a group without its own
entry uses `default`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from nespay.auth.clientip import client_ip
from nespay.auth.principals import Principal
from nespay.config import parse_rate_limits
from nespay.errors import NespayError


class RateLimited(NespayError):
    status_code = 429
    code = "rate_limited"
    message = "Too many requests; retry after the number of seconds in Retry-After."


async def _enforce(request: Request, bucket: str, spec: str, group: str) -> None:
    runtime = request.app.state.runtime
    limits = parse_rate_limits(spec)
    limit, window = limits.get(group) or limits["default"]
    count, reset_in = await runtime.redis.hit(f"rl:{bucket}:{group}:{window}", window)
    if count > limit:
        raise RateLimited(headers={"Retry-After": str(reset_in)})


def limit_ip(group: str = "default") -> Callable[[Request], Awaitable[None]]:
    """A router dependency counting requests per client IP in `group`."""

    async def dependency(request: Request) -> None:
        settings = request.app.state.runtime.settings
        ip = client_ip(request, settings.trusted_proxies)
        await _enforce(request, f"ip:{ip}", settings.rate_limit_ip, group)

    return dependency


async def enforce_key(request: Request, principal: Principal, group: str = "default") -> None:
    """Per API key (or per merchant user) limit, applied once the caller is known."""
    settings = request.app.state.runtime.settings
    await _enforce(request, f"{principal.kind}:{principal.id}", settings.rate_limit_key, group)
