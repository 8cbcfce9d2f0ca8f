"""`Database.autocommit`: each statement commits on its own (MySQL and PostgreSQL; on
SQLite, which has no wire to save, it is a plain transaction)."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from wfed.store.schema import workflows


@pytest.mark.parametrize("backend", ["mariadb", "postgresql"])
async def test_an_autocommit_write_is_visible_before_the_connection_is_returned(
    request: pytest.FixtureRequest, make_engine, new_name, backend: str
) -> None:
    """A write on an autocommit connection is committed when the statement returns:
    another connection reads it while the first is still checked out."""
    engine = make_engine(request.getfixturevalue(f"{backend}_url"))
    name = new_name("autocommit")
    await engine.create_workflow(name, None, ["noop"], queue="itest")
    async with engine.db.autocommit() as conn:
        await conn.execute(
            update(workflows).where(workflows.c.name == name).values(last_error="seen")
        )
        async with engine.db.engine.connect() as other:
            seen = await other.scalar(
                select(workflows.c.last_error).where(workflows.c.name == name)
            )
    assert seen == "seen"
