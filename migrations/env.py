"""Alembic environment: runs on the connection `nespay.db.migrate` hands over."""

from alembic import context

from nespay.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    compare_type=True,
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
