"""Schema creation and upgrades (Alembic, run on wfed's own connection), and the check the
daemon makes at start-up that the schema is current."""

from __future__ import annotations

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from wfed.errors import SchemaOutdated
from wfed.store.database import Database

VERSION_TABLE = "wfed_schema_version"


def _alembic_config(connection: Connection | None = None) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", "wfed.store:migrations")
    config.attributes["version_table"] = VERSION_TABLE
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest schema revision this wfed knows."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:
        raise AssertionError("no schema migrations are packaged")
    return head


def _current(connection: Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


async def current_revision(db: Database) -> str | None:
    """The revision the database is at (None: no wfed schema)."""
    async with db.connection() as conn:
        return await conn.run_sync(_current)


async def upgrade(db: Database) -> tuple[str | None, str]:
    """Create or migrate the schema to the head revision; idempotent.

    Returns the revisions before and after.
    """

    def _upgrade(connection: Connection) -> str | None:
        before = _current(connection)
        command.upgrade(_alembic_config(connection), "head")
        return before

    with db.creating():  # the one place a missing SQLite file may be created
        async with db.transaction() as conn:
            before = await conn.run_sync(_upgrade)
    return before, head_revision()


async def require_current(db: Database) -> None:
    """Raise SchemaOutdated unless the schema is at the head revision."""
    current = await current_revision(db)
    head = head_revision()
    if current == head:
        return
    scripts = ScriptDirectory.from_config(_alembic_config())
    if current is not None and current not in {s.revision for s in scripts.walk_revisions()}:
        raise SchemaOutdated(
            f"the wfed schema in {db.display_url} is at revision {current}, newer than this "
            f"wfed knows (up to {head}): upgrade wfed on this host"
        )
    state = "missing" if current is None else f"at revision {current}, this wfed needs {head}"
    raise SchemaOutdated(f"the wfed schema in {db.display_url} is {state}: run `wfectl db upgrade`")
