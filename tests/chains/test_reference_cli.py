"""`nespay networks …` and `nespay currencies …` on the test database: what they print, what
they store and audit (as system/cli), and their one-line errors."""

import asyncio
import itertools
import os

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from nespay.auth.principals import Actor
from nespay.chains import service
from nespay.chains.cli import currencies_app, networks_app
from nespay.chains.schemas import NetworkCreate
from tests.fixtures.processes import base_env

USDT = "0xdAC17F958D2ee523a2206206994597C13D831ec7"
SECRET = "cl1S3cretKey987"
_n = itertools.count()


@pytest.fixture(scope="module")
def env(shared_database_url):
    return base_env(shared_database_url, COLUMNS="250", NO_COLOR="1")


async def run(app, *args, env):
    """The command in a worker thread (it runs its own event loop, like `nespay` does)."""
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    return result


def one_line(result):
    return " ".join(result.output.split())


async def new_network(database, family="evm", enabled=False):
    code = f"cli{os.getpid() % 10_000}-{next(_n)}"
    async with database.session() as session:
        await service.create_network(
            session,
            Actor("system", "tests"),
            NetworkCreate(
                code=code,
                name="CLI chain",
                chain_family=family,
                chain_id=800_000 + next(_n) if family == "evm" else None,
                enabled=enabled,
            ),
        )
    return code


async def audit(database, action_prefix, network):
    async with database.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT action, actor_type, actor_id, before, after FROM audit_logs"
                " WHERE action LIKE :a AND (after->>'network' = :n OR target_id = :n"
                "   OR target_id IN (SELECT id FROM rpc_endpoints WHERE network_code = :n))"
                " ORDER BY id"
            ),
            {"a": f"{action_prefix}%", "n": network},
        )
        return [dict(row._mapping) for row in rows]


async def test_set_rpc_adds_then_updates_the_endpoint_and_never_prints_its_key(env, database):
    code = await new_network(database)
    url = f"https://polygon-mainnet.infura.io/v3/{SECRET}"
    added = await run(networks_app, "set-rpc", code, url, "--priority", "5", env=env)
    again = await run(networks_app, "set-rpc", code, url, env=env)
    reprioritised = await run(networks_app, "set-rpc", code, url, "--priority", "7", env=env)
    async with database.engine.begin() as conn:
        await conn.execute(
            text("UPDATE rpc_endpoints SET enabled = false WHERE network_code = :n"), {"n": code}
        )
    enabled = await run(networks_app, "set-rpc", code, url, env=env)
    listed = await run(networks_app, "list", env=env)

    assert added.exit_code == 0, added.output
    masked = "https://polygon-mainnet.infura.io/v3/***"
    assert f"added RPC endpoint {masked} on {code}" in one_line(added)
    assert "priority 5, enabled" in one_line(added)
    assert "already enabled with priority 5: nothing to change" in one_line(again)
    assert "updated RPC endpoint" in one_line(reprioritised)
    assert "priority 5 → 7" in one_line(reprioritised)
    assert "enabled False → True" in one_line(enabled)
    line = next(line for line in listed.output.splitlines() if line.startswith(code))
    assert "disabled" in line and "rpc 1/1 enabled" in line
    for result in (added, again, reprioritised, enabled, listed):
        assert SECRET not in result.output

    async with database.engine.connect() as conn:
        stored = (
            await conn.execute(
                text("SELECT url, priority, enabled FROM rpc_endpoints WHERE network_code = :n"),
                {"n": code},
            )
        ).all()
    assert [tuple(row) for row in stored] == [(url, 7, True)]
    log = await audit(database, "rpc_endpoint.", code)
    assert [e["action"] for e in log] == [
        "rpc_endpoint.created",
        "rpc_endpoint.updated",
        "rpc_endpoint.updated",
    ]  # the no-op changed nothing and wrote nothing
    assert {(e["actor_type"], e["actor_id"]) for e in log} == {("system", "cli")}
    assert log[0]["after"]["url"] == masked
    assert SECRET not in str(log)


