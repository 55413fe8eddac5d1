"""`nespay wallets import-xprv` and `nespay networks set-treasury` as an operator runs them:
the xprv from standard input only, stored encrypted, never echoed, re-encrypted by `keys
rotate`; the treasury checked and audit-logged."""

from __future__ import annotations

import pytest
from eth_account import Account
from sqlalchemy import text

from nespay.kit.addresses import checksum_address
from nespay.wallets import hdkeys
from tests.fixtures.database import make_settings
from tests.fixtures.factories import register_network
from tests.fixtures.processes import base_env
from tests.wallets.test_hot_keys import OLD, nespay

pytestmark = pytest.mark.own_database
XPRV = hdkeys.dev_account_xprv()


async def _stored(database) -> list[dict]:
    async with database.engine.connect() as conn:
        rows = await conn.execute(text("SELECT * FROM hd_account_keys"))
        return [dict(row._mapping) for row in rows]


async def test_import_xprv_reads_stdin_stores_it_encrypted_and_rotates(database_url, database):
    env = base_env(database_url, ENCRYPTION_MASTER_KEY=OLD)
    refused = nespay("wallets", "import-xprv", XPRV, env=env)
    assert refused.returncode != 0 and "standard input only" in refused.stderr
    assert XPRV not in refused.stdout + refused.stderr
    wrong = Account.create()  # not an xprv at all
    bad = nespay("wallets", "import-xprv", env=env, input_text=bytes(wrong.key).hex())
    assert bad.returncode != 0 and "not a valid extended private key" in bad.stderr
    assert "Traceback" not in bad.stderr and await _stored(database) == []

    done = nespay("wallets", "import-xprv", env=env, input_text=XPRV + "\n")
    assert done.returncode == 0, done.stderr
    assert XPRV not in done.stdout + done.stderr
    [row] = await _stored(database)
    assert row["xprv_encrypted"].startswith("enc:v1:") and XPRV not in row["xprv_encrypted"]
    assert row["xpub"] in done.stdout

    fresh = nespay("keys", "generate", env=env).stdout.strip()
    rotated = nespay(
        "keys",
        "rotate",
        env=base_env(database_url, ENCRYPTION_MASTER_KEY=fresh, ENCRYPTION_MASTER_KEY_PREVIOUS=OLD),
    )
    assert rotated.returncode == 0, rotated.stderr
    assert "hd_account_keys.xprv_encrypted: 1 re-encrypted" in rotated.stdout
    settings = make_settings(database_url, encryption_master_key=fresh)
    from nespay.security.encryption import keyring_from_settings

    address = "0x434b1afe11ab901537048e83e21b7044c1beea27"  # deposit address 0/5
    async with database.engine.connect() as conn:
        key = await hdkeys.deposit_private_key(
            conn, keyring_from_settings(settings), "evm", 5, address
        )
    assert Account.from_key(key).address.lower() == address


async def test_set_treasury_checks_the_address_and_audits_it(database_url, database):
    network = await register_network(database, ["http://127.0.0.1:9"], "0x" + "11" * 20)
    env = base_env(database_url)
    treasury = Account.create().address
    mistyped = "0x" + treasury[2:].swapcase()  # mixed case, but not its checksum
    refused = nespay("networks", "set-treasury", network, mistyped, env=env)
    assert refused.returncode != 0 and "EIP-55" in refused.stderr, refused.stderr
    done = nespay("networks", "set-treasury", network, treasury, env=env)
    assert done.returncode == 0, done.stderr
    assert checksum_address(treasury) in done.stdout
    async with database.engine.connect() as conn:
        stored = await conn.scalar(
            text("SELECT treasury_address FROM networks WHERE code = :n"), {"n": network}
        )
        audit = await conn.scalar(
            text("SELECT detail::text FROM audit_logs WHERE action = 'network.treasury_set'")
        )
    assert stored == treasury.lower() and treasury.lower() in audit
