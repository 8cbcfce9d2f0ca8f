"""An SQLite URL whose file does not exist is refused, naming the file, unless the caller
asks for it to be created: only the schema upgrade does (wfed.store.database)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import text

from wfed import Engine, SchemaOutdated
from wfed.store import migrate
from wfed.store.database import Database


def _files(directory: Path) -> list[str]:
    return os.listdir(directory)


async def test_a_missing_file_is_refused_and_not_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connecting is refused with the absolute path of the file (a relative URL is from
    the working directory); nothing is created; the schema upgrade creates it."""
    monkeypatch.chdir(tmp_path)
    db = Database("sqlite+aiosqlite:///wfed.db")
    try:
        assert db.sqlite_file == str(tmp_path / "wfed.db")
        with pytest.raises(SchemaOutdated, match=rf"no SQLite database at {tmp_path}/wfed\.db:"):
            async with db.transaction() as conn:
                await conn.execute(text("SELECT 1"))
        with pytest.raises(SchemaOutdated, match="`wfectl db upgrade`"):
            await migrate.require_current(db)
        assert _files(tmp_path) == []
        await migrate.upgrade(db)
        assert "wfed.db" in _files(tmp_path)
        await migrate.require_current(db)
    finally:
        await db.dispose()


async def test_an_engine_reads_nothing_from_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.db"
    async with Engine(f"sqlite+aiosqlite:///{path}") as engine:
        with pytest.raises(SchemaOutdated, match=str(path)):
            await engine.list()
        assert _files(tmp_path) == []
        await engine.upgrade_schema()
        assert await engine.list() == []


def test_memory_and_uri_databases_are_not_files() -> None:
    assert Database("sqlite+aiosqlite://").sqlite_file is None
    assert Database("sqlite+aiosqlite:///:memory:").sqlite_file is None
    assert Database("postgresql+asyncpg://u@h/d").sqlite_file is None