async def test_enable_and_disable_a_network(env, database):
    code = await new_network(database)
    enabled = await run(networks_app, "enable", code, env=env)
    twice = await run(networks_app, "enable", code, env=env)
    disabled = await run(networks_app, "disable", code, env=env)

    assert enabled.exit_code == 0 and f"{code} enabled" in one_line(enabled)
    assert "no enabled RPC endpoint yet" in one_line(enabled)
    assert twice.exit_code == 0 and "already enabled" in one_line(twice)
    assert disabled.exit_code == 0 and f"{code} disabled" in one_line(disabled)
    log = await audit(database, "network.updated", code)
    assert [(e["before"], e["after"]) for e in log] == [
        ({"enabled": False}, {"enabled": True}),
        ({"enabled": True}, {"enabled": False}),
    ]
    assert {(e["actor_type"], e["actor_id"]) for e in log} == {("system", "cli")}


async def test_currencies_add_tokens_and_native_coins_and_list_them(env, database):
    evm = await new_network(database)
    tron = await new_network(database, family="tron")
    native = await run(currencies_app, "add", "--network", evm, "--code", "ETH", "--decimals",
                       "18", env=env)  # fmt: skip
    token = await run(currencies_app, "add", "--network", evm, "--code", "USDT", "--contract",
                      USDT, "--decimals", "6", "--name", "Tether USD", env=env)  # fmt: skip
    trx = await run(currencies_app, "add", "--network", tron, "--code", "TRX", "--contract",
                    "native", "--decimals", "6", env=env)  # fmt: skip
    listed = await run(currencies_app, "list", "--network", evm, env=env)
    everything = await run(currencies_app, "list", env=env)

    assert native.exit_code == 0 and f"added ETH on {evm}" in one_line(native)
    assert "native coin, 18 decimals" in one_line(native)
    assert f"contract {USDT.lower()}, 6 decimals" in one_line(token)
    assert trx.exit_code == 0 and "native coin" in one_line(trx)
    lines = [line.split() for line in listed.output.splitlines()]
    assert [(line[0], line[1], line[2], line[3]) for line in lines] == [
        (evm, "ETH", "native", "18"),
        (evm, "USDT", USDT.lower(), "6"),
    ]
    assert any(line.startswith(tron) for line in everything.output.splitlines())
    async with database.engine.connect() as conn:
        name = await conn.scalar(
            text("SELECT name FROM currencies WHERE network_code = :n AND code = 'USDT'"),
            {"n": evm},
        )
    assert name == "Tether USD"
    log = await audit(database, "currency.created", evm)
    assert {(e["actor_type"], e["actor_id"]) for e in log} == {("system", "cli")}
    assert len(log) == 2


async def test_enable_and_disable_a_currency(env, database):
    code = await new_network(database)
    await run(currencies_app, "add", "--network", code, "--code", "USDT", "--contract", USDT,
              "--decimals", "6", env=env)  # fmt: skip
    off = await run(currencies_app, "disable", "--network", code, "--code", "usdt", env=env)
    again = await run(currencies_app, "disable", "--network", code, "--code", "USDT", env=env)
    on = await run(currencies_app, "enable", "--network", code, "--code", "USDT", env=env)
    missing = await run(currencies_app, "enable", "--network", code, "--code", "DAI", env=env)

    assert off.exit_code == 0 and f"USDT on {code} disabled" in one_line(off)
    assert "already disabled: nothing to change" in one_line(again)
    assert on.exit_code == 0 and f"USDT on {code} enabled: new invoices offer it" in one_line(on)
    # the network was made disabled: enabling the currency alone does not offer it
    assert f"`nespay networks enable {code}`" in one_line(on)
    assert missing.exit_code == 1
    assert f"{code} has no currency DAI" in one_line(missing)
    async with database.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT a.before, a.after, a.actor_id FROM audit_logs a"
                " JOIN currencies c ON c.id = a.target_id"
                " WHERE a.action = 'currency.updated' AND c.network_code = :n ORDER BY a.id"
            ),
            {"n": code},
        )
        log = [tuple(row) for row in rows]
    assert log == [
        ({"enabled": True}, {"enabled": False}, "cli"),
        ({"enabled": False}, {"enabled": True}, "cli"),
    ]


