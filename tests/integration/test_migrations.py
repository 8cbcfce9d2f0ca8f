"""The schema migrations: idempotent upgrades, no drift from `wfed.store.schema.metadata`,
and a clear refusal to run on a database without the schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Connection, Integer, MetaData, String, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from wfed import Engine, SchemaOutdated
from wfed.store import migrate
from wfed.store.database import Database
from wfed.store.schema import metadata


async def test_upgrade_twice_is_idempotent(engine: Engine) -> None:
    """On a database already at head, `upgrade` returns before == after == head, twice,
    and leaves the schema current."""
    head = migrate.head_revision()

    assert await migrate.upgrade(engine.db) == (head, head)
    assert await migrate.upgrade(engine.db) == (head, head)
    assert await migrate.current_revision(engine.db) == head
    await migrate.require_current(engine.db)


async def test_upgrade_of_an_empty_database_then_again(tmp_path: Path) -> None:
    """On an empty database the first `upgrade` goes from nothing to head, the second
    from head to head."""
    db = Database(
        URL.create("sqlite+aiosqlite", database=str(tmp_path / "new.db")).render_as_string()
    )
    try:
        head = migrate.head_revision()
        assert await migrate.upgrade(db) == (None, head)
        assert await migrate.upgrade(db) == (head, head)
        await migrate.require_current(db)
    finally:
        await db.dispose()


def _diffs(connection: Connection, target: MetaData = metadata) -> list[Any]:
    """Alembic's autogenerate differences between the database and `target`, with types
    and server defaults compared too (wfed's own version table is not in `target`)."""
    context = MigrationContext.configure(
        connection,
        opts={
            "version_table": migrate.VERSION_TABLE,
            "compare_type": True,
            "compare_server_default": True,
        },
    )
    return compare_metadata(context, target)


async def test_migrated_schema_matches_the_metadata(engine: Engine) -> None:
    """After `upgrade`, Alembic's autogenerate comparison finds no difference between the
    database and `wfed.store.schema.metadata`."""
    async with engine.db.engine.connect() as conn:
        diffs = await conn.run_sync(_diffs)

    # No comparator noise needs filtering on SQLite, MariaDB or PostgreSQL: server
    # defaults (including the per-dialect UTC `now` default) and the JSON/JSONB,
    # DATETIME(6) and INTEGER/BIGINT variants compare equal as reflected.
    assert diffs == []


async def test_schema_comparison_detects_a_drift(engine: Engine) -> None:
    """The comparison above is not vacuous: a metadata with an extra column, a missing
    index and a changed column type is reported as different."""
    drifted = MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(drifted)
    workflows = drifted.tables["workflows"]
    workflows.append_column(Column("extra_drift", Integer, nullable=True))
    workflows.indexes.discard(next(i for i in workflows.indexes if i.name == "ix_workflows_claim"))
    drifted.tables["daemons"].c.version.type = String(32)

    async with engine.db.engine.connect() as conn:
        diffs = await conn.run_sync(_diffs, drifted)

    found = {(d[0] if isinstance(d, tuple) else d[0][0]) for d in diffs}
    assert {"add_column", "remove_index", "modify_type"} <= found


async def test_require_current_refuses_an_empty_database(tmp_path: Path) -> None:
    """`require_current` on a database without the schema raises SchemaOutdated telling
    the operator to run `wfectl db upgrade`."""
    db = Database(
        URL.create("sqlite+aiosqlite", database=str(tmp_path / "empty.db")).render_as_string()
    )
    try:
        with pytest.raises(SchemaOutdated, match="wfectl db upgrade") as outdated:
            await migrate.require_current(db)
        assert "missing" in str(outdated.value)
    finally:
        await db.dispose()


@pytest.mark.parametrize(
    ("column", "value"),
    [("state", "PENDING"), ("state", "pending "), ("requested", "Stop"), ("requested", "stop ")],
)
async def test_a_state_or_request_must_be_written_exactly(
    engine: Engine, column: str, value: str
) -> None:
    """Every backend refuses a state or a request that differs from a known one only by
    case or a trailing space (MariaDB's collation would otherwise let it through, and no
    reader of the row could make sense of it)."""
    with pytest.raises(DBAPIError):
        async with engine.db.engine.begin() as conn:
            await conn.execute(
                text(
                    f"INSERT INTO workflows (name, steps, context, {column}) "
                    "VALUES (:name, '[\"noop\"]', '{}', :value)"
                ),
                {"name": f"exact-{column}-{value.strip()}", "value": value},
            )
