"""The `nespay` command: migrate, seed, reset, serve's refusals, jobs listing."""

import subprocess
import sys

import asyncpg
import pytest

from tests.fixtures.database import create_database, drop_database
from tests.fixtures.processes import base_env, free_port


def nespay(*args, env, input_text=None):
    return subprocess.run(
        [sys.executable, "-m", "nespay.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        input=input_text,
        timeout=120,
    )


@pytest.fixture
async def blank_database():
    name = f"nespay_cli_{free_port()}"
    url = await create_database(name)
    yield url
    await drop_database(name)


async def table_count(url, table):
    conn = await asyncpg.connect(url.split("?")[0])
    try:
        return await conn.fetchval(f"SELECT count(*) FROM {table}")
    finally:
        await conn.close()


async def test_serve_refuses_an_unmigrated_schema_naming_the_command(blank_database):
    result = nespay("serve", "api", "--port", str(free_port()), env=base_env(blank_database))
    assert result.returncode != 0
    assert "nespay db migrate" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


async def test_serve_with_unreachable_database_says_what_to_check():
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nespay?schema=public"
    result = nespay("serve", "api", env=base_env(url))
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr


async def test_migrate_then_seed_twice_is_idempotent(blank_database):
    env = base_env(blank_database)
    assert nespay("db", "migrate", env=env).returncode == 0
    first = nespay("db", "seed", env=env)
    assert first.returncode == 0, first.stderr
    counts = [
        await table_count(blank_database, t) for t in ("networks", "currencies", "rpc_endpoints")
    ]
    second = nespay("db", "seed", env=env)
    assert second.returncode == 0, second.stderr
    assert "0 networks, 0 currencies, 0 RPC endpoints added" in second.stdout
    again = [
        await table_count(blank_database, t) for t in ("networks", "currencies", "rpc_endpoints")
    ]
    assert again == counts
    assert counts[0] >= 15


async def test_migrate_creates_pg_trgm_and_honours_the_schema_parameter(blank_database):
    url = blank_database.replace("schema=public", "schema=merchant_a")
    assert nespay("db", "migrate", env=base_env(url)).returncode == 0
    conn = await asyncpg.connect(url.split("?")[0])
    try:
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'merchant_a'"
        )
        trgm = await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'")
    finally:
        await conn.close()
    assert {"networks", "currencies", "rpc_endpoints", "job_schedules"} <= {r[0] for r in tables}
    assert trgm == 1


async def test_a_second_schema_beside_a_migrated_one_is_checked_and_migrated_on_its_own(
    blank_database,
):
    """Two deployments in one database, one schema each: the second one's tables and version
    are its own, not found through the search_path in `public`."""
    assert nespay("db", "migrate", env=base_env(blank_database)).returncode == 0
    url = blank_database.replace("schema=public", "schema=tenant_b")
    refused = nespay("serve", "api", "--port", str(free_port()), env=base_env(url))
    migrated = nespay("db", "migrate", env=base_env(url))
    conn = await asyncpg.connect(url.split("?")[0])
    try:
        tables = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'tenant_b'"
        )
        public = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
        versions = [
            await conn.fetchval(f"SELECT version_num FROM {schema}.alembic_version")
            for schema in ("public", "tenant_b")
        ]
    finally:
        await conn.close()
    assert refused.returncode != 0 and "nespay db migrate" in refused.stderr
    assert migrated.returncode == 0, migrated.stderr
    assert tables == public > 20
    assert versions[0] == versions[1] is not None


async def test_deployments_in_one_database_share_pg_trgm_and_a_reset_spares_the_others(
    blank_database,
):
    """pg_trgm lives in a schema of its own: a deployment migrated after another finds it, and
    resetting one (DROP SCHEMA … CASCADE) does not drop it with the other's trigram indexes."""
    first = blank_database.replace("schema=public", "schema=tenant_a")
    assert nespay("db", "migrate", env=base_env(first)).returncode == 0
    second = nespay("db", "migrate", env=base_env(blank_database))
    reset = nespay("db", "reset", "--yes", env=base_env(first))
    conn = await asyncpg.connect(blank_database.split("?")[0])
    try:
        home = await conn.fetchval(
            "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_trgm'"
        )
        trigram = dict(
            await conn.fetch(
                "SELECT schemaname, count(*) FROM pg_indexes "
                "WHERE indexdef LIKE '%gin_trgm_ops%' GROUP BY schemaname"
            )
        )
    finally:
        await conn.close()
    assert second.returncode == 0, second.stderr
    assert reset.returncode == 0, reset.stderr
    assert home == "extensions"
    assert trigram["public"] == trigram["tenant_a"] >= 5


async def test_pg_trgm_found_where_no_deployment_looks_is_refused_saying_what_to_run(
    blank_database,
):
    conn = await asyncpg.connect(blank_database.split("?")[0])
    try:
        await conn.execute("CREATE SCHEMA odd; CREATE EXTENSION pg_trgm SCHEMA odd")
    finally:
        await conn.close()
    refused = nespay("db", "migrate", env=base_env(blank_database))
    assert refused.returncode != 0
    assert "ALTER EXTENSION pg_trgm SET SCHEMA extensions" in " ".join(refused.stderr.split())
    assert "Traceback" not in refused.stderr + refused.stdout


async def test_reset_asks_first_and_refuses_without_a_terminal(blank_database):
    env = base_env(blank_database)
    assert nespay("db", "migrate", env=env).returncode == 0
    assert nespay("db", "seed", env=env).returncode == 0
    refused = nespay("db", "reset", env=env, input_text="y\n")
    assert refused.returncode != 0
    assert "--yes" in refused.stderr
    assert await table_count(blank_database, "networks") > 0


async def test_reset_with_yes_drops_and_reapplies_everything(blank_database):
    env = base_env(blank_database)
    nespay("db", "migrate", env=env)
    conn = await asyncpg.connect(blank_database.split("?")[0])
    await conn.execute("INSERT INTO networks (code, name, chain_family) VALUES ('x', 'X', 'evm')")
    await conn.close()
    result = nespay("db", "reset", "--yes", "--no-seed", env=env)
    assert result.returncode == 0, result.stderr
    assert await table_count(blank_database, "networks") == 0


async def test_jobs_run_unknown_name_lists_the_known_ones(database_url):
    result = nespay("jobs", "run", "nope", env=base_env(database_url))
    assert result.returncode != 0
    assert "chains.rpc_health" in result.stderr


async def test_bad_configuration_is_one_line_and_nonzero():
    result = nespay(
        "db", "migrate", env=base_env("postgresql://u@h:1/db", ENCRYPTION_MASTER_KEY="xyz")
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "config error: ENCRYPTION_MASTER_KEY: expected 128 hex characters (64 bytes); "
        "generate with `nespay keys generate`"
    ]