async def test_mistakes_are_one_clear_line_and_a_non_zero_exit(env, database):
    code = await new_network(database)
    await run(currencies_app, "add", "--network", code, "--code", "ETH", "--decimals", "18",
              env=env)  # fmt: skip
    await run(currencies_app, "add", "--network", code, "--code", "USDT", "--contract", USDT,
              "--decimals", "6", env=env)  # fmt: skip
    nope = f"nope{os.getpid()}"
    add = ["add", "--network", code]
    cases = [
        (currencies_app, [*add, "--code", "X", "--contract", "0x1234", "--decimals", "6"],
         "error: an EVM token contract is 0x followed by 40 hex digits; use --contract native"),
        (currencies_app, [*add, "--code", "USDT", "--contract", USDT[:-1] + "8", "--decimals",
                          "6"], "already has a currency with the code USDT"),
        (currencies_app, [*add, "--code", "USDT2", "--contract", "0x" + USDT[2:].upper(),
                          "--decimals", "6"],
         f"error: network '{code}' already has a currency with the contract {USDT.lower()}"),
        (currencies_app, [*add, "--code", "WETH", "--decimals", "18"],
         f"error: network '{code}' already has its native coin"),
        (currencies_app, [*add, "--code", "X", "--contract", USDT[:-1] + "9", "--decimals",
                          "99"], "error: invalid --decimals Input should be less than or equal"),
        (currencies_app, ["add", "--network", nope, "--code", "X", "--decimals", "6"],
         f"error: unknown network '{nope}'; `nespay networks list` shows them"),
        (currencies_app, ["list", "--network", nope], f"error: unknown network '{nope}'"),
        (networks_app, ["enable", nope], f"error: unknown network '{nope}'"),
        (networks_app, ["set-rpc", nope, "https://rpc.example"],
         f"error: unknown network '{nope}'"),
        (networks_app, ["set-rpc", code, f"ftp://x/{SECRET}"],
         "error: invalid URL must start with http://, https://, ws:// or wss://"),
    ]  # fmt: skip
    for app, args, expected in cases:
        result = await run(app, *args, env=env)
        assert result.exit_code == 1, (args, result.output)
        assert expected in one_line(result), (args, result.output)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert SECRET not in result.output

    async with database.engine.connect() as conn:
        counts = (
            await conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM currencies WHERE network_code = :n),"
                    " (SELECT count(*) FROM rpc_endpoints WHERE network_code = :n)"
                ),
                {"n": code},
            )
        ).one()
    assert tuple(counts) == (2, 0)


async def run_with_input(app, *args, env, stdin: str):
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args), input=stdin, env=env)
    assert "Traceback" not in result.output
    return result


async def test_set_rpc_reads_a_tron_api_key_from_stdin_stores_it_sealed_and_never_shows_it(
    env, database
):
    from nespay.models.reference import RPC_API_KEY
    from nespay.security.encryption import keyring_from_settings, unseal

    code = await new_network(database, family="tron")
    url = "https://api.trongrid.io"
    key, other = "tg-Key-0123456789abcdef", "tg-Key-fedcba9876543210"
    added = await run_with_input(
        networks_app, "set-rpc", code, url, "--api-key-stdin", env=env, stdin=key + "\n"
    )
    assert added.exit_code == 0, added.output
    replaced = await run_with_input(
        networks_app, "set-rpc", code, url, "--api-key-stdin", env=env, stdin=other + "\n"
    )
    assert replaced.exit_code == 0 and "api_key" in one_line(replaced)
    # As an argument it is refused, and not echoed back.
    refused = await run(networks_app, "set-rpc", code, url, "--api-key", key, env=env)
    assert refused.exit_code != 0
    async with database.engine.connect() as conn:
        (endpoint_id, sealed) = (
            await conn.execute(
                text("SELECT id, api_key_encrypted FROM rpc_endpoints WHERE network_code = :n"),
                {"n": code},
            )
        ).one()
    assert sealed and key not in sealed and other not in sealed
    keyring = keyring_from_settings(database.settings)
    assert unseal(keyring, RPC_API_KEY, endpoint_id, sealed) == other
    log = await audit(database, "rpc_endpoint.", code)
    assert [e["action"] for e in log] == ["rpc_endpoint.created", "rpc_endpoint.updated"]
    for text_seen in (added.output, replaced.output, refused.output, str(log)):
        assert key not in text_seen and other not in text_seen

    evm = await new_network(database)
    unused = await run_with_input(
        networks_app, "set-rpc", evm, url, "--api-key-stdin", env=env, stdin=key + "\n"
    )
    assert unused.exit_code == 1 and key not in unused.output
    async with database.engine.connect() as conn:
        count = await conn.scalar(
            text("SELECT count(*) FROM rpc_endpoints WHERE network_code = :n"), {"n": evm}
        )
    assert count == 0
