"""Retention: purging finished workflows by age, in batches, on every backend."""

from __future__ import annotations

from datetime import timedelta

import pytest
from conftest import unique_name
from sqlalchemy import event, func, insert, select

from wfed import Engine, InvalidTransition
from wfed.clock import utc_now
from wfed.store.schema import workflow_events, workflow_steps, workflows

# The full 100,000 on MariaDB (production); a tenth elsewhere keeps the suite quick.
FULL, TENTH = 100_000, 10_000


async def _insert_finished(
    engine: Engine, prefix: str, count: int, state: str, age: timedelta
) -> None:
    finished = utc_now() - age
    rows = [
        {
            "name": f"{prefix}-{state}-{age.days}d-{i}",
            "steps": ["noop"],
            "context": {},
            "state": state,
            "queue": prefix,
            "created_at": finished,
            "updated_at": finished,
            "finished_at": finished if state in {"completed", "stopped"} else None,
        }
        for i in range(count)
    ]
    async with engine.db.engine.begin() as conn:
        for start in range(0, count, 20_000):
            await conn.execute(insert(workflows), rows[start : start + 20_000])


async def _count(engine: Engine, queue: str, state: str | None = None) -> int:
    query = select(func.count()).select_from(workflows).where(workflows.c.queue == queue)
    if state is not None:
        query = query.where(workflows.c.state == state)
    async with engine.db.engine.connect() as conn:
        return int(await conn.scalar(query) or 0)


@pytest.mark.timeout(600)
async def test_purge_100k_old_workflows_in_batches_keeping_recent_and_unfinished(
    engine: Engine,
) -> None:
    """A purge of 100,000 old completed workflows deletes exactly those, in many short
    transactions, and keeps recent ones, unfinished ones and an audit event each."""
    old = FULL if engine.db.backend == "mysql" else TENTH
    queue = unique_name("purge")
    await _insert_finished(engine, queue, old, "completed", timedelta(days=40))
    await _insert_finished(engine, queue, 50, "completed", timedelta(days=1))
    await _insert_finished(engine, queue, 50, "error", timedelta(days=40))

    assert await engine.purge(timedelta(days=30), dry_run=True) >= old
    assert await _count(engine, queue) == old + 100

    commits: list[int] = []
    event.listen(engine.db.engine.sync_engine, "commit", lambda conn: commits.append(1))
    purged = await engine.purge(timedelta(days=30), batch_size=5000)
    assert purged >= old
    assert len(commits) >= old // 5000
    assert await _count(engine, queue, "completed") == 50
    assert await _count(engine, queue, "error") == 50
    async with engine.db.engine.connect() as conn:
        purged_events = await conn.scalar(
            select(func.count())
            .select_from(workflow_events)
            .where(
                workflow_events.c.kind == "purged",
                workflow_events.c.workflow_name.like(f"{queue}-%"),
            )
        )
    assert purged_events == old


async def test_purge_with_events_deletes_their_events_and_steps(
    engine: Engine, create, make_engine, database_url: str
) -> None:
    """`events=True` deletes the purged workflows' events too; their steps always go."""
    name = await create(["noop"])
    await engine.run(name)
    row = (await engine.get(name)).row
    two_days_later = make_engine(database_url, clock=lambda: utc_now() + timedelta(days=2))
    assert await two_days_later.purge(timedelta(days=1), events=True) >= 1
    async with engine.db.engine.connect() as conn:
        left = await conn.scalar(
            select(func.count())
            .select_from(workflow_events)
            .where(workflow_events.c.workflow_id == row.id)
        )
        workflow_left = await conn.scalar(
            select(func.count()).select_from(workflows).where(workflows.c.id == row.id)
        )
        steps_left = await conn.scalar(
            select(func.count())
            .select_from(workflow_steps)
            .where(workflow_steps.c.workflow_id == row.id)
        )
    assert (left, workflow_left, steps_left) == (0, 0, 0)


async def test_purge_refuses_unfinished_states(engine: Engine) -> None:
    """Only finished workflows (completed, stopped) are purged by age."""
    with pytest.raises(InvalidTransition, match="only finished"):
        await engine.purge(timedelta(days=1), states=["error"])
