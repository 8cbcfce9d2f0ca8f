"""The per-session test database fixtures of tests/conftest.py work on every backend."""

from __future__ import annotations

from pathlib import PurePath

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

_CURRENT_DATABASE_SQL = {
    "mysql": "SELECT DATABASE()",
    "postgresql": "SELECT current_database()",
}


async def _scalar(url: str, sql: str) -> object:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text(sql))).scalar_one()
    finally:
        await engine.dispose()


async def test_database_url_answers_select_1(database_url: str) -> None:
    """Each backend's test database URL connects and SELECT 1 returns 1."""
    assert await _scalar(database_url, "SELECT 1") == 1


def test_database_url_is_shared_with_single_backend_fixture(
    request: pytest.FixtureRequest, database_url: str
) -> None:
    """database_url[backend] is the same database as the <backend>_url fixture."""
    backend = request.node.callspec.params["database_url"]
    assert request.getfixturevalue(f"{backend}_url") == database_url


async def test_sqlite_url_is_a_file_in_a_temp_dir(sqlite_url: str) -> None:
    """The SQLite URL names an absolute aiosqlite file path, and connections open that file."""
    url = make_url(sqlite_url)
    assert url.drivername == "sqlite+aiosqlite"
    assert url.database is not None
    assert PurePath(url.database).is_absolute()
    assert url.database.endswith("wfed.db")
    main_file = await _scalar(
        sqlite_url, "SELECT file FROM pragma_database_list WHERE name = 'main'"
    )
    assert main_file == url.database


async def _assert_fresh_test_database(url_string: str) -> None:
    url = make_url(url_string)
    assert url.database is not None
    assert url.database.startswith("wfed_test_")
    assert url.database != "test"
    current = await _scalar(url_string, _CURRENT_DATABASE_SQL[url.get_backend_name()])
    assert current == url.database


async def test_mariadb_url_is_a_wfed_test_database(mariadb_url: str) -> None:
    """MariaDB tests connect to their own wfed_test_<hex> database, not `test`."""
    assert mariadb_url.startswith("mysql+asyncmy://")
    await _assert_fresh_test_database(mariadb_url)


async def test_postgresql_url_is_a_wfed_test_database(postgresql_url: str) -> None:
    """PostgreSQL tests connect to their own wfed_test_<hex> database, not `test`."""
    assert postgresql_url.startswith("postgresql+asyncpg://")
    await _assert_fresh_test_database(postgresql_url)
