"""FastAPI dependencies shared by every domain: the runtime, settings, and the request's
database session (the edge: it commits when the endpoint returns, rolls back on error)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from nespay.config import Settings
from nespay.runtime import Runtime

# Dependencies are `async def` even when they do not await: FastAPI runs plain `def`
# dependencies in its thread pool, which costs a thread hop per request.


async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.runtime.settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    runtime: Runtime = request.app.state.runtime
    async with runtime.db.sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
        for hook in session.info.pop(AFTER_COMMIT, ()):
            await hook()


AFTER_COMMIT = "nespay.after_commit"


def after_commit(session: AsyncSession, hook: Callable[[], Awaitable[None]]) -> None:
    """Run `hook` once the request's transaction has committed (e.g. publish a wake-up for
    rows it made due: published earlier, a consumer could look before they are visible).
    Hooks must not raise: what they do has to be recoverable without them."""
    session.info.setdefault(AFTER_COMMIT, []).append(hook)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
