"""Group commit: several runners' step transitions in one transaction."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from wfed import Engine
from wfed.daemon.committer import StepCommitter
from wfed.errors import LeaseLost


async def _names(engine: Engine, prefix: str) -> set[str]:
    async with engine.db.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT name FROM workflows WHERE name LIKE :p"), {"p": f"{prefix}%"}
        )
        return {row.name for row in rows}


def _insert(name: str, fail: BaseException | None = None):
    async def body(conn: AsyncConnection) -> str:
        if fail is not None:
            raise fail
        await conn.execute(
            text("INSERT INTO workflows (name, steps, queue) VALUES (:n, '[]', 'committer')"),
            {"n": name},
        )
        return name

    return body


async def test_waiting_bodies_share_one_commit_and_keep_their_own_results(
    engine: Engine, new_name
) -> None:
    """Bodies waiting together run in one transaction; each caller gets its own result,
    and a body's lost lease fails that caller alone."""
    prefix = new_name("grp")
    committer = StepCommitter(engine.db, max_batch=16)
    finished = asyncio.Event()
    commits: list[int] = []
    event.listen(engine.db.engine.sync_engine, "commit", lambda conn: commits.append(1))
    calls = [committer.run(i, _insert(f"{prefix}-{i}")) for i in range(5)]
    calls.append(committer.run(99, _insert(f"{prefix}-lost", LeaseLost())))
    results = asyncio.gather(*calls, return_exceptions=True)
    loop = asyncio.create_task(committer.loop(finished))
    outcome = await results
    finished.set()
    await loop
    assert outcome[:5] == [f"{prefix}-{i}" for i in range(5)]
    assert isinstance(outcome[5], LeaseLost)
    assert await _names(engine, prefix) == {f"{prefix}-{i}" for i in range(5)}
    assert len(commits) == 1
    assert (committer.batches, committer.bodies) == (1, 6)


async def test_a_database_error_fails_the_whole_batch(engine: Engine, new_name) -> None:
    """A body hitting a database error rolls the batch back; every caller sees the error
    (and retries on its own), nothing of the batch is written."""
    prefix = new_name("grpfail")
    committer = StepCommitter(engine.db)
    finished = asyncio.Event()

    async def broken(conn: AsyncConnection) -> None:
        await conn.execute(text("SELECT * FROM no_such_table_here"))

    calls = [committer.run(1, _insert(f"{prefix}-1")), committer.run(2, broken)]
    results = asyncio.gather(*calls, return_exceptions=True)
    loop = asyncio.create_task(committer.loop(finished))
    outcome = await results
    finished.set()
    await loop
    assert all(isinstance(result, DBAPIError) for result in outcome)
    assert await _names(engine, prefix) == set()


@pytest.mark.parametrize("max_batch", [1, 3])
async def test_batches_are_bounded(engine: Engine, new_name, max_batch: int) -> None:
    """No batch holds more than `max_batch` bodies."""
    prefix = new_name(f"grpmax{max_batch}")
    committer = StepCommitter(engine.db, max_batch=max_batch)
    finished = asyncio.Event()
    results = asyncio.gather(*(committer.run(i, _insert(f"{prefix}-{i}")) for i in range(7)))
    loop = asyncio.create_task(committer.loop(finished))
    await results
    finished.set()
    await loop
    assert committer.bodies == 7
    assert committer.batches == -(-7 // max_batch)
