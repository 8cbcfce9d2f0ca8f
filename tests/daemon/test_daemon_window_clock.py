"""A whole daemon — its claimer, runners, group commit, heartbeat and chores, as `wfed`
runs them — in this process on an injected clock, taken through a maintenance window:
not run before it opens, paused after the current step when it closes, resumed at the
next opening, not resumed when an operator paused it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import delete, select
from stepmods import held

from wfed import Engine, WorkflowState
from wfed.config import parse_config
from wfed.daemon.supervisor import Daemon
from wfed.states import StepState
from wfed.store.schema import workflow_events, workflows

SPEC = "sat 02:00-05:00 Europe/Paris"
FRIDAY_NOON = datetime(2026, 12, 4, 12, 0)
CLOSING = datetime(2026, 12, 5, 4, 0)  # Saturday 05:00 in Paris
NEXT_OPENING = datetime(2026, 12, 12, 1, 0)
MODULES = ["stepmods.basic", "stepmods.held"]


class FakeClock:
    """Naive UTC time that moves only when the test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait for `condition`, looking every 20 ms; fail after 30 s."""
    deadline = time.monotonic() + 30.0
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@pytest.fixture
async def engine(
    schema: str, make_engine: Callable[..., Engine], queue: str
) -> AsyncIterator[Engine]:
    """An Engine knowing the held step; the test's workflows and events go afterwards."""
    engine = make_engine(schema, step_modules=MODULES)
    yield engine
    async with engine.db.transaction() as conn:
        names = select(workflows.c.name).where(workflows.c.queue == queue)
        await conn.execute(
            delete(workflow_events).where(workflow_events.c.workflow_name.in_(names))
        )
        await conn.execute(delete(workflows).where(workflows.c.queue == queue))


def daemon_on(url: str, queue: str, clock: FakeClock) -> Daemon:
    config = parse_config(
        {
            "database": {"url": url},
            "daemon": {
                "queues": [queue],
                "poll_interval": 0.05,
                "control_interval": 0.1,
                "lease": 30.0,
                "shutdown_grace": 5.0,
            },
            "steps": {"modules": MODULES},
        }
    )
    daemon = Daemon(config, clock=clock)
    # Its own look every 30 s, and at the openings it knows of, count real seconds: on an
    # injected clock the test has it look often instead.
    daemon.window_resumer.interval = 0.05
    return daemon


async def test_a_daemon_on_an_injected_clock_through_a_window(
    engine: Engine, schema: str, queue: str
) -> None:
    """Friday: the workflow is handed back until Saturday's opening, no step run. Just
    before the closing it starts; the window closes during step 0, which runs to its end,
    and the workflow pauses before step 1, naming the window. The next Saturday the
    daemon resumes it and it completes without running step 0 again. A workflow an
    operator paused is left paused throughout."""
    key = f"{queue}-held"
    started, release = held.hold(key)
    name = f"{queue}-maint"
    kept = f"{queue}-kept"
    steps = [{"step": "held", "args": {"key": key}}, "noop"]
    await engine.create_workflow(name, {}, steps, queue=queue, windows=[SPEC])
    await engine.create_workflow(kept, {}, ["noop"], queue=queue, windows=[SPEC])
    await engine.pause(kept, reason="not this week")
    clock = FakeClock(FRIDAY_NOON)
    daemon = daemon_on(schema, queue, clock)
    running = asyncio.create_task(daemon.run())

    async def kinds() -> list[str]:
        return [event.kind for event in await engine.history(name)]

    async def state_is(state: WorkflowState) -> bool:
        return (await engine.get(name)).state is state

    try:

        async def handed_back() -> bool:
            return "window_wait" in await kinds()

        await until(handed_back, "the workflow handed back on Friday")
        assert not started.is_set()
        assert (await engine.get(name)).row.run_after == datetime(2026, 12, 5, 1, 0)

        clock.now = CLOSING - timedelta(seconds=10)
        async with asyncio.timeout(30):
            await started.wait()
        clock.now = CLOSING + timedelta(seconds=1)
        release.set()
        await until(lambda: state_is(WorkflowState.PAUSED), "the pause at the closing")

        paused = await engine.get(name)
        assert paused.row.window_paused == SPEC
        assert [s.state for s in paused.steps] == [StepState.COMPLETED, StepState.PENDING]
        assert held.FINISHED[key] == 1
        assert paused.halt_reason is not None
        assert f"maintenance window {SPEC!r} closed" in paused.halt_reason

        clock.now = NEXT_OPENING
        await until(lambda: state_is(WorkflowState.COMPLETED), "the resumption and the end")
        assert held.FINISHED[key] == 1
        assert (await kinds())[-3:] == ["resumed", "claimed", "completed"]
        assert (await engine.get(kept)).state is WorkflowState.PAUSED
    finally:
        release.set()
        daemon.request_shutdown()
        await running
