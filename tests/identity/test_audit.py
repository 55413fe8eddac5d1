"""The audit log is append-only, enforced by the database."""

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError


# A database of its own: the statements below name every row, and the count is exact.
@pytest.mark.own_database
async def test_database_refuses_update_delete_and_truncate_of_the_audit_log(database):
    async with database.engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO audit_logs (actor_type, action) VALUES ('system', 'test.entry')")
        )
    for statement in (
        "UPDATE audit_logs SET action = 'tampered'",
        "DELETE FROM audit_logs",
        "TRUNCATE audit_logs",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with database.engine.begin() as conn:
                await conn.execute(text(statement))
    async with database.engine.connect() as conn:
        actions = (await conn.execute(text("SELECT action FROM audit_logs"))).scalars().all()
    assert actions == ["test.entry"]
