"""The benchmark's databases: one fresh database per backend per run, dropped afterwards.

MariaDB and PostgreSQL get a `wfed_bench_<hex>` database on the server named by
`WFED_BENCH_MARIADB_URL` (default `mysql+asyncmy://root@127.0.0.1:3306/`) or
`WFED_BENCH_POSTGRESQL_URL` (default `postgresql+asyncpg://root@127.0.0.1:5432/postgres`);
the admin user must be allowed to CREATE and DROP databases. SQLite gets a file in the
run's temporary directory. The wfed schema is created with wfed's own migrations.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from wfed.store.database import Database
from wfed.store.migrate import upgrade

BACKENDS: Final = ("mariadb", "postgresql", "sqlite")
LABELS: Final = {"mariadb": "MariaDB", "postgresql": "PostgreSQL", "sqlite": "SQLite"}
DATABASE_PREFIX: Final = "wfed_bench_"
_NAME_RE: Final = re.compile(r"wfed_bench_[0-9a-f]{8}\Z")
_SERVER_URLS: Final = {
    "mariadb": ("WFED_BENCH_MARIADB_URL", "mysql+asyncmy://root@127.0.0.1:3306/"),
    "postgresql": (
        "WFED_BENCH_POSTGRESQL_URL",
        "postgresql+asyncpg://root@127.0.0.1:5432/postgres",
    ),
}


@dataclass(frozen=True)
class Backend:
    """One backend's benchmark database."""

    name: str
    """mariadb, postgresql or sqlite."""
    url: URL
    """The SQLAlchemy URL of the benchmark database (what the daemons are given)."""
    admin_url: URL | None
    """The server URL the database was created from (None for SQLite)."""

    @property
    def label(self) -> str:
        return LABELS[self.name]

    @property
    def url_string(self) -> str:
        return self.url.render_as_string(hide_password=False)

    def engine(self, **options: Any) -> AsyncEngine:
        """A plain SQLAlchemy engine on the benchmark database, for the driver of the run."""
        if self.name == "sqlite":
            options.setdefault("connect_args", {"timeout": 30})
        return create_async_engine(self.url, **options)


def server_url(backend: str) -> URL:
    """The admin URL of a server backend, from its environment variable or the default."""
    variable, default = _SERVER_URLS[backend]
    return make_url(os.environ.get(variable) or default)


async def _admin(url: URL, *statements: str) -> list[Any]:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            results = []
            for statement in statements:
                result = await conn.execute(text(statement))
                results.append(result.all() if result.returns_rows else None)
            return results
    finally:
        await engine.dispose()


async def server_version(backend: Backend) -> str:
    """The server's version string (SQLite: the library version)."""
    engine = backend.engine(poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            query = "SELECT sqlite_version()" if backend.name == "sqlite" else "SELECT version()"
            version = await conn.scalar(text(query))
    finally:
        await engine.dispose()
    # "PostgreSQL 15.20 (Debian …) on x86_64…" → "15.20 (Debian …)"
    return str(version).split(" on ")[0].removeprefix("PostgreSQL ")


async def _create(name: str, workdir: Path, server: URL | None) -> Backend:
    if name == "sqlite":
        path = workdir / "wfed-bench.db"
        return Backend(name, URL.create("sqlite+aiosqlite", database=str(path)), None)
    admin = server or server_url(name)
    database = f"{DATABASE_PREFIX}{secrets.token_hex(4)}"
    if name == "mariadb":
        await _admin(admin, f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
    else:
        await _admin(admin, f"CREATE DATABASE \"{database}\" ENCODING 'UTF8' TEMPLATE template0")
    return Backend(name, admin.set(database=database), admin)


async def _drop(backend: Backend) -> None:
    if backend.admin_url is None:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(os.remove, f"{backend.url.database}{suffix}")
        return
    database = backend.url.database or ""
    if not _NAME_RE.match(database):
        raise ValueError(f"refusing to drop {database!r}: not a benchmark database name")
    if backend.name == "postgresql":
        await _admin(backend.admin_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        return
    # MariaDB has no FORCE: end the connections still using it (killed daemons' sockets
    # may linger for a moment), then drop.
    (rows,) = await _admin(
        backend.admin_url,
        "SELECT id FROM information_schema.processlist "
        f"WHERE db = '{database}' AND id <> CONNECTION_ID()",
    )
    kills = [f"KILL CONNECTION {int(row[0])}" for row in rows]
    for kill in kills:
        with contextlib.suppress(DBAPIError):  # it may have ended meanwhile
            await _admin(backend.admin_url, kill)
    await _admin(backend.admin_url, f"DROP DATABASE IF EXISTS `{database}`")


@contextlib.asynccontextmanager
async def bench_database(
    name: str, workdir: Path, server: URL | None = None
) -> AsyncIterator[Backend]:
    """A fresh database with the wfed schema, on `server` (an admin URL; default: the
    backend's server from the environment); dropped on the way out, even on errors."""
    backend = await _create(name, workdir, server)
    try:
        db = Database(backend.url_string)
        try:
            await upgrade(db)
        finally:
            await db.dispose()
        yield backend
    finally:
        await _drop(backend)
