"""Alembic environment: runs on the connection `nespay.db.migrate` hands over."""

from alembic import context

from nespay.models import Base

connection = context.config.attributes["connection"]
settings = context.config.attributes["settings"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    compare_type=True,
    transaction_per_migration=True,
    # The version table of the schema being migrated, never one found further along the
    # search_path (a database may hold several deployments, one per schema).
    version_table_schema=settings.database_schema,
)
with context.begin_transaction():
    context.run_migrations()
