"""What wfectl's live commands and bulk commands read, on every backend: a workflow's
snapshot (its row, steps and new output in one SELECT) and the selection of workflows by
a filter, with the guard that leaves a workflow that changed meanwhile alone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import CreateFn, unique_name
from sqlalchemy import event, update
from sqlalchemy.engine import Engine as SyncEngine

from wfed import Engine, InvalidTransition, WorkflowNotFound, WorkflowState
from wfed.engine.bulk import Filter, like_pattern
from wfed.engine.control import ChangedMeanwhile
from wfed.engine.snapshot import OutputCursor
from wfed.states import StepState
from wfed.store.schema import workflows

DEADLINE = 20.0


def shell(script: str) -> dict[str, Any]:
    return {"step": "shell", "args": {"cmd": script, "shell": True}}


@pytest.fixture
def statements() -> Iterator[list[str]]:
    """Every statement any engine of this process sends while the test runs, but
    SQLite's BEGIN IMMEDIATE (it has no statement-level autocommit in wfed)."""
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement != "BEGIN IMMEDIATE":
            sent.append(statement)

    event.listen(SyncEngine, "before_cursor_execute", record)
    yield sent
    event.remove(SyncEngine, "before_cursor_execute", record)


async def test_a_snapshot_is_one_select_whatever_the_number_of_steps(
    engine: Engine, create: CreateFn, statements: list[str]
) -> None:
    """A workflow of 30 steps that printed: its row, its 30 steps and the output of a
    step come from one statement, the same as `get` shows."""
    name = await create([shell(f"echo line-{i}; echo more-{i}") for i in range(30)])
    await engine.run(name)
    statements.clear()
    snap = await engine.snapshot(name, OutputCursor.of_attempt(7, 1))
    assert len(statements) == 1, statements
    assert statements[0].lstrip().upper().startswith("SELECT")
    full = await engine.get(name)
    assert snap.workflow.steps == full.steps
    assert snap.workflow.state is WorkflowState.COMPLETED
    assert snap.workflow.row.context == {}
    assert [line.text for line in snap.output] == ["line-7", "more-7"]
    assert snap.cursor == OutputCursor.of_attempt(7, 1, snap.output[-1].seq)
    again = await engine.snapshot(name, snap.cursor)
    assert again.output == []
    assert again.cursor == snap.cursor
    assert (await engine.snapshot(name)).output == []  # nothing runs: no running output


async def test_a_snapshot_follows_the_running_step(
    engine: Engine, create: CreateFn, tmp_path: Path
) -> None:
    """With the running cursor, each snapshot brings the new lines of whichever step
    runs, from the first line of a step that starts, and the last lines of the step it
    followed, written as that one ended."""
    gates = [tmp_path / f"go-{i}" for i in range(2)]
    name = await create(
        [
            shell(f'echo a1; while [ ! -e "{gates[0]}" ]; do sleep 0.02; done; echo a2'),
            shell(f'echo b1; while [ ! -e "{gates[1]}" ]; do sleep 0.02; done; echo b2'),
        ]
    )
    run = asyncio.create_task(engine.run(name))
    seen: list[tuple[int, str]] = []
    cursor = OutputCursor.of_running()

    async def poll_until(text: str) -> None:
        nonlocal cursor
        deadline = time.monotonic() + DEADLINE
        while not any(line == text for _, line in seen):
            assert time.monotonic() < deadline, f"no {text!r} in {seen}"
            snap = await engine.snapshot(name, cursor)
            seen.extend((line.position, line.text) for line in snap.output)
            cursor = snap.cursor
            await asyncio.sleep(0.05)

    try:
        await poll_until("a1")
        snap = await engine.snapshot(name, cursor)
        assert snap.running_step is not None
        assert snap.running_step.position == 0
        assert snap.step_running(0, 1)
        gates[0].touch()
        await poll_until("b1")
        gates[1].touch()
        assert (await run).state is WorkflowState.COMPLETED
    finally:
        for gate in gates:
            gate.touch()
        await asyncio.wait({run}, timeout=DEADLINE)
    # Each line once, the end of step 0 (written as it ended) too, and in order.
    assert seen[:2] == [(0, "a1"), (0, "a2")]
    assert seen[2] == (1, "b1")
    assert seen[3:] in ([], [(1, "b2")])
    final = await engine.snapshot(name, cursor)
    assert final.running_step is None
    assert {step.state for step in final.workflow.steps} == {StepState.COMPLETED}


