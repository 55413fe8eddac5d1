"""PostgreSQL: the engine, sessions that only the edge commits, slow-statement logging,
and the check that the schema is at the latest migration."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import structlog
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from nespay.auth.cache import CHANGED
from nespay.config import Settings

log = structlog.get_logger("nespay.db")


def split_database_url(url: str) -> tuple[str, str]:
    """The guide's `postgresql://…?schema=public` → (SQLAlchemy asyncpg URL, schema).

    `schema` is Prisma's parameter, not libpq's; it becomes the connection's search_path.
    """
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    schema = query.pop("schema", "public")
    scheme = "postgresql+asyncpg"
    return urlunsplit((scheme, parts.netloc, parts.path, urlencode(query), "")), schema


def plain_dsn(url: str) -> str:
    """A libpq/asyncpg DSN (no driver suffix, no Prisma `schema` parameter)."""
    sa_url, _ = split_database_url(url)
    return sa_url.replace("postgresql+asyncpg://", "postgresql://", 1)


class Sql(Protocol):
    """What repositories that write `$n` SQL need: an asyncpg connection has these methods;
    `sql()` gives a SQLAlchemy session or connection the same three, in its transaction."""

    async def fetch(self, query: str, *args: Any) -> Sequence[Any]: ...

    async def fetchval(self, query: str, *args: Any) -> Any: ...

    async def execute(self, query: str, *args: Any) -> str: ...


class _SqlOn:
    def __init__(self, executor: AsyncSession | AsyncConnection) -> None:
        self._executor = executor

    async def _run(self, query: str, args: tuple[Any, ...]) -> Any:
        executor = self._executor
        conn = executor if isinstance(executor, AsyncConnection) else await executor.connection()
        return await conn.exec_driver_sql(query, args)

    async def fetch(self, query: str, *args: Any) -> Sequence[Any]:
        return (await self._run(query, args)).mappings().all()

    async def fetchval(self, query: str, *args: Any) -> Any:
        return (await self._run(query, args)).scalar()

    async def execute(self, query: str, *args: Any) -> str:
        result = await self._run(query, args)
        return f"{query.split(None, 1)[0].upper()} {result.rowcount}"


def sql(executor: AsyncSession | AsyncConnection | Sql) -> Sql:
    """`executor` as `Sql`: an asyncpg connection as it is; a SQLAlchemy session or
    connection through `exec_driver_sql`, so the statements run in its transaction."""
    if isinstance(executor, AsyncSession | AsyncConnection):
        return _SqlOn(executor)
    return executor


AFTER_COMMIT = "nespay.after_commit"


def after_commit(session: AsyncSession, hook: Callable[[], Awaitable[None]]) -> None:
    """Run `hook` once the unit of work of `session` has committed (e.g. publish a wake-up for
    rows it made due: published earlier, a consumer could look before they are visible).
    Hooks must not raise: what they do has to be recoverable without them."""
    session.info.setdefault(AFTER_COMMIT, []).append(hook)


# Where pg_trgm lives: a schema of its own, shared by every deployment in the database, so
# that dropping one deployment's schema (`nespay db reset`) cannot take the extension, and the
# trigram indexes of the others, with it. One made in `public` by an older install still works.
EXTENSIONS_SCHEMA = "extensions"


def server_settings(settings: Settings, application_name: str | None = None) -> dict[str, str]:
    """What every connection of ours starts with: the `schema` of DATABASE_URL first in its
    search_path, then `public` and the extensions' schema (pg_trgm's operators resolve there)."""
    path = dict.fromkeys([settings.database_schema, "public", EXTENSIONS_SCHEMA])
    return {
        "search_path": ", ".join(_quoted(name) for name in path),
        "application_name": application_name or settings.service_name,
    }


async def connect(settings: Settings, application_name: str) -> Any:
    """A dedicated asyncpg connection (outside every pool), set up like the pools' ones: for
    a long-lived holder such as the outbox relay, whose advisory lock lives on it."""
    import asyncpg

    return await asyncpg.connect(
        plain_dsn(settings.database_url.get_secret_value()),
        server_settings=server_settings(settings, application_name),
    )


def create_engine(settings: Settings, *, pool_size: int | None = None) -> AsyncEngine:
    url, _ = split_database_url(settings.database_url.get_secret_value())
    engine = create_async_engine(
        url,
        pool_size=pool_size or settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args={"server_settings": server_settings(settings)},
    )
    if settings.db_monitoring_enabled:
        _watch_slow_statements(engine, settings)
    return engine


def _watch_slow_statements(engine: AsyncEngine, settings: Settings) -> None:
    threshold = settings.db_slow_query_threshold / 1000
    level = settings.db_monitoring_level

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _start(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        conn.info.setdefault("nespay_started", []).append(time.perf_counter())

    @event.listens_for(engine.sync_engine, "after_cursor_execute")
    def _finish(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        started = conn.info["nespay_started"].pop()
        elapsed = time.perf_counter() - started
        if elapsed >= threshold:
            # Parameters are left out: they can carry secrets and personal data.
            getattr(log, level)(
                "slow_query", duration_ms=round(elapsed * 1000, 1), statement=statement[:1000]
            )


class Database:
    """The process's engine and session factory."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = create_engine(settings)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        self._side_engine: AsyncEngine | None = None
        self._driver_pool: Any = None
        self._driver_lock = asyncio.Lock()
        # Told after a unit of work that changed who a credential is has committed (the
        # runtime sets it to bump the auth cache's generation in Redis; see nespay.auth.cache).
        self.credentials_changed: Callable[[], Awaitable[object]] | None = None

    @property
    def side_engine(self) -> AsyncEngine:
        """A small pool of its own for work done while a request already holds a connection
        of the main pool (rate counters and locks while Redis is degraded, security events,
        the catalog refresh). Taking a second connection from the main pool there would
        deadlock under load: every connection held by a request waiting for another one."""
        if self._side_engine is None:
            self._side_engine = create_engine(self.settings, pool_size=2)
        return self._side_engine

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncSession]:
        """A read-only unit of work that sees ONE snapshot (REPEATABLE READ): a view read in
        several statements (an invoice, then its payments) cannot straddle another
        transaction's commit — a confirmed payment on a still-paid invoice, say."""
        async with self.engine.connect() as conn:
            await conn.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
            async with AsyncSession(bind=conn, expire_on_commit=False) as session, session.begin():
                yield session

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A unit of work (the request's, a job's, the CLI's): commits on success, rolls back
        on error. Once committed, a credential it changed (`nespay.auth.cache.mark_changed`)
        is forgotten by every replica's auth cache, and then its `after_commit` hooks run."""
        async with self.sessionmaker() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise
            changed = session.info.pop(CHANGED, False)
            hooks = session.info.pop(AFTER_COMMIT, ())
        if changed and self.credentials_changed is not None:
            # First, so that no hook can keep a revoked key or a suspended merchant served.
            await self.credentials_changed()
        elif changed:
            log.warning(
                "credentials_change_not_announced",
                reason="a Database without a Runtime: other processes' auth caches keep the "
                "old credential until their entries expire (60 s)",
            )
        for hook in hooks:
            await hook()

    async def ping(self) -> None:
        """One round trip on the driver pool, without SQLAlchemy's BEGIN/ROLLBACK (and without
        handing an overflow connection back to SQLAlchemy's pool outside its greenlet, which
        closed it with a traceback)."""
        async with self.driver() as connection:
            await connection.fetchval("SELECT 1")

    @asynccontextmanager
    async def driver(self) -> AsyncIterator[Any]:
        """An asyncpg connection outside any transaction (each statement commits by itself),
        for hot paths whose work is one statement, where SQLAlchemy's per-statement cost and
        BEGIN/COMMIT would dominate.

        It comes from an asyncpg pool of its own, sized like the engine's (pool size +
        overflow), that keeps its connections while they are in use at all: the engine's
        pool closes every overflow connection it gets back, so under load each request would
        pay for a new connection and its prepared statements. Release sends no reset query
        (these paths change no session state)."""
        pool = self._driver_pool or await self._open_driver_pool()
        async with pool.acquire() as connection:
            yield connection

    async def _open_driver_pool(self) -> Any:
        import asyncpg

        async with self._driver_lock:
            if self._driver_pool is None:
                settings = self.settings
                self._driver_pool = await asyncpg.create_pool(
                    plain_dsn(settings.database_url.get_secret_value()),
                    min_size=0,
                    max_size=settings.database_pool_size + settings.database_max_overflow,
                    max_inactive_connection_lifetime=300.0,
                    reset=_no_reset,
                    server_settings=server_settings(settings),
                )
        return self._driver_pool

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._side_engine is not None:
            await self._side_engine.dispose()
        if self._driver_pool is not None:
            await self._driver_pool.close()
            self._driver_pool = None


async def _no_reset(connection: Any) -> None:
    return None


# --- migrations -------------------------------------------------------------------------------


def migrations_dir() -> Path:
    """Inside the wheel (`nespay/_migrations`) or, for a source checkout, the repo's folder."""
    packaged = Path(__file__).parent / "_migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(settings: Settings) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("path_separator", "os")
    config.set_main_option(
        "file_template",
        "%%(year)d-%%(month).2d-%%(day).2d-%%(hour).2d%%(minute).2d_%%(slug)s",
    )
    config.attributes["settings"] = settings
    return config


def head_revisions(settings: Settings) -> set[str]:
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(alembic_config(settings)).get_heads())


