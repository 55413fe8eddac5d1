"""FastAPI dependencies shared by every domain: the runtime, settings, and the request's
database session (the edge: it commits when the endpoint returns, rolls back on error)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from nespay.auth.cache import PrincipalCache
from nespay.config import Settings
from nespay.runtime import Runtime

# Dependencies are `async def` even when they do not await: FastAPI runs plain `def`
# dependencies in its thread pool, which costs a thread hop per request.


async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.runtime.settings


async def get_base_url(request: Request) -> str:
    """Where this deployment's pages live (`Settings.base_url`): an invoice's `hosted_url`."""
    return request.app.state.runtime.settings.base_url


def principal_cache(request: Request) -> PrincipalCache:
    """This process's auth cache; see `nespay.auth.cache`."""
    return request.app.state.runtime.principals


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's unit of work (`Database.session`: it commits when the endpoint returns,
    rolls back on error, then tells the auth caches and runs the after-commit hooks)."""
    async with request.app.state.runtime.db.session() as session:
        yield session


async def get_snapshot(request: Request) -> AsyncIterator[AsyncSession]:
    """A read-only unit of work on one snapshot (`Database.snapshot`), for views read in
    several statements."""
    async with request.app.state.runtime.db.snapshot() as session:
        yield session


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
BaseUrlDep = Annotated[str, Depends(get_base_url)]
# Function scope: the commit (and what follows it) happens before the answer is sent, so a
# client that got 2xx can rely on the write — a revoked key is refused on its next request.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
SnapshotDep = Annotated[AsyncSession, Depends(get_snapshot, scope="function")]
