"""Alembic environment: wfed always passes its own connection (see wfed.store.migrate)."""

from alembic import context

from wfed.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=context.config.attributes["version_table"],
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
