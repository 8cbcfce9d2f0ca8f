"""Workload 1, the floor: what the database and driver can do without wfed.

Single-row `UPDATE … SET n = n + 1 WHERE id = :id` + `COMMIT` transactions per second,
on 1 connection and on `max_workflows` connections (each on its own row, so there is no
lock contention: only commit latency and group commit), through SQLAlchemy's async
engine (the stack wfed uses) and through the raw driver (asyncmy, asyncpg, aiosqlite).
SQLite runs with the pragmas wfed sets (WAL, synchronous=FULL, busy_timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiosqlite
import asyncmy
import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection

from bench.context import Bench
from bench.databases import Backend

TABLE = "bench_floor"
UPDATE = f"UPDATE {TABLE} SET n = n + 1 WHERE id = :id"
SQLITE_PRAGMAS = ("PRAGMA busy_timeout = 30000", "PRAGMA synchronous = FULL")

# One transaction on connection number `i`: returns when it is committed.
Transaction = Callable[[int], Awaitable[None]]


async def _create_table(bench: Bench, rows: int) -> None:
    async with bench.engine.begin() as conn:
        await conn.execute(text(f"DROP TABLE IF EXISTS {TABLE}"))
        await conn.execute(
            text(f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY, n BIGINT NOT NULL)")
        )
        await conn.execute(
            text(f"INSERT INTO {TABLE} (id, n) VALUES (:id, 0)"),
            [{"id": i} for i in range(rows)],
        )


async def _drop_table(bench: Bench) -> None:
    async with bench.engine.begin() as conn:
        await conn.execute(text(f"DROP TABLE IF EXISTS {TABLE}"))


async def _drive(connections: int, seconds: float, transaction: Transaction) -> float:
    """Run `transaction(i)` back to back on each of `connections` for `seconds`; tx/s."""
    done = [0] * connections
    stop = asyncio.Event()

    async def worker(i: int) -> None:
        while not stop.is_set():
            await transaction(i)
            done[i] += 1

    started = time.perf_counter()
    tasks = [asyncio.create_task(worker(i)) for i in range(connections)]
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks)
    return sum(done) / (time.perf_counter() - started)


@contextlib.asynccontextmanager
async def _sqlalchemy_connections(backend: Backend, count: int) -> AsyncIterator[list[Any]]:
    engine = backend.engine(pool_size=count, max_overflow=0)
    if backend.name == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            for pragma in SQLITE_PRAGMAS:
                cursor.execute(pragma)
            cursor.close()

    conns: list[AsyncConnection] = []
    try:
        for _ in range(count):
            conns.append(await engine.connect())
        yield conns
    finally:
        for conn in conns:
            await conn.close()
        await engine.dispose()


async def _sqlalchemy_floor(backend: Backend, connections: int, seconds: float) -> float:
    statement = text(UPDATE)
    async with _sqlalchemy_connections(backend, connections) as conns:

        async def transaction(i: int) -> None:
            conn = conns[i]
            await conn.execute(statement, {"id": i})
            await conn.commit()

        return await _drive(connections, seconds, transaction)


@contextlib.asynccontextmanager
async def _raw_connections(backend: Backend, count: int) -> AsyncIterator[list[Any]]:
    """`count` connections of the bare driver, closed on the way out."""
    url = backend.url
    conns: list[Any] = []
    try:
        for _ in range(count):
            if backend.name == "mariadb":
                conns.append(
                    await asyncmy.connect(
                        host=url.host,
                        port=url.port or 3306,
                        user=url.username,
                        password=url.password or "",
                        database=url.database,
                    )
                )
            elif backend.name == "postgresql":
                conns.append(
                    await asyncpg.connect(
                        host=url.host,
                        port=url.port or 5432,
                        user=url.username,
                        password=url.password,
                        database=url.database,
                    )
                )
            else:
                conn = await aiosqlite.connect(str(url.database))
                for pragma in SQLITE_PRAGMAS:
                    await conn.execute(pragma)
                conns.append(conn)
        yield conns
    finally:
        for conn in conns:
            result = conn.close()
            if asyncio.iscoroutine(result):
                await result


def _raw_transaction(backend: Backend, conns: list[Any]) -> Transaction:
    if backend.name == "mariadb":
        sql = UPDATE.replace(":id", "%s")

        async def mariadb(i: int) -> None:
            async with conns[i].cursor() as cursor:
                await cursor.execute(sql, (i,))
            await conns[i].commit()

        return mariadb
    if backend.name == "postgresql":
        sql = UPDATE.replace(":id", "$1")

        async def postgresql(i: int) -> None:
            async with conns[i].transaction():
                await conns[i].execute(sql, i)

        return postgresql
    sql = UPDATE.replace(":id", "?")

    async def sqlite(i: int) -> None:
        await conns[i].execute(sql, (i,))
        await conns[i].commit()

    return sqlite


async def _raw_floor(backend: Backend, connections: int, seconds: float) -> float:
    async with _raw_connections(backend, connections) as conns:
        return await _drive(connections, seconds, _raw_transaction(backend, conns))


async def floor_recheck(bench: Bench) -> dict[str, float]:
    """The single-connection floors again (after the throughput runs): the disk's commit
    latency on a shared machine drifts, and the ratio is only as good as its floor."""
    await _create_table(bench, 1)
    try:
        return {
            "sqlalchemy_one": await _sqlalchemy_floor(bench.backend, 1, bench.sizes.floor_seconds),
            "raw_one": await _raw_floor(bench.backend, 1, bench.sizes.floor_seconds),
        }
    finally:
        await _drop_table(bench)


async def floor(bench: Bench) -> dict[str, Any]:
    """Transactions/s for (SQLAlchemy, raw driver) x (1, max_workflows connections)."""
    sizes = bench.sizes
    await _create_table(bench, sizes.floor_connections)
    figures: dict[str, Any] = {"connections": sizes.floor_connections}
    try:
        for stack, measure in (("sqlalchemy", _sqlalchemy_floor), ("raw", _raw_floor)):
            for connections, key in ((1, "one"), (sizes.floor_connections, "many")):
                figures[f"{stack}_{key}"] = await measure(
                    bench.backend, connections, sizes.floor_seconds
                )
    finally:
        await _drop_table(bench)
    return figures