async def current_revisions(engine: AsyncEngine, schema: str) -> set[str]:
    """The revisions applied to `schema` (its own `alembic_version`: found through the
    search_path, another schema's table would be read when `schema` has none)."""
    async with engine.connect() as conn:
        exists = await conn.scalar(
            text("SELECT to_regclass(format('%I.alembic_version', CAST(:schema AS text)))"),
            {"schema": schema},
        )
        if exists is None:
            return set()
        table = f"{_quoted(schema)}.alembic_version"
        rows = await conn.execute(text(f"SELECT version_num FROM {table}"))  # noqa: S608
        return {row[0] for row in rows}


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


class SchemaOutOfDate(RuntimeError):
    pass


class MigrationRefused(RuntimeError):
    """A migration found the database in a state it must not change by itself; the message
    says what the operator should do (the CLI prints it as one line)."""


async def ensure_schema_current(db: Database) -> None:
    """Refuse to serve on a schema that is not at the latest migration."""
    current = await current_revisions(db.engine, db.settings.database_schema)
    heads = head_revisions(db.settings)
    if current != heads:
        state = ", ".join(sorted(current)) or "no migrations applied"
        raise SchemaOutOfDate(
            f"database schema is not at the latest migration ({state}; expected "
            f"{', '.join(sorted(heads))}): run `nespay db migrate`"
        )


