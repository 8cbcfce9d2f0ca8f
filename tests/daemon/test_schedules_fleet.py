"""Schedules fired by a fleet: four real `wfed` processes share one database and a
schedule that ticks every second; every tick is enqueued exactly once and run.

Checked from the database, not from timings: the fired ticks (`schedule_fires`), the
workflows named after them and their `created` events. The ticks are contiguous from
the schedule's first to its last — none lost, none doubled — whichever daemon fired each.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from daemon_harness import STEP_MODULES, DaemonFactory, journal_lines, wait_until
from sqlalchemy import delete, func, select

from wfed import Engine, WorkflowState
from wfed.store import schedules as schedule_store
from wfed.store.schema import schedule_fires, workflow_events, workflows

DAEMONS = 4
# Ticks to wait for: a dozen by default; WFED_SCHEDULE_FLEET_TICKS=60 runs a full minute.
TICKS = int(os.environ.get("WFED_SCHEDULE_FLEET_TICKS", "12"))


@pytest.fixture(params=["mariadb", "postgresql", "sqlite"])
def fleet_url(request: pytest.FixtureRequest) -> str:
    """The schema'd test database of each backend (SQLite: several processes, one file)."""
    url: str = request.getfixturevalue(f"schema_{request.param}")
    return url


async def test_a_fleet_enqueues_every_tick_of_a_schedule_exactly_once(
    fleet_url: str,
    make_engine: Callable[..., Engine],
    start_daemon: DaemonFactory,
    queue: str,
    journal: Path,
) -> None:
    """Four daemons fire a schedule ticking every second: each tick has exactly one fired
    row and one workflow (with one `created` event by the daemon that fired it), the
    ticks follow each other second by second, and the daemons run every workflow."""
    engine = make_engine(fleet_url, step_modules=STEP_MODULES)
    name = f"every-second-{uuid.uuid4().hex[:8]}"
    await engine.add_schedule(
        name,
        "* * * * * *",
        "UTC",
        steps=[{"step": "mark", "args": {"tag": "tick"}}],
        context={"journal": str(journal)},
        queue=queue,
    )
    try:
        first = (await engine.schedule(name)).row.next_fire_at
        assert first is not None
        daemons = [start_daemon(fleet_url, queue=queue) for _ in range(DAEMONS)]
        schedule_id = (await engine.schedule(name)).row.id

        async def fired() -> int:
            async with engine.db.transaction() as conn:
                count = await conn.scalar(
                    select(func.count())
                    .select_from(schedule_fires)
                    .where(schedule_fires.c.schedule_id == schedule_id)
                )
            return int(count or 0)

        async def enough() -> bool:
            return await fired() >= TICKS

        await wait_until(enough, limit=TICKS + 60, what=f"{TICKS} ticks fired")
        await engine.pause_schedule(name)
        async with engine.db.transaction() as conn:
            ticks = [t for t, _ in await schedule_store.schedule_fires_of(conn, schedule_id)]
            rows = (
                await conn.execute(
                    select(schedule_fires.c.workflow_name, schedule_fires.c.fired_by).where(
                        schedule_fires.c.schedule_id == schedule_id
                    )
                )
            ).all()
        # A poll that began before the pause may still fire the tick it found due.
        expected = [first + timedelta(seconds=s) for s in range(len(ticks))]
        assert ticks == expected
        names = [f"{name}-{tick:%Y%m%dT%H%M%S}Z" for tick in ticks]
        assert sorted(workflow for workflow, _ in rows) == names

        async def all_done() -> bool:
            states = [(await engine.get(workflow)).state for workflow in names]
            return all(state is WorkflowState.COMPLETED for state in states)

        await wait_until(all_done, limit=60, what="every scheduled workflow completed")
        async with engine.db.transaction() as conn:
            made = await conn.scalars(
                select(workflows.c.name).where(workflows.c.name.like(f"{name}-%"))
            )
            created = (
                await conn.execute(
                    select(workflow_events.c.workflow_name, workflow_events.c.actor).where(
                        workflow_events.c.workflow_name.like(f"{name}-%"),
                        workflow_events.c.kind == "created",
                    )
                )
            ).all()
        assert sorted(made.all()) == names
        assert sorted(created) == sorted(rows)  # one `created` each, by the daemon that fired it
        assert len([line for line in journal_lines(journal) if line.startswith("ran tick")]) == len(
            names
        )
        for daemon in daemons:
            assert not daemon.events("side_loop_crashed")
    finally:
        async with engine.db.transaction() as conn:
            made_like = f"{name}-%"
            await conn.execute(
                delete(workflow_events).where(workflow_events.c.workflow_name.like(made_like))
            )
            await conn.execute(delete(workflows).where(workflows.c.name.like(made_like)))
            await schedule_store.schedule_delete(conn, name)
