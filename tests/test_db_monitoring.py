"""DB_MONITORING_*: statements slower than the threshold are logged with their duration and
text, never their parameters."""

import logging

from sqlalchemy import text

from nespay.db import Database
from nespay.logging import configure_logging
from tests.fixtures.database import make_settings


async def test_slow_statements_are_logged_with_duration_and_without_parameters(
    database_url, caplog
):
    settings = make_settings(
        database_url,
        db_monitoring_enabled=True,
        db_slow_query_threshold=50,
        db_monitoring_level="warning",
    )
    configure_logging(settings, "test")  # structlog → the standard library, where caplog listens
    db = Database(settings)
    caplog.set_level(logging.WARNING, logger="nespay.db")
    try:
        async with db.engine.connect() as conn:
            await conn.execute(text("SELECT pg_sleep(0.1), :secret"), {"secret": "hunter2-param"})
            await conn.execute(text("SELECT 1"))
    finally:
        await db.dispose()
    slow = [r for r in caplog.records if "slow_query" in r.getMessage()]
    assert len(slow) == 1
    message = slow[0].getMessage()
    assert "pg_sleep" in message and "duration_ms" in message
    assert "hunter2-param" not in message


async def test_monitoring_off_logs_nothing(database_url, caplog):
    db = Database(make_settings(database_url))
    caplog.set_level(logging.DEBUG, logger="nespay.db")
    try:
        async with db.engine.connect() as conn:
            await conn.execute(text("SELECT pg_sleep(0.06)"))
    finally:
        await db.dispose()
    assert not [r for r in caplog.records if "slow_query" in r.getMessage()]