async def _prepare_schema(settings: Settings) -> None:
    """Create the schema of `DATABASE_URL`, on a connection of its own: an engine learns its
    default schema on its first connection, and one that connected before the schema existed
    would take `public` for it (and alembic would find public's version table there)."""
    engine = create_engine(settings, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(
                f"CREATE SCHEMA IF NOT EXISTS {_quoted(settings.database_schema)}"
            )
    finally:
        await engine.dispose()


async def run_alembic(settings: Settings, action: str, *args: Any, **kwargs: Any) -> None:
    """Run an alembic command (`upgrade`, `revision`, …) on one of our connections."""
    from alembic import command

    config = alembic_config(settings)
    await _prepare_schema(settings)
    engine = create_engine(settings, pool_size=1)
    try:
        # Not inside a transaction of ours: alembic runs each migration in a transaction of its
        # own, and a migration may step out of it (an index built CONCURRENTLY).
        async with engine.connect() as conn:

            def _run(sync_conn: Any) -> None:
                config.attributes["connection"] = sync_conn
                getattr(command, action)(config, *args, **kwargs)

            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await engine.dispose()


async def migrate(settings: Settings, revision: str = "head") -> None:
    await run_alembic(settings, "upgrade", revision)


async def drop_everything(settings: Settings) -> None:
    """Drop the schema and everything in it (the reset command asks first)."""
    schema = settings.database_schema
    engine = create_engine(settings, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    finally:
        await engine.dispose()
