"""`nespay wallets import-hot-key`: the key comes from standard input only, is stored
encrypted and bound to its row, is never printed or logged, and `nespay keys rotate`
re-encrypts it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from eth_account import Account
from sqlalchemy import text

from nespay.db import Database
from nespay.kit.addresses import checksum_address
from nespay.security.encryption import keyring_from_settings
from nespay.wallets import hotkeys
from tests.fixtures.database import make_settings
from tests.fixtures.factories import register_network
from tests.fixtures.processes import base_env

pytestmark = pytest.mark.own_database
OLD = "22" * 64


def nespay(*args, env, input_text=None):
    return subprocess.run(
        [sys.executable, "-m", "nespay.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        input=input_text,
        timeout=120,
    )


def new_key() -> tuple[str, str]:
    account = Account.create()
    return bytes(account.key).hex(), account.address


async def wallets(database: Database) -> list[dict]:
    async with database.engine.connect() as conn:
        rows = await conn.execute(text("SELECT * FROM hot_wallets ORDER BY created_at"))
        return [dict(row._mapping) for row in rows]


async def test_import_reads_stdin_prints_the_address_and_stores_the_key_encrypted(
    database_url, database, settings
):
    network = await register_network(database, ["http://127.0.0.1:9"], "0x" + "11" * 20)
    key, address = new_key()
    env = base_env(database_url)
    done = nespay("wallets", "import-hot-key", "--network", network, env=env, input_text=key + "\n")
    assert done.returncode == 0, done.stderr
    assert checksum_address(address) in done.stdout
    assert key not in done.stdout + done.stderr

    (row,) = await wallets(database)
    assert row["address"] == address.lower() and row["role"] == "payouts"
    assert row["signer"] == "local" and row["active"]
    token = row["private_key_encrypted"]
    assert token.startswith("enc:v1:") and key not in token
    async with database.engine.connect() as conn:
        assert await hotkeys.private_key(conn, keyring_from_settings(settings), row["id"]) == (
            "0x" + key
        )
        audit = (
            await conn.execute(
                text("SELECT detail::text FROM audit_logs WHERE action = 'hot_wallet.imported'")
            )
        ).scalar_one()
    assert address.lower() in audit and key not in audit

    # A second import replaces the active wallet of that role; the first is kept, inactive.
    other, _ = new_key()
    again = nespay("wallets", "import-hot-key", "--network", network, env=env, input_text=other)
    assert again.returncode == 0, again.stderr
    assert [w["active"] for w in await wallets(database)] == [False, True]
    listed = nespay("wallets", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert checksum_address(address) in listed.stdout and "inactive" in listed.stdout
    assert key not in listed.stdout and other not in listed.stdout


async def test_import_refuses_the_key_as_an_argument_without_echoing_it(database_url, database):
    network = await register_network(database, ["http://127.0.0.1:9"], "0x" + "11" * 20)
    key, _ = new_key()
    done = nespay(
        "wallets", "import-hot-key", "--network", network, key, env=base_env(database_url)
    )
    assert done.returncode != 0
    assert "standard input only" in done.stderr
    assert key not in done.stdout + done.stderr
    assert await wallets(database) == []


async def test_import_refuses_a_malformed_key_without_echoing_it(database_url, database):
    network = await register_network(database, ["http://127.0.0.1:9"], "0x" + "11" * 20)
    garbage = "not-a-key-" + "7" * 40
    done = nespay(
        "wallets",
        "import-hot-key",
        "--network",
        network,
        env=base_env(database_url),
        input_text=garbage,
    )
    assert done.returncode != 0 and "64 hex characters" in done.stderr
    assert garbage not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert await wallets(database) == []


async def test_keys_rotate_re_encrypts_the_hot_wallet_key(database_url, database):
    network = await register_network(database, ["http://127.0.0.1:9"], "0x" + "11" * 20)
    key, _ = new_key()
    old_env = base_env(database_url, ENCRYPTION_MASTER_KEY=OLD)
    imported = nespay(
        "wallets", "import-hot-key", "--network", network, env=old_env, input_text=key
    )
    assert imported.returncode == 0, imported.stderr
    fresh = nespay("keys", "generate", env=old_env).stdout.strip()
    env = base_env(database_url, ENCRYPTION_MASTER_KEY=fresh, ENCRYPTION_MASTER_KEY_PREVIOUS=OLD)
    rotated = nespay("keys", "rotate", env=env)
    assert rotated.returncode == 0, rotated.stderr
    assert "hot_wallets.private_key_encrypted: 1 re-encrypted" in rotated.stdout
    assert key not in rotated.stdout + rotated.stderr

    (row,) = await wallets(database)
    only_new = keyring_from_settings(make_settings(database_url, encryption_master_key=fresh))
    async with database.engine.connect() as conn:
        assert await hotkeys.private_key(conn, only_new, row["id"]) == "0x" + key