async def test_a_snapshot_of_an_unknown_or_unclaimed_workflow(
    engine: Engine, create: CreateFn
) -> None:
    """No such workflow: WorkflowNotFound. Enqueued with SQL and not claimed yet: its
    row, no steps."""
    with pytest.raises(WorkflowNotFound):
        await engine.snapshot(unique_name("missing"))
    name = unique_name("sql")
    async with engine.db.transaction() as conn:
        await conn.execute(
            workflows.insert().values(name=name, steps=["noop"], context={}, queue="nobody")
        )
    snap = await engine.snapshot(name)
    assert snap.workflow.state is WorkflowState.PENDING
    assert snap.workflow.steps == []
    assert snap.output == []
    created = await create(["noop", "noop"])
    assert [step.state for step in (await engine.snapshot(created)).workflow.steps] == [
        StepState.PENDING,
        StepState.PENDING,
    ]


def test_name_patterns_escape_like() -> None:
    """`*`/`%` any characters, `?` one, `_` and `/` literal."""
    assert like_pattern("maint_*") == "maint/_%"
    assert like_pattern("a/b?%") == "a//b_%"


async def test_selection_by_filter(engine: Engine, create: CreateFn) -> None:
    """A filter selects by queue, state, name pattern (case-sensitive, `_` literal) and
    age, among the states the operation applies to; a state it never applies to is
    refused."""
    queue = unique_name("q")
    names = {}
    for key in ("Alpha_1", "alpha_2", "alphaX3", "beta_1"):
        names[key] = await create(["noop"], queue=queue, prefix=f"sel-{key}")
    await engine.pause(names["beta_1"])
    await engine.stop(names["alpha_2"])

    async def chosen(operation: str, **parts: Any) -> set[str]:
        found = await engine.select(operation, Filter(queue=queue, **parts))
        return {selection.name for selection in found}

    assert await chosen("pause") == {names["Alpha_1"], names["alphaX3"]}
    assert await chosen("resume") == {names["beta_1"]}
    assert await chosen("delete") == set(names.values())
    assert await chosen("stop", name_like="sel-alpha_*") == set()  # stopped already
    assert await chosen("delete", name_like="sel-alpha_*") == {names["alpha_2"]}
    assert await chosen("delete", name_like="sel-?lpha*") == {
        names["Alpha_1"],
        names["alpha_2"],
        names["alphaX3"],
    }
    assert await chosen("delete", states=frozenset({WorkflowState.PAUSED})) == {names["beta_1"]}
    assert await chosen("delete", older_than=timedelta(hours=1)) == set()
    async with engine.db.transaction() as conn:
        await conn.execute(
            update(workflows)
            .where(workflows.c.name == names["alphaX3"])
            .values(updated_at=engine.clock() - timedelta(hours=2))
        )
    assert await chosen("delete", older_than=timedelta(hours=1)) == {names["alphaX3"]}
    with pytest.raises(InvalidTransition, match="retry does not apply to paused"):
        await chosen("retry", states=frozenset({WorkflowState.PAUSED}))


async def test_a_workflow_that_changed_meanwhile_is_left_alone(
    engine: Engine, create: CreateFn
) -> None:
    """An operation given the workflow as selected applies only while it is still so:
    one that changed state, or was deleted and created again, is refused, unchanged."""
    queue = unique_name("q")
    name = await create(["noop"], queue=queue)
    [selected] = await engine.select("pause", Filter(queue=queue))
    await engine.stop(name, "by someone else")
    with pytest.raises(ChangedMeanwhile, match="it is stopped now, was pending when selected"):
        await engine.pause(name, "bulk", expected=selected.expected)
    assert (await engine.get(name)).state is WorkflowState.STOPPED
    assert [event.kind for event in await engine.history(name)] == ["created", "stopped"]

    await engine.delete(name)
    await engine.create_workflow(name, {}, ["noop"], queue=queue)
    with pytest.raises(ChangedMeanwhile, match="deleted and created again"):
        await engine.delete(name, expected=selected.expected)
    [again] = await engine.select("pause", Filter(queue=queue))
    workflow = await engine.pause(name, "bulk", expected=again.expected)
    assert workflow.state is WorkflowState.PAUSED
