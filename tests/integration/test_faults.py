"""Database errors are classified exactly, from errors the real servers raise."""

from __future__ import annotations

import socket

import pytest
from conftest import unique_name
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from wfed import Engine
from wfed.errors import DatabaseUnavailable
from wfed.store.database import Database, is_outage
from wfed.store.faults import Fault, classify


async def _error_of(engine: Engine, statement: str, **params: object) -> BaseException:
    try:
        async with engine.db.transaction() as conn:
            await conn.execute(text(statement), params)
    except (DBAPIError, DatabaseUnavailable) as exc:
        return exc
    raise AssertionError(f"{statement!r} did not fail")


async def test_refused_data_is_data_not_an_outage(engine: Engine) -> None:
    """A duplicate name and JSON the server refuses are DATA, which is never waited out."""
    name = unique_name("fault")
    await engine.create_workflow(name, {}, ["noop"], queue=unique_name("fault"))
    duplicate = await _error_of(
        engine, "INSERT INTO workflows (name, steps) VALUES (:n, '[\"noop\"]')", n=name
    )
    assert classify(duplicate) is Fault.DATA
    assert not is_outage(duplicate)
    if engine.db.backend != "sqlite":  # SQLite stores any text in a JSON column
        bad_json = await _error_of(
            engine,
            "INSERT INTO workflows (name, steps) VALUES (:n, '[not json')",
            n=unique_name("fault"),
        )
        assert classify(bad_json) is Fault.DATA
        assert not is_outage(bad_json)


async def test_a_missing_table_is_schema(engine: Engine) -> None:
    """A statement on a table that does not exist is SCHEMA, not an outage."""
    missing = await _error_of(engine, "SELECT * FROM wfed_no_such_table")
    assert classify(missing) is Fault.SCHEMA
    assert not is_outage(missing)


@pytest.mark.parametrize("database_url", ["mariadb", "postgresql"], indirect=True)
async def test_an_unreachable_server_is_an_outage(database_url: str) -> None:
    """A server that refuses the connection is an OUTAGE, which is waited out."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = database_url.replace(":3306/", f":{port}/").replace(":5432/", f":{port}/")
    db = Database(url)
    try:
        with pytest.raises(DatabaseUnavailable) as caught:
            async with db.transaction() as conn:
                await conn.execute(text("SELECT 1"))
    finally:
        await db.dispose()
    assert classify(caught.value) is Fault.OUTAGE
    assert is_outage(caught.value)


@pytest.mark.parametrize("database_url", ["mariadb", "postgresql"], indirect=True)
async def test_a_lock_wait_is_a_lock_wait(engine: Engine, database_url: str) -> None:
    """A statement that times out waiting for a row lock is LOCK_WAIT (run again)."""
    name = unique_name("fault")
    await engine.create_workflow(name, {}, ["noop"], queue=unique_name("fault"))
    mariadb = engine.db.backend != "postgresql"
    wait = "SET SESSION innodb_lock_wait_timeout = 1" if mariadb else "SET lock_timeout = 500"
    lock = "SELECT id FROM workflows WHERE name = :n FOR UPDATE"
    async with engine.db.transaction() as holder:
        await holder.execute(text(lock), {"n": name})
        other = Database(database_url)

        async def locked_out() -> None:
            async with other.transaction() as conn:
                await conn.execute(text(wait))
                await conn.execute(text(lock), {"n": name})

        try:
            with pytest.raises(DBAPIError) as caught:
                await locked_out()
        finally:
            await other.dispose()
    assert classify(caught.value) is Fault.LOCK_WAIT
    assert is_outage(caught.value)
