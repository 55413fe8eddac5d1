"""`nespay keys generate` and `nespay keys rotate`, end to end on a database of their own."""

import re
import subprocess
import sys

import pytest
from sqlalchemy import select, text

from nespay.callbacks.service import signing_secret
from nespay.db import Database
from nespay.models import WebhookEndpoint
from tests.fixtures.app import app_client
from tests.fixtures.database import make_settings
from tests.fixtures.factories import merchant_with_key
from tests.fixtures.processes import base_env

OLD = "11" * 64


def nespay(*args, env):
    return subprocess.run(
        [sys.executable, "-m", "nespay.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_generate_prints_a_fresh_128_hex_key():
    first = nespay("keys", "generate", env=base_env("postgresql://x@h/db")).stdout.strip()
    second = nespay("keys", "generate", env=base_env("postgresql://x@h/db")).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{128}", first) and first != second


@pytest.mark.own_database  # every secret of the database is rotated, and counted
async def test_rotate_reencrypts_every_secret_and_the_new_key_alone_reads_them(database_url):
    from nespay.apps import api

    old = make_settings(database_url, encryption_master_key=OLD)
    database = Database(old)
    owner = await merchant_with_key(database)
    async with app_client(api.create_app, old) as (_, client):
        secrets = [
            (
                await client.post(
                    "/api/v1/webhook-endpoints",
                    headers=owner.headers,
                    json={"url": "http://127.0.0.1:9/h", "events": ["*"]},
                )
            ).json()["secret"]
            for _ in range(3)
        ]
    new_key = nespay("keys", "generate", env=base_env(database_url)).stdout.strip()
    env = base_env(database_url, ENCRYPTION_MASTER_KEY=new_key, ENCRYPTION_MASTER_KEY_PREVIOUS=OLD)
    rotated = nespay("keys", "rotate", env=env)
    again = nespay("keys", "rotate", env=env)
    assert rotated.returncode == 0, rotated.stderr
    assert (
        "webhook_endpoints.secret_encrypted: 3 re-encrypted, 0 remaining, 0 failed"
        in rotated.stdout
    )
    assert "0 re-encrypted" in again.stdout
    assert new_key not in rotated.stdout + rotated.stderr and OLD not in rotated.stdout

    only_new = make_settings(database_url, encryption_master_key=new_key)
    async with database.session() as session:
        endpoints = (await session.scalars(select(WebhookEndpoint))).all()
        read = sorted(signing_secret(only_new, endpoint) for endpoint in endpoints)
        audit = await session.scalar(
            text("SELECT count(*) FROM audit_logs WHERE action = 'secrets.rotated'")
        )
    await database.dispose()
    assert read == sorted(secrets)
    assert audit == 2
