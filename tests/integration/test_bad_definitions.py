"""Workflows enqueued with plain SQL (README, "Enqueue with SQL") that cannot run go to
`error` with a `last_error` naming the problem, without running a step;
`Engine.create_workflow` refuses the same definitions before writing anything."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import text
from stepmods.basic import CALLS

from wfed import (
    Engine,
    InvalidDefinition,
    InvalidTransition,
    StepState,
    WorkflowNotFound,
    WorkflowState,
)


def _key() -> str:
    return f"bad-{uuid.uuid4().hex[:12]}"


def _record(key: str) -> dict[str, Any]:
    return {"step": "record", "args": {"key": key}}


# id -> (steps, context, words last_error must contain). `{key}` stands for a `record`
# step placed before the bad element: it must never run.
BAD: dict[str, tuple[Any, Any, list[str]]] = {
    "unknown-step": (
        ["{key}", "no_such_step"],
        {},
        ["steps[1]", "unknown step", "no_such_step", "registered steps"],
    ),
    "steps-an-object": ({"step": "noop"}, {}, ["steps", "list", "an object"]),
    "steps-an-object-of-names": ({"noop": 1}, {}, ["steps", "list", "an object"]),
    "steps-a-string": ("noop", {}, ["steps", "list"]),
    "steps-empty": ([], {}, ["steps", "empty"]),
    "context-a-list": (["{key}"], [1, 2], ["context", "object", "a list"]),
    "context-a-number": (["{key}"], 42, ["context", "object", "a number"]),
    "args-wrong-type": (
        ["{key}", {"step": "sleep", "args": {"seconds": "abc"}}],
        {},
        ["steps[1]", "sleep", "seconds", "abc"],
    ),
    "args-unknown": (
        ["{key}", {"step": "sleep", "args": {"minutes": 1}}],
        {},
        ["steps[1]", "unknown argument", "minutes"],
    ),
    "args-missing": (
        ["{key}", {"step": "record"}],
        {},
        ["steps[1]", "missing argument", "key"],
    ),
    "element-unknown-key": (
        ["{key}", {"step": "noop", "retry": 3}],
        {},
        ["steps[1]", "retry", "unknown key"],
    ),
    "element-not-a-step": (["{key}", 7], {}, ["steps[1]", "int", "not a step"]),
}


def _definition(case: str, key: str) -> tuple[Any, Any, list[str]]:
    steps, context, words = BAD[case]
    if isinstance(steps, list):
        steps = [_record(key) if element == "{key}" else element for element in steps]
    return steps, context, words


async def _insert(engine: Engine, name: str, steps: Any, context: Any) -> None:
    """Enqueue as an operator would: plain SQL with only name, steps and context."""
    async with engine.db.engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO workflows (name, steps, context) VALUES (:name, :steps, :context)"),
            {"name": name, "steps": json.dumps(steps), "context": json.dumps(context)},
        )


@pytest.mark.parametrize("case", list(BAD))
async def test_plain_sql_row_with_bad_definition_goes_to_error(
    engine: Engine, probe, new_name, case: str
) -> None:
    """`run` of a row with a bad definition raises InvalidDefinition; the row goes to
    `error` with a `last_error` naming the problem, and no step runs."""
    key = _key()
    steps, context, words = _definition(case, key)
    name = new_name(case)
    await _insert(engine, name, steps, context)

    with pytest.raises(InvalidDefinition) as invalid:
        await engine.run(name)

    failed = await engine.get(name)
    assert failed.state is WorkflowState.ERROR
    assert failed.last_error is not None
    for word in words:
        assert word in failed.last_error
        assert word in str(invalid.value)
    assert failed.row.claimed_by is None
    assert failed.row.lease_expires_at is None
    assert all(step.attempts == 0 for step in failed.steps)
    assert CALLS[key] == 0
    assert await probe.kinds(name) == ["invalid"]


@pytest.mark.parametrize("case", list(BAD))
async def test_create_workflow_refuses_bad_definition_before_writing(
    engine: Engine, probe, new_name, case: str
) -> None:
    """`create_workflow` raises InvalidDefinition naming the problem, and writes neither
    a workflow nor an event."""
    steps, context, words = _definition(case, _key())
    name = new_name(case)

    with pytest.raises(InvalidDefinition) as invalid:
        await engine.create_workflow(name, context, steps, queue="itest")

    for word in words:
        assert word in str(invalid.value)
    assert not await probe.exists(name)
    with pytest.raises(WorkflowNotFound):
        await engine.history(name)


async def test_design_plain_sql_insert_runs_to_completion(engine: Engine, new_name) -> None:
    """The README's INSERT ("Enqueue with SQL"), literally (three columns, JSON as SQL
    string literals), adapted to the test steps, runs to completion with the defaults filled in."""
    name = new_name("maint")
    async with engine.db.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO workflows (name, steps, context)\n"
                f'VALUES (\'{name}\', \'["write_a", "read_a_write_b", "noop"]\',\n'
                '        \'{"target_servers": ["intweb1", "intweb2"], '
                '"cmd": "logrotate -f /etc/logrotate.conf"}\');'
            )
        )

    pending = await engine.get(name)
    assert pending.state is WorkflowState.PENDING
    assert pending.row.queue == "default"
    assert pending.row.priority == 0
    assert pending.current_step == 0
    assert pending.row.run_after is None
    done = await engine.run(name)

    assert done.state is WorkflowState.COMPLETED
    assert [s.step for s in done.steps] == ["write_a", "read_a_write_b", "noop"]
    assert [s.attempts for s in done.steps] == [1, 1, 1]
    assert done.context["target_servers"] == ["intweb1", "intweb2"]
    assert done.context["b"] == 2


async def test_plain_sql_insert_without_context_runs(engine: Engine, new_name) -> None:
    """A plain-SQL row without a context (NULL) runs with an empty context."""
    name = new_name("noctx")
    async with engine.db.engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO workflows (name, steps) VALUES (:name, :steps)"),
            {"name": name, "steps": json.dumps(["write_a"])},
        )

    done = await engine.run(name)

    assert done.state is WorkflowState.COMPLETED
    assert done.context == {"a": 1, "a_on_main_thread": True}


async def test_steps_given_as_a_json_string_is_named_a_string(engine: Engine, new_name) -> None:
    """A row whose `steps` is a JSON string goes to error saying it got a string, not a
    list (as for an object), rather than calling valid JSON invalid."""
    name = new_name("strsteps")
    await _insert(engine, name, "noop", {})

    with pytest.raises(InvalidDefinition):
        await engine.run(name)

    last_error = (await engine.get(name)).last_error
    assert last_error is not None
    assert "got a string" in last_error
    assert "not valid JSON" not in last_error


@pytest.mark.parametrize("column", ["steps", "context"])
async def test_text_that_is_not_json_goes_to_error_on_sqlite(
    sqlite_url: str, make_engine, new_name, column: str
) -> None:
    """SQLite lets a plain INSERT store text that is not JSON; that row goes to error
    saying so, and listing workflows still works."""
    engine = make_engine(sqlite_url)
    name = new_name("notjson")
    values = {"steps": '["noop"]', "context": "{}", column: "{not json"}
    async with engine.db.engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO workflows (name, steps, context) VALUES (:name, :steps, :context)"),
            {"name": name, **values},
        )
    assert name in {row.name for row in await engine.list(limit=10_000)}
    with pytest.raises(InvalidDefinition, match="not valid JSON"):
        await engine.run(name)
    workflow = await engine.get(name)
    assert workflow.state is WorkflowState.ERROR
    assert "not valid JSON" in (workflow.last_error or "")


@pytest.mark.parametrize("count", [1, 64, 65, 130])
async def test_sql_inserted_workflow_gets_every_step_row_once(
    engine: Engine, new_name, count: int
) -> None:
    """The step rows of an SQL-inserted workflow are created on its first run (in
    statements of up to 64 rows): one per element, in order, each run exactly once,
    the first started as it was created."""
    name = new_name("long")
    steps = [{"step": "noop", "label": f"n{i}"} for i in range(count)]
    async with engine.db.engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO workflows (name, steps) VALUES (:name, :steps)"),
            {"name": name, "steps": json.dumps(steps)},
        )

    done = await engine.run(name)

    assert done.state is WorkflowState.COMPLETED
    assert [s.label for s in done.steps] == [f"n{i}" for i in range(count)]
    assert [s.attempts for s in done.steps] == [1] * count
    assert all(s.state is StepState.COMPLETED for s in done.steps)
    assert all(s.started_at is not None and s.finished_at is not None for s in done.steps)


async def _insert_at(engine: Engine, name: str, steps: Any, current_step: int) -> None:
    """A plain-SQL row that names the step to start at."""
    async with engine.db.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO workflows (name, steps, context, current_step) "
                "VALUES (:name, :steps, '{}', :current_step)"
            ),
            {"name": name, "steps": json.dumps(steps), "current_step": current_step},
        )


@pytest.mark.parametrize("current_step", [2, 99])
async def test_a_row_starting_past_its_steps_goes_to_error(
    engine: Engine, probe, new_name, current_step: int
) -> None:
    """A row whose `current_step` is past its last step would run nothing and complete:
    it goes to error naming the column, and no step runs. (A negative one the schema's
    CHECK refuses at the INSERT.)"""
    key = _key()
    name = new_name("past")
    await _insert_at(engine, name, [_record(key), _record(key)], current_step)

    with pytest.raises(InvalidDefinition, match=f"current_step is {current_step}"):
        await engine.run(name)

    failed = await engine.get(name)
    assert failed.state is WorkflowState.ERROR
    assert failed.last_error is not None
    assert "numbered 0 to 1" in failed.last_error
    assert CALLS[key] == 0
    assert await probe.kinds(name) == ["invalid"]


async def test_a_row_starting_at_a_later_step_skips_the_ones_before(
    engine: Engine, new_name
) -> None:
    """A row that starts at step 1 runs steps 1 and 2; step 0 is recorded skipped, never
    run, so the completed workflow has no step left pending."""
    before, after = _key(), _key()
    name = new_name("later")
    await _insert_at(engine, name, [_record(before), _record(after), "noop"], 1)

    done = await engine.run(name)

    assert done.state is WorkflowState.COMPLETED
    assert [s.state for s in done.steps] == [
        StepState.SKIPPED,
        StepState.COMPLETED,
        StepState.COMPLETED,
    ]
    assert [s.attempts for s in done.steps] == [0, 1, 1]
    assert (CALLS[before], CALLS[after]) == (0, 1)


async def test_a_restart_before_the_first_run_skips_the_steps_before(
    engine: Engine, new_name
) -> None:
    """`restart --from-step 1` of a workflow stopped before it ever ran: the same."""
    before, after = _key(), _key()
    name = new_name("restart-early")
    await engine.create_workflow(name, {}, [_record(before), _record(after)], queue="itest")
    await engine.stop(name)
    await engine.restart(name, 1)

    done = await engine.run(name)

    assert done.state is WorkflowState.COMPLETED
    assert [s.state for s in done.steps] == [StepState.SKIPPED, StepState.COMPLETED]
    assert (CALLS[before], CALLS[after]) == (0, 1)


async def test_a_row_paused_before_its_first_run_can_skip_its_step(
    engine: Engine, new_name
) -> None:
    """A plain-SQL row paused before any daemon ran it has no step rows yet: skipping its
    step moves it on, and its first run records that step skipped and runs the rest.
    Skipping its last step, which would leave a first run nothing to run, is refused
    with the reason."""
    first, second = _key(), _key()
    name = new_name("sqlskip")
    await _insert_at(engine, name, [_record(first), _record(second)], 0)
    await engine.pause(name, reason="not yet")

    skipped = await engine.skip(name, reason="done by hand")

    assert skipped.state is WorkflowState.PENDING
    assert skipped.current_step == 1
    done = await engine.run(name)
    assert done.state is WorkflowState.COMPLETED
    assert [s.state for s in done.steps] == [StepState.SKIPPED, StepState.COMPLETED]
    assert (CALLS[first], CALLS[second]) == (0, 1)

    last = new_name("sqlskiplast")
    await _insert_at(engine, last, ["noop"], 0)
    await engine.pause(last)
    with pytest.raises(InvalidTransition, match="that is its last step"):
        await engine.skip(last)
    assert (await engine.get(last)).state is WorkflowState.PAUSED


@pytest.mark.parametrize("stored", ["'abc'", "0.5"])
async def test_a_current_step_that_is_no_step_number_goes_to_error(
    engine: Engine, new_name, stored: str
) -> None:
    """SQLite keeps text or a fraction written into `current_step`: the row goes to error
    naming the column, and no step runs."""
    if engine.db.backend != "sqlite":
        pytest.skip("only SQLite stores text or a fraction in an INTEGER column")
    key = _key()
    name = new_name("notastep")
    async with engine.db.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO workflows (name, steps, context, current_step) "
                f"VALUES (:name, :steps, '{{}}', {stored})"
            ),
            {"name": name, "steps": json.dumps([_record(key)])},
        )

    with pytest.raises(InvalidDefinition, match="current_step holds"):
        await engine.run(name)

    failed = await engine.get(name)
    assert failed.state is WorkflowState.ERROR
    assert "not a step number" in (failed.last_error or "")
    assert CALLS[key] == 0


@pytest.mark.parametrize(
    ("position", "step", "words"),
    [
        (0, "os.system", ["step row 0 names 'os.system'", "definition's step 0 is 'record'"]),
        (5, "record", ["a step row is at position 5 where 0 was due"]),
    ],
    ids=["another-step", "another-position"],
)
async def test_step_rows_that_are_not_the_record_of_the_definition_are_refused(
    engine: Engine, probe, new_name, position: int, step: str, words: list[str]
) -> None:
    """A step row written with SQL that names another step, or sits at another position,
    than the definition's: the workflow goes to error saying so, and how to let wfed
    make its rows again, instead of running the definition while `show` reports the
    hand-written row as what ran. Once the rows are deleted, `retry` runs it."""
    key = _key()
    name = new_name("rows")
    await _insert(engine, name, [_record(key)], {})
    workflow_id = (await engine.get(name)).row.id
    async with engine.db.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO workflow_steps (workflow_id, position, step, args, state, attempts) "
                "VALUES (:id, :position, :step, '{}', 'pending', 0)"
            ),
            {"id": workflow_id, "position": position, "step": step},
        )

    with pytest.raises(InvalidDefinition):
        await engine.run(name)

    failed = await engine.get(name)
    assert failed.state is WorkflowState.ERROR
    for word in [*words, f"DELETE FROM workflow_steps WHERE workflow_id = {workflow_id}"]:
        assert word in (failed.last_error or ""), failed.last_error
    assert CALLS[key] == 0
    async with engine.db.engine.begin() as conn:
        await conn.execute(
            text("DELETE FROM workflow_steps WHERE workflow_id = :id"), {"id": workflow_id}
        )
    await engine.retry(name)
    assert (await engine.run(name)).state is WorkflowState.COMPLETED
    assert CALLS[key] == 1
