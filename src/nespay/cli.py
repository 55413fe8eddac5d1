"""`nespay`: serve the processes, run them all for development, manage the database, run jobs.

Errors a person can fix are one line saying what to do, with a non-zero exit; never a traceback.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from nespay.chains.cli import currencies_app, networks_app
from nespay.config import ConfigError, Settings, load_settings
from nespay.wallets.cli import wallets_app

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
db_app = typer.Typer(no_args_is_help=True, help="Migrations, reference data, reset.")
jobs_app = typer.Typer(no_args_is_help=True, help="Run a job once, list jobs.")
app.add_typer(db_app, name="db")
app.add_typer(jobs_app, name="jobs")
keys_app = typer.Typer(no_args_is_help=True, help="Encryption master keys.")
app.add_typer(keys_app, name="keys")
merchants_app = typer.Typer(no_args_is_help=True, help="Bootstrap merchants.")
app.add_typer(merchants_app, name="merchants")
app.add_typer(networks_app, name="networks")
app.add_typer(currencies_app, name="currencies")
app.add_typer(wallets_app, name="wallets")

out = Console()
err = Console(stderr=True)
T = TypeVar("T")


class Process(str, enum.Enum):
    api = "api"
    webhook = "webhook"
    jobs = "jobs"


def fail(message: str, code: int = 1) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as error:  # the lines are already printed
        raise typer.Exit(int(error.code or 2)) from None


def run_async(func: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine; turn the errors an operator can fix into one line."""
    from nespay.db import MigrationRefused, SchemaOutOfDate

    try:
        return asyncio.run(func())  # type: ignore[arg-type]
    except (SchemaOutOfDate, MigrationRefused) as error:
        fail(str(error))
    except (TimeoutError, OSError) as error:
        fail(
            f"cannot reach a dependency ({type(error).__name__}: {error}); is it running? "
            "check DATABASE_URL / REDIS_* / RABBITMQ_URL"
        )
    except Exception as error:  # asyncpg's server errors (bad password, missing database)
        if type(error).__module__.startswith("asyncpg"):
            fail(
                f"database refused the connection ({type(error).__name__}: {error}); "
                "check DATABASE_URL"
            )
        raise
    raise AssertionError("unreachable")


# --- serve ------------------------------------------------------------------------------------


@app.command()
def serve(
    process: Annotated[Process, typer.Argument(help="api, webhook or jobs")],
    port: Annotated[
        int | None, typer.Option(help="Override API_PORT/WEBHOOK_PORT/JOB_PORT")
    ] = None,
) -> None:
    """Run one process (what the image runs)."""
    import uvicorn

    from nespay.apps.common import port_of
    from nespay.db import Database, ensure_schema_current

    settings = settings_or_exit()

    async def check() -> None:
        db = Database(settings)
        try:
            await ensure_schema_current(db)
        finally:
            await db.dispose()

    run_async(check)
    uvicorn.run(
        f"nespay.apps.{process.value}:create_app",
        factory=True,
        host=settings.host,
        port=port or port_of(settings, process.value),
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        server_header=False,
        # X-Forwarded-For is read by nespay.auth.clientip against TRUSTED_PROXIES, only there.
        proxy_headers=False,
        timeout_graceful_shutdown=20,
    )


@app.command()
def dev() -> None:
    """Run all three processes at once, with a private PostgreSQL when DATABASE_URL is unset."""
    from nespay import devstack

    devstack.run_dev(out)


sandbox_app = typer.Typer(
    invoke_without_command=True,
    help="A local chain with a test token: an invoice paid end to end, or pay one of yours.",
)
app.add_typer(sandbox_app, name="sandbox")


@sandbox_app.callback()
def sandbox(
    ctx: typer.Context,
    port: Annotated[
        int | None,
        typer.Option(help="Port for the local chain (anvil 8545; the fake TronGrid 8090)"),
    ] = None,
    chain: Annotated[
        str, typer.Option(help="evm (anvil) or tron (the fake TronGrid, network tron-local)")
    ] = "evm",
) -> None:
    """Without a command: a local chain with a test token, a merchant and an invoice paid end
    to end (no other process needed)."""
    if ctx.invoked_subcommand is not None:
        return
    from nespay import sandbox as sandbox_module
    from nespay.db import Database, ensure_schema_current

    if chain not in ("evm", "tron"):
        fail(f"--chain {chain!r}: expected evm or tron")
    if chain == "tron":
        from nespay import sandbox_tron as chosen
    else:
        chosen = sandbox_module  # type: ignore[assignment]
    default_port = 8090 if chain == "tron" else 8545

    settings = settings_or_exit()

    async def run() -> None:
        db = Database(settings)
        try:
            await ensure_schema_current(db)
        finally:
            await db.dispose()
        await chosen.run(settings, out, default_port if port is None else port)

    try:
        run_async(run)
    except sandbox_module.SandboxError as error:
        fail(str(error))


