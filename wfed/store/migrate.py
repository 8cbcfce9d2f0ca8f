"""Schema creation and upgrades (Alembic, run on wfed's own connection), and the check the
daemon and wfectl make that the schema is current.

The check reads the version table with one plain query and compares it with `REVISIONS`:
Alembic, and the migration scripts it loads, are imported only by an upgrade.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text

from wfed.errors import SchemaOutdated
from wfed.store.database import Database

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

VERSION_TABLE = "wfed_schema_version"
REVISIONS = ("0001", "0002", "0003", "0004", "0005", "0006", "0007")
"""The `revision` of every migration in wfed/store/migrations/versions, oldest first (a
test compares them with the scripts): a new migration adds its own here."""
HEAD = REVISIONS[-1]


def _alembic_config(connection: Connection | None = None) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig  # noqa: PLC0415 - upgrades only

    config = AlembicConfig()
    config.set_main_option("script_location", "wfed.store:migrations")
    config.attributes["version_table"] = VERSION_TABLE
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest schema revision this wfed knows, as its migration scripts say."""
    from alembic.script import ScriptDirectory  # noqa: PLC0415 - upgrades only

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:
        raise AssertionError("no schema migrations are packaged")
    return head


def script_revisions() -> list[str]:
    """The revisions of the migration scripts, oldest first (what `REVISIONS` lists)."""
    from alembic.script import ScriptDirectory  # noqa: PLC0415 - upgrades only

    scripts = ScriptDirectory.from_config(_alembic_config())
    return [script.revision for script in reversed(list(scripts.walk_revisions()))]


def _current(connection: Connection) -> str | None:
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    revision = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
    return None if revision is None else str(revision)


async def current_revision(db: Database) -> str | None:
    """The revision the database is at (None: no wfed schema)."""
    async with db.connection() as conn:
        return await conn.run_sync(_current)


async def upgrade(db: Database) -> tuple[str | None, str]:
    """Create or migrate the schema to the head revision; idempotent.

    Returns the revisions before and after.
    """

    from alembic import command  # noqa: PLC0415 - upgrades only

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
    head = HEAD
    if current == head:
        return
    if current is not None and current not in REVISIONS:
        raise SchemaOutdated(
            f"the wfed schema in {db.display_url} is at revision {current}, newer than this "
            f"wfed knows (up to {head}): upgrade wfed on this host"
        )
    state = "missing" if current is None else f"at revision {current}, this wfed needs {head}"
    raise SchemaOutdated(f"the wfed schema in {db.display_url} is {state}: run `wfectl db upgrade`")
