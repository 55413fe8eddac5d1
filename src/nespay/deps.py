"""FastAPI dependencies shared by every domain: the runtime, settings, and the request's
database session (the edge: it commits when the endpoint returns, rolls back on error)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from nespay.auth.cache import CHANGED, GENERATION_KEY, PrincipalCache
from nespay.config import Settings
from nespay.runtime import Runtime

# Dependencies are `async def` even when they do not await: FastAPI runs plain `def`
# dependencies in its thread pool, which costs a thread hop per request.


async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.runtime.settings


def principal_cache(request: Request) -> PrincipalCache:
    """This process's (app's) auth cache; see `nespay.auth.cache`."""
    state = request.app.state
    cache = getattr(state, "principals", None)
    if cache is None:
        cache = state.principals = PrincipalCache()
    return cache


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    runtime: Runtime = request.app.state.runtime
    async with runtime.db.sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
        changed = session.info.pop(CHANGED, False)
        hooks = session.info.pop(AFTER_COMMIT, ())
    if changed:
        # Who a credential is changed (and is committed): every replica's auth cache must
        # forget it before its next request; this one's at once. First, so that no hook can
        # keep a revoked key or a suspended merchant served from memory.
        principal_cache(request).clear()
        await runtime.redis.bump(GENERATION_KEY)
    for hook in hooks:
        await hook()


AFTER_COMMIT = "nespay.after_commit"


def after_commit(session: AsyncSession, hook: Callable[[], Awaitable[None]]) -> None:
    """Run `hook` once the request's transaction has committed (e.g. publish a wake-up for
    rows it made due: published earlier, a consumer could look before they are visible).
    Hooks must not raise: what they do has to be recoverable without them."""
    session.info.setdefault(AFTER_COMMIT, []).append(hook)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
# Function scope: the commit (and what follows it) happens before the answer is sent, so a
# client that got 2xx can rely on the write — a revoked key is refused on its next request.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