@sandbox_app.command("pay")
def sandbox_pay(
    invoice_id: Annotated[str, typer.Argument(help="The invoice to pay, e.g. inv_…")],
    amount: Annotated[
        str | None,
        typer.Option(help="Whole units of the option's currency (default: what is still due)"),
    ] = None,
    currency: Annotated[
        str | None, typer.Option(help="Which local option, when there are several (e.g. ETH)")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the confirmation")] = 120,
) -> None:
    """Pay an invoice on the local chain from the funded dev account, and print each state
    it reaches until the payment is confirmed (the jobs process of `nespay dev` scans it)."""
    from nespay import sandbox_pay as paying
    from nespay.chains.cli import quiet_logs
    from nespay.sandbox import SandboxError

    settings = settings_or_exit()
    quiet_logs()
    try:
        invoice = run_async(
            lambda: paying.pay(
                settings, out, invoice_id, amount=amount, currency=currency, timeout_s=timeout
            )
        )
    except SandboxError as error:
        fail(str(error))
    if invoice.status == "confirmed":
        out.print(f"invoice {invoice.id} is confirmed")
    else:
        out.print(
            f"invoice {invoice.id} is {invoice.status}: {invoice.amount_due} {invoice.currency} "
            f"still due; `nespay sandbox pay {invoice.id}` pays the rest"
        )


@sandbox_app.command("wallets")
def sandbox_wallets() -> None:
    """Set up money out on the running dev stack's `local` network with anvil's public test
    keys (development only): payouts and gas hot wallets, funded and recorded in the ledger,
    a treasury, and the deposit addresses' account key. Then withdrawals are sent and
    `nespay jobs run consolidation.sweep` sweeps paid invoices into the treasury."""
    from nespay import sandbox_wallets
    from nespay.chains.cli import quiet_logs
    from nespay.sandbox import SandboxError

    settings = settings_or_exit()
    quiet_logs()
    try:
        run_async(lambda: sandbox_wallets.setup(settings, out))
    except SandboxError as error:
        fail(str(error))


# --- db ---------------------------------------------------------------------------------------


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply every pending migration (the guide's `prisma migrate deploy`); creates pg_trgm."""
    from nespay.db import migrate

    settings = settings_or_exit()
    run_async(lambda: migrate(settings))
    out.print("database is at the latest migration")


@db_app.command("seed")
def db_seed() -> None:
    """Load networks, currencies and RPC endpoints (the guide's `prisma:seed:prod`); safe twice."""
    from nespay.chains.seed import NETWORKS, seed_reference_data
    from nespay.db import Database, ensure_schema_current

    settings = settings_or_exit()

    async def seed() -> Any:
        db = Database(settings)
        try:
            await ensure_schema_current(db)
            with progress_bar() as bar:
                task = bar.add_task("seeding networks", total=len(NETWORKS))
                async with db.engine.begin() as conn:
                    return await seed_reference_data(conn, lambda _: bar.advance(task))
        finally:
            await db.dispose()

    counts = run_async(seed)
    out.print(
        f"seeded: {counts.networks} networks, {counts.currencies} currencies, "
        f"{counts.rpc_endpoints} RPC endpoints added ({counts.seen} networks checked)"
    )


@db_app.command("reset")
def db_reset(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask (scripts)")] = False,
    seed: Annotated[bool, typer.Option(help="Seed reference data afterwards")] = True,
) -> None:
    """Drop every table in the schema, migrate again and seed. Deletes all data."""
    from nespay.db import drop_everything, migrate

    settings = settings_or_exit()
    if settings.app_env == "production" and not yes:
        fail("refusing to reset a production database without --yes")
    if not yes:
        if not sys.stdin.isatty():
            fail("reset deletes all data: confirm with --yes when not at a terminal")
        typer.confirm(
            f"This deletes ALL data in schema '{settings.database_schema}'. Continue?", abort=True
        )
    run_async(lambda: drop_everything(settings))
    run_async(lambda: migrate(settings))
    out.print("schema dropped and migrated")
    if seed:
        db_seed()


@db_app.command("revision")
def db_revision(message: Annotated[str, typer.Option("-m", "--message")]) -> None:
    """Create a new migration from the models (for developers; review what it wrote)."""
    from nespay.db import run_alembic

    settings = settings_or_exit()
    run_async(lambda: run_alembic(settings, "revision", message=message, autogenerate=True))


# --- keys -------------------------------------------------------------------------------------


@keys_app.command("generate")
def keys_generate() -> None:
    """Print a new ENCRYPTION_MASTER_KEY (64 random bytes as 128 hex characters)."""
    from nespay.kit.crypto import generate_master_key

    print(generate_master_key())


@keys_app.command("rotate")
def keys_rotate(
    batch_size: Annotated[int, typer.Option(min=1, max=10_000)] = 500,
) -> None:
    """Re-encrypt every stored secret under ENCRYPTION_MASTER_KEY.

    Run it after deploying the new key as ENCRYPTION_MASTER_KEY and the old one as
    ENCRYPTION_MASTER_KEY_PREVIOUS on every process (they keep serving throughout). Safe to
    stop and run again: it only touches values still under another key.
    """
    import nespay.models  # noqa: F401 - registers every encrypted column
    from nespay.audit.service import record_security_event
    from nespay.auth.principals import Actor
    from nespay.db import Database, ensure_schema_current
    from nespay.security.encryption import ENCRYPTED_COLUMNS, keyring_from_settings
    from nespay.security.rotation import rotate

    settings = settings_or_exit()
    if settings.encryption_master_key_previous is None:
        out.print("note: ENCRYPTION_MASTER_KEY_PREVIOUS is not set; values under it cannot be read")
    keyring = keyring_from_settings(settings)

    async def run() -> Any:
        db = Database(settings)
        try:
            await ensure_schema_current(db)
            with progress_bar() as bar:
                tasks = {c.name: bar.add_task(c.name, total=None) for c in ENCRYPTED_COLUMNS}

                def advance(column: str, done: int, total: int) -> None:
                    bar.update(tasks[column], completed=done, total=max(total, 1))

                report = await rotate(
                    db.engine, keyring, ENCRYPTED_COLUMNS, batch_size=batch_size, progress=advance
                )
            await record_security_event(
                db.engine,
                Actor("system", "cli"),
                "secrets.rotated",
                detail={
                    "version": report.version,
                    "rotated": report.rotated,
                    "failed": report.failed,
                    "remaining": report.remaining,
                },
            )
            return report
        finally:
            await db.dispose()

    report = run_async(run)
    for column in report.columns:
        out.print(
            f"{column.name}: {column.rotated} re-encrypted, {column.remaining} remaining, "
            f"{len(column.failures)} failed"
        )
        for row_id, reason in list(column.failures.items())[:20]:
            out.print(f"  {row_id}: {reason}")
    if not report.complete:
        fail("rotation is not complete: fix the rows listed above, or run again for the rest")
    out.print(f"every secret is under key version {report.version}")


# --- merchants --------------------------------------------------------------------------------


@merchants_app.command("create")
def merchants_create(
    name: Annotated[str, typer.Option(help="The merchant's name")],
    email: Annotated[str, typer.Option(help="The merchant's contact email")],
    country: Annotated[str, typer.Option(help="ISO 3166-1 alpha-2 code")] = "ID",
) -> None:
    """Create a merchant and print an owner API key (all scopes), for bootstrap."""
    from pydantic import ValidationError

    from nespay.apikeys.service import issue
    from nespay.auth.principals import Actor
    from nespay.auth.scopes import ALL_SCOPES
    from nespay.db import Database, ensure_schema_current
    from nespay.merchants.schemas import MerchantCreate
    from nespay.merchants.service import create_merchant

    try:
        body = MerchantCreate(name=name, email=email, country=country.upper())
    except ValidationError as error:
        fields = ", ".join(str(item["loc"][0]) for item in error.errors())
        fail(f"invalid {fields}: check --name, --email and --country (two letters)")
    settings = settings_or_exit()
    actor = Actor("system", "cli")

    async def create() -> tuple[str, str]:
        db = Database(settings)
        try:
            await ensure_schema_current(db)
            async with db.session() as session:
                merchant = await create_merchant(
                    session, actor, body.name, body.email, body.country
                )
                _, key = await issue(
                    session, merchant.id, "owner (cli)", sorted(ALL_SCOPES), None, actor
                )
                return merchant.id, key
        finally:
            await db.dispose()

    merchant_id, key = run_async(create)
    out.print(f"merchant: {merchant_id}")
    out.print("API key (shown once, store it now):")
    print(key)


# --- jobs -------------------------------------------------------------------------------------


@jobs_app.command("run")
def jobs_run(name: Annotated[str, typer.Argument(help="e.g. chains.rpc_health")]) -> None:
    """Run one job once, now, under the same lease the jobs process uses."""
    from nespay.jobs.registry import all_jobs
    from nespay.jobs.runner import JobBusy, JobRunner
    from nespay.logging import configure_logging
    from nespay.runtime import Runtime

    settings = settings_or_exit()
    jobs = all_jobs(settings)
    if name not in jobs:
        fail(f"unknown job {name!r}; known jobs: {', '.join(sorted(jobs))}")
    configure_logging(settings, "cli")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its plugin set-up lines

    async def run() -> str:
        runtime = Runtime(settings, "cli")
        await runtime.start()
        try:
            runner = JobRunner(runtime, jobs)
            await runner.register()
            with out.status(f"running {name}…"):
                outcome = await runner.run_now(name)
            detail = runner.last_detail
            return f"{outcome} ({detail})" if detail else outcome
        finally:
            await runtime.close()

    try:
        outcome = run_async(run)
    except JobBusy as error:
        fail(str(error))
    out.print(f"{name}: {outcome}", markup=False, highlight=False)
    if not outcome.startswith("ok"):
        raise typer.Exit(1)


@jobs_app.command("list")
def jobs_list() -> None:
    """List the jobs with their schedules."""
    from nespay.jobs.registry import all_jobs

    for job in all_jobs(settings_or_exit()).values():
        state = "enabled" if job.enabled else "disabled"
        out.print(f"{job.name:<28} {job.schedule:<16} {state}")


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=out
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
