"""The run time `wfectl show` gives a step: its own, and never `running` for a step that
nothing runs (wfed.engine.views.StepTime)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from wfed.cli import render
from wfed.engine.views import StepTime, Workflow
from wfed.states import StepState, WorkflowState
from wfed.store.rows import EventRow, StepRow, WorkflowRow

NOW = datetime(2026, 11, 27, 10, 0, 0)
START = NOW - timedelta(seconds=50)


def workflow(state: WorkflowState, step: StepRow, **extra: Any) -> Workflow:
    row = WorkflowRow(
        id=1,
        name="w",
        state=state,
        steps=["sleep"],
        context={},
        current_step=0,
        queue="default",
        priority=0,
        run_after=None,
        requested=None,
        claimed_by="d1" if state is WorkflowState.RUNNING else None,
        lease_expires_at=extra.pop("lease", NOW + timedelta(seconds=20))
        if state is WorkflowState.RUNNING
        else None,
        fence=1,
        last_error=None,
        created_at=START,
        updated_at=START,
        finished_at=None,
    )
    return Workflow(row=row, steps=[step], **extra)


def step(state: StepState, finished: datetime | None = None, **changes: Any) -> StepRow:
    values: dict[str, Any] = {
        "position": 0,
        "step": "sleep",
        "label": None,
        "args": {},
        "state": state,
        "attempts": 1,
        "started_at": START,
        "finished_at": finished,
        "error": None,
    }
    values.update(changes)
    return StepRow(**values)


def found_interrupted(at: datetime, *, rerun: bool = False, position: int = 0) -> EventRow:
    return EventRow(
        id=9,
        workflow_id=1,
        workflow_name="w",
        position=position,
        kind="step_interrupted",
        actor="d2",
        at=at,
        reason=None,
        detail={"rerun": rerun},
    )


def test_a_finished_step_ran_from_its_start_to_its_end() -> None:
    done = step(StepState.COMPLETED, START + timedelta(seconds=6))
    view = workflow(WorkflowState.COMPLETED, done)
    assert view.step_time(done, NOW) == StepTime(6.0)
    assert render.step_duration(view, done, NOW) == "6.0s"


def test_a_running_step_of_a_running_workflow_runs_so_far() -> None:
    running = step(StepState.RUNNING)
    view = workflow(WorkflowState.RUNNING, running)
    assert view.step_time(running, NOW) == StepTime(50.0, running=True)
    assert render.step_duration(view, running, NOW) == "50s so far"
    assert render.step_state(view, running, NOW).plain == "running"


def test_a_running_step_whose_owner_lease_expired_is_not_said_to_run_surely() -> None:
    running = step(StepState.RUNNING)
    view = workflow(WorkflowState.RUNNING, running, lease=NOW - timedelta(seconds=30))
    assert view.step_time(running, NOW).owner_silent
    assert render.step_duration(view, running, NOW) == (
        "50s so far? (its owner's lease expired 30s ago)"
    )


def test_a_step_left_running_by_a_forced_shutdown_is_interrupted_not_running() -> None:
    """After a forced shutdown the workflow is pending and its step row still says
    `running`: it is shown interrupted, cut off when the release was recorded."""
    left = step(StepState.RUNNING)
    released = workflow(WorkflowState.PENDING, left, released_at=START + timedelta(seconds=6))
    assert released.step_time(left, NOW) == StepTime(6.0, cut_off=True)
    assert render.step_duration(released, left, NOW) == "6.0s, cut off"
    assert render.step_state(released, left, NOW).plain == "interrupted"

    unknown = workflow(WorkflowState.PAUSED, left)
    assert unknown.step_time(left, NOW) == StepTime(None, cut_off=True)
    assert render.step_duration(unknown, left, NOW) == "cut off"
    assert "so far" not in render.step_duration(unknown, left, NOW)

    before = workflow(WorkflowState.PENDING, left, released_at=START - timedelta(seconds=1))
    assert before.step_time(left, NOW) == StepTime(None, cut_off=True)


def test_a_step_found_interrupted_ran_at_most_until_it_was_found() -> None:
    """The row of a step found interrupted ends when it was found (38 s after its start):
    that is an upper bound, not its run time; a recorded release says when it ended."""
    found_at = START + timedelta(seconds=38)
    failed = step(StepState.ERROR, found_at, error="interrupted while running step 0")
    view = workflow(WorkflowState.ERROR, failed, interrupted=found_interrupted(found_at))
    assert view.step_time(failed, NOW) == StepTime(38.0, cut_off=True, at_most=True)
    assert render.step_duration(view, failed, NOW) == "cut off within 38s"

    released = workflow(
        WorkflowState.ERROR,
        failed,
        interrupted=found_interrupted(found_at),
        released_at=START + timedelta(seconds=6),
    )
    assert render.step_duration(released, failed, NOW) == "6.0s, cut off"


def test_other_failures_and_reruns_keep_their_own_times() -> None:
    """A step that failed on its own, or whose interruption was at another step or
    before this attempt started, or was re-run: finished minus started."""
    failed = step(StepState.ERROR, START + timedelta(seconds=3), error="boom")
    for event in (
        None,
        found_interrupted(START + timedelta(seconds=3), position=1),
        found_interrupted(START - timedelta(seconds=5)),
        found_interrupted(START + timedelta(seconds=3), rerun=True),
    ):
        view = workflow(WorkflowState.ERROR, failed, interrupted=event)
        assert view.step_time(failed, NOW) == StepTime(3.0), event


def test_a_step_without_a_run_has_no_time() -> None:
    pending = step(StepState.PENDING, started_at=None)
    view = workflow(WorkflowState.PENDING, pending)
    assert view.step_time(pending, NOW) == StepTime(None)
    assert render.step_duration(view, pending, NOW) == ""
