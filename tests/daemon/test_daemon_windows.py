"""Maintenance windows in a real `wfed` process, on the real clock: a workflow claimed
outside its windows is handed back until their opening and runs once an operator clears
them; a window-paused workflow whose windows are open is resumed by the daemon's chore;
a queue's windows from the config reach the claimer and the runners. (The closing of a
window mid-run, on an injected clock, is tests/integration/test_maintenance_windows.py.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from daemon_harness import DaemonFactory, journal_lines, wait_until
from sqlalchemy import delete, select, update

from wfed import Engine, WorkflowState
from wfed.clock import utc_now
from wfed.store.schema import workflow_events, workflows

ALWAYS = "daily 00:00-24:00"


@pytest.fixture
async def cleanup(engine: Engine, queue: str) -> AsyncIterator[None]:
    """The test's workflows and their events go afterwards (the database is shared)."""
    yield
    async with engine.db.engine.begin() as conn:
        names = select(workflows.c.name).where(workflows.c.queue == queue)
        await conn.execute(
            delete(workflow_events).where(workflow_events.c.workflow_name.in_(names))
        )
        await conn.execute(delete(workflows).where(workflows.c.queue == queue))


def closed_now() -> str:
    """A one-hour daily window that opens twelve hours from now (UTC)."""
    opens = utc_now() + timedelta(hours=12)
    closes = opens + timedelta(hours=1)
    return f"daily {opens:%H:%M}-{closes:%H:%M} UTC"


async def _kinds(engine: Engine, name: str) -> list[str]:
    return [event.kind for event in await engine.history(name)]


async def test_outside_its_windows_it_waits_and_clearing_them_runs_it(
    engine: Engine,
    start_daemon: DaemonFactory,
    queue: str,
    schema: str,
    journal: Path,
    cleanup: None,
) -> None:
    """The daemon hands a workflow outside its windows back (window_wait, run_after at
    the opening) and runs one inside them; clearing the first one's windows lets the
    daemon run it at once."""
    context = {"journal": str(journal)}
    later = f"{queue}-later"
    now = f"{queue}-now"
    await engine.create_workflow(
        later, context, [{"step": "mark", "args": {"tag": "later"}}], queue=queue,
        windows=[closed_now()],
    )  # fmt: skip
    await engine.create_workflow(
        now, context, [{"step": "mark", "args": {"tag": "now"}}], queue=queue, windows=[ALWAYS]
    )
    daemon = start_daemon(schema, queue=queue)
    daemon_id = daemon.wait_for_log("daemon_started")["daemon"]

    async def handed_back() -> bool:
        return "window_wait" in await _kinds(engine, later)

    async def done(name: str) -> bool:
        return (await engine.get(name)).state is WorkflowState.COMPLETED

    await wait_until(handed_back, what="the workflow outside its windows handed back")
    await wait_until(lambda: done(now), what="the workflow inside its windows completed")
    waiting = await engine.get(later)
    assert waiting.state is WorkflowState.PENDING
    assert waiting.row.run_after is not None
    assert waiting.row.run_after > utc_now() + timedelta(hours=11)
    assert [e.actor for e in await engine.history(later) if e.kind == "window_wait"] == [daemon_id]
    assert not any(line.startswith("ran later") for line in journal_lines(journal))

    await engine.set_windows(later, [], reason="approved")
    await wait_until(lambda: done(later), what="the workflow whose windows were cleared ran")
    assert any(line.startswith("ran later") for line in journal_lines(journal))


async def test_the_daemon_resumes_a_window_paused_workflow_whose_windows_are_open(
    engine: Engine,
    start_daemon: DaemonFactory,
    queue: str,
    schema: str,
    journal: Path,
    cleanup: None,
) -> None:
    """A workflow paused by a window's closing, its windows open now, is resumed by the
    daemon (an event with the daemon as actor) and runs; an operator-paused one stays."""
    context = {"journal": str(journal)}
    steps = [{"step": "mark", "args": {"tag": "resumed"}}]
    by_window = f"{queue}-window"
    by_operator = f"{queue}-operator"
    await engine.create_workflow(by_window, context, steps, queue=queue, windows=[ALWAYS])
    await engine.create_workflow(by_operator, context, steps, queue=queue, windows=[ALWAYS])
    await engine.pause(by_operator, reason="not yet")
    async with engine.db.engine.begin() as conn:
        await conn.execute(
            update(workflows)
            .where(workflows.c.name == by_window)
            .values(state=WorkflowState.PAUSED.value, window_paused="sat 02:00-05:00 UTC")
        )
    daemon = start_daemon(schema, queue=queue)
    daemon_id = daemon.wait_for_log("daemon_started")["daemon"]

    async def done() -> bool:
        return (await engine.get(by_window)).state is WorkflowState.COMPLETED

    await wait_until(done, what="the window-paused workflow resumed and completed")
    resumed = [e for e in await engine.history(by_window) if e.kind == "resumed"]
    assert [(e.actor, e.detail) for e in resumed] == [
        (daemon_id, {"window": "sat 02:00-05:00 UTC"})
    ]
    assert daemon.events("workflow_window_resumed")
    assert (await engine.get(by_operator)).state is WorkflowState.PAUSED


async def test_a_closed_queue_window_holds_a_claimed_rescue_back(
    engine: Engine,
    start_daemon: DaemonFactory,
    queue: str,
    schema: str,
    journal: Path,
    cleanup: None,
) -> None:
    """A daemon whose config closes its queue still recovers an orphan of that queue
    (expired lease), and its runner hands it back until the queue's window opens: the
    config's windows reach both the claimer and the runners."""
    name = f"{queue}-orphan"
    await engine.create_workflow(
        name, {"journal": str(journal)}, [{"step": "mark", "args": {"tag": "orphan"}}],
        queue=queue,
    )  # fmt: skip
    async with engine.db.engine.begin() as conn:
        await conn.execute(
            update(workflows)
            .where(workflows.c.name == name)
            .values(
                state=WorkflowState.RUNNING.value,
                claimed_by="dead-daemon:1",
                fence=1,
                lease_expires_at=utc_now() - timedelta(minutes=1),
            )
        )
    extra = f'[windows]\nqueues = {{"{queue}" = ["{closed_now()}"]}}\n'
    start_daemon(schema, queue=queue, extra_config=extra).wait_for_log("daemon_started")

    async def handed_back() -> bool:
        return "window_wait" in await _kinds(engine, name)

    await wait_until(handed_back, what="the rescued workflow handed back until its window")
    workflow = await engine.get(name)
    assert workflow.state is WorkflowState.PENDING
    assert workflow.row.run_after is not None
    assert workflow.row.run_after > utc_now() + timedelta(hours=11)
    assert not any(line.startswith("ran orphan") for line in journal_lines(journal))
