"""The migrations and the models describe the same schema."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from nespay.db import head_revisions
from nespay.models import Base


async def test_models_and_migrations_do_not_drift(database, settings):
    def compare(sync_conn):
        return compare_metadata(MigrationContext.configure(sync_conn), Base.metadata)

    async with database.engine.connect() as conn:
        differences = await conn.run_sync(compare)
    assert differences == []


def test_there_is_exactly_one_head(settings):
    assert len(head_revisions(settings)) == 1
