"""The Python API (`wfed.Engine`) end to end on every backend: running, failing, retrying,
skipping, restarting, halting, deleting, locking, and the events every transition writes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import text
from stepmods.basic import CALLS

from wfed import (
    Engine,
    ErrorState,
    InvalidDefinition,
    InvalidTransition,
    StepError,
    StepState,
    Workflow,
    WorkflowExists,
    WorkflowHalted,
    WorkflowLocked,
    WorkflowNotFound,
    WorkflowState,
)
from wfed.clock import utc_now
from wfed.engine.step_times import step_time
from wfed.states import Request
from wfed.store import claims
from wfed.store import steps as step_store
from wfed.store import workflows as workflow_store

if TYPE_CHECKING:  # the fixtures' types (tests/integration/conftest.py)
    from conftest import RecordingClock


def attempts(workflow: Workflow) -> list[int]:
    return [s.attempts for s in workflow.steps]


def step_states(workflow: Workflow) -> list[StepState]:
    return [s.state for s in workflow.steps]


def fail_step(message: str = "boom", **policy: Any) -> dict[str, Any]:
    return {"step": "fail", "args": {"message": message}, **policy}


def fail_times(key: str, times: int, **policy: Any) -> dict[str, Any]:
    return {"step": "fail_times", "args": {"key": key, "times": times}, **policy}


def record(key: str) -> dict[str, Any]:
    return {"step": "record", "args": {"key": key}}


def new_key(prefix: str) -> str:
    """A key for the test steps' module-level counters that no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# -- running ------------------------------------------------------------------------------


async def test_run_completes_with_context_flowing_between_steps(engine: Engine, create) -> None:
    """An async step writes a key, a plain `def` step (in a worker thread) reads it and
    writes another; the run completes with both keys committed."""
    name = await create(["write_a", "read_a_write_b"], {"given": "x"})

    done = await engine.run(name)

    assert done.state is WorkflowState.COMPLETED
    assert done.context == {
        "given": "x",
        "a": 1,
        "a_on_main_thread": True,
        "b": 2,
        "b_on_main_thread": False,
    }
    assert step_states(done) == [StepState.COMPLETED, StepState.COMPLETED]
    assert attempts(done) == [1, 1]
    assert done.current_step == 2
    assert done.row.finished_at is not None
    assert done.row.claimed_by is None
    assert (await engine.get(name)).context == done.context


async def test_run_of_completed_workflow_returns_it_unchanged(engine: Engine, create) -> None:
    """`run` on a completed workflow returns it without running anything again."""
    key = new_key("k")
    name = await create([record(key)])
    first = await engine.run(name)

    again = await engine.run(name)

    assert again.row == first.row
    assert CALLS[key] == 1


# -- step failure, retry, skip, restart ---------------------------------------------------


async def test_step_failure_puts_workflow_in_error(engine: Engine, create, probe) -> None:
    """A failing step: StepError, workflow `error`, `last_error` names the step and the
    exception text, the context keeps only earlier steps' writes, later steps untouched."""
    name = await create(["write_a", fail_step("disk /var is full"), "read_a_write_b"])

    with pytest.raises(StepError, match="disk /var is full"):
        await engine.run(name)

    failed = await engine.get(name)
    assert failed.state is WorkflowState.ERROR
    assert failed.last_error is not None
    assert "step 1 'fail'" in failed.last_error
    assert "disk /var is full" in failed.last_error
    assert failed.current_step == 1
    assert step_states(failed) == [StepState.COMPLETED, StepState.ERROR, StepState.PENDING]
    assert attempts(failed) == [1, 1, 0]
    assert failed.steps[1].error is not None
    assert "disk /var is full" in failed.steps[1].error
    assert failed.steps[2].started_at is None
    assert "written_by_failed_step" not in failed.context
    assert failed.context["a"] == 1
    assert failed.halt_reason == failed.last_error
    assert (await probe.kinds(name))[-1] == "error"


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("exit", "SystemExit: 3"),
        ("interrupt", "KeyboardInterrupt"),
        ("own", "Abandon: giving up"),
    ],
)
@pytest.mark.parametrize("where", ["raise_base", "raise_base_in_thread"])
async def test_a_step_raising_what_is_not_an_exception_fails_like_any(
    engine: Engine, create, where: str, kind: str, text: str
) -> None:
    """SystemExit, KeyboardInterrupt or a BaseException of the step's own, from an async
    step or a plain one (a worker thread): the step fails with it, retried first, and the
    workflow goes to error naming it; nothing escapes the run."""
    step = {"step": where, "args": {"kind": kind}, "retries": 1}
    name = await create([step, "noop"])

    with pytest.raises(StepError, match=text):
        await engine.run(name)

    failed = await engine.get(name)
    assert failed.state is WorkflowState.ERROR
    assert failed.last_error is not None
    assert f"step 0 '{where}' failed after 2 attempts" in failed.last_error
    assert f"the step raised {text}" in failed.last_error
    assert step_states(failed) == [StepState.ERROR, StepState.PENDING]
    assert attempts(failed) == [2, 0]


async def test_retry_reruns_only_the_failed_step(engine: Engine, create) -> None:
    """`retry` of an errored workflow re-runs only the failed step (attempts 2, the others
    1) and the workflow completes."""
    key = new_key("retry")
    name = await create(["write_a", fail_times(key, 1), "read_a_write_b"])
    with pytest.raises(StepError):
        await engine.run(name)

    retried = await engine.retry(name, reason="fixed the disk")
    assert retried.state is WorkflowState.PENDING
    assert retried.last_error is None
    assert retried.current_step == 1
    done = await engine.run(name)

    assert done.state is WorkflowState.COMPLETED
    assert attempts(done) == [1, 2, 1]
    assert step_states(done) == [StepState.COMPLETED] * 3
    assert CALLS[key] == 2
    assert done.context[f"passed_{key}"] == 2


async def test_skip_errored_step_continues_with_patched_context(engine: Engine, create) -> None:
    """`skip(set_context=…)` of the errored step marks it skipped, patches the context and
    the workflow continues with the next step."""
    name = await create(["write_a", fail_step(), "read_a_write_b"], {"keep": True})
    with pytest.raises(StepError):
        await engine.run(name)

    skipped = await engine.skip(name, set_context={"a": 41, "patched": "yes"}, reason="manual")

    assert skipped.state is WorkflowState.PENDING
    assert skipped.current_step == 2
    assert skipped.last_error is None
    assert step_states(skipped) == [StepState.COMPLETED, StepState.SKIPPED, StepState.PENDING]
    assert skipped.context["patched"] == "yes"
    done = await engine.run(name)
    assert done.state is WorkflowState.COMPLETED
    assert step_states(done) == [StepState.COMPLETED, StepState.SKIPPED, StepState.COMPLETED]
    assert attempts(done) == [1, 1, 1]
    assert done.context["b"] == 42  # the step after the skip read the patched value
    assert done.context["keep"] is True


async def test_restart_from_step_reruns_only_later_steps(engine: Engine, create) -> None:
    """`restart(from_step=K)` resets steps ≥ K (state and attempts) and re-runs only
    them; earlier steps keep their state, attempts and timings."""
    first, second, third = new_key("r0"), new_key("r1"), new_key("r2")
    name = await create(
        [record(first), fail_times(second, 1, retries=1, retry_delay=0), record(third)]
    )
    done = await engine.run(name)
    assert attempts(done) == [1, 2, 1]

    restarted = await engine.restart(name, from_step=1, reason="again")

    assert restarted.state is WorkflowState.PENDING
    assert restarted.current_step == 1
    assert restarted.row.finished_at is None
    assert step_states(restarted) == [StepState.COMPLETED, StepState.PENDING, StepState.PENDING]
    assert attempts(restarted) == [1, 0, 0]
    assert restarted.steps[0] == done.steps[0]
    assert restarted.steps[1].started_at is None
    again = await engine.run(name)
    assert again.state is WorkflowState.COMPLETED
    assert attempts(again) == [1, 1, 1]
    assert again.steps[0] == done.steps[0]
    assert (CALLS[first], CALLS[second], CALLS[third]) == (1, 3, 2)


@pytest.mark.parametrize("from_step", [3, 7, -1])
async def test_restart_out_of_range_is_refused(
    engine: Engine, create, probe, from_step: int
) -> None:
    """`restart(from_step=K)` with K outside the workflow's steps is refused and changes
    nothing."""
    name = await create(["noop", "noop", "noop"])
    await engine.run(name)
    before = await probe.row(name)
    events = await probe.kinds(name)

    with pytest.raises(InvalidTransition, match=r"from step -?\d+"):
        await engine.restart(name, from_step=from_step)

    assert await probe.row(name) == before
    assert await probe.kinds(name) == events


# -- pause, stop, resume ------------------------------------------------------------------


async def test_pause_pending_then_resume_runs_to_completion(engine: Engine, create) -> None:
    """Pausing a pending workflow makes it `paused`; `run` then raises WorkflowHalted and
    runs nothing; after `resume` it runs to completion."""
    key = new_key("pause")
    name = await create([record(key), "noop"])

    paused = await engine.pause(name, reason="change freeze")
    assert paused.state is WorkflowState.PAUSED
    assert paused.halt_reason is not None
    assert "tester@host" in paused.halt_reason
    assert "change freeze" in paused.halt_reason
    with pytest.raises(WorkflowHalted, match="paused"):
        await engine.run(name)
    assert CALLS[key] == 0
    assert (await engine.get(name)).state is WorkflowState.PAUSED

    resumed = await engine.resume(name)
    assert resumed.state is WorkflowState.PENDING
    done = await engine.run(name)
    assert done.state is WorkflowState.COMPLETED
    assert CALLS[key] == 1


async def test_resume_and_skip_keep_a_run_after_still_to_come(
    engine: Engine, new_name, clock
) -> None:
    """A workflow set to run later, paused and resumed (or its step skipped) meanwhile,
    still waits for its time; a time already past is cleared."""
    later = clock() + timedelta(hours=1)
    planned, skipped = new_name("planned"), new_name("plannedskip")
    for name in (planned, skipped):
        await engine.create_workflow(name, {}, ["noop", "noop"], queue="itest", run_after=later)
        await engine.pause(name)

    assert (await engine.resume(planned)).row.run_after == later
    assert (await engine.skip(skipped)).row.run_after == later

    past = new_name("pastdue")
    await engine.create_workflow(past, {}, ["noop"], queue="itest", run_after=clock())
    await engine.pause(past)
    assert (await engine.resume(past)).row.run_after is None


async def test_stop_pending_then_restart_runs_to_completion(engine: Engine, create) -> None:
    """Stopping a pending workflow makes it `stopped`; `run` then raises WorkflowHalted;
    `restart` makes it runnable and it completes."""
    name = await create(["write_a", "read_a_write_b"])

    stopped = await engine.stop(name, reason="not needed")
    assert stopped.state is WorkflowState.STOPPED
    assert stopped.row.finished_at is not None
    with pytest.raises(WorkflowHalted, match="stopped"):
        await engine.run(name)
    assert attempts(await engine.get(name)) == [0, 0]

    restarted = await engine.restart(name)
    assert restarted.state is WorkflowState.PENDING
    done = await engine.run(name)
    assert done.state is WorkflowState.COMPLETED
    assert done.context["b"] == 2


async def test_pause_step_pauses_with_its_prompt_then_resume_continues(
    engine: Engine, create
) -> None:
    """The built-in `pause` step completes, pauses the workflow before the next step with
    its prompt as the halt reason; `resume` continues with the next step."""
    prompt = "approve the change in CAB-1234, then resume"
    name = await create(
        ["write_a", {"step": "pause", "args": {"prompt": prompt}}, "read_a_write_b"]
    )

    with pytest.raises(WorkflowHalted, match="CAB-1234"):
        await engine.run(name)

    paused = await engine.get(name)
    assert paused.state is WorkflowState.PAUSED
    assert paused.halt_reason is not None
    assert prompt in paused.halt_reason
    assert paused.current_step == 2
    assert step_states(paused) == [StepState.COMPLETED, StepState.COMPLETED, StepState.PENDING]
    assert paused.context["a"] == 1
    await engine.resume(name)
    done = await engine.run(name)
    assert done.state is WorkflowState.COMPLETED
    assert attempts(done) == [1, 1, 1]
    assert done.context["b"] == 2


async def test_a_pause_step_at_the_end_is_a_final_sign_off(engine: Engine, create) -> None:
    """A gate that is the last step pauses the workflow too, with its prompt; `resume`
    completes it (no step left to run)."""
    name = await create(["write_a", {"step": "pause", "args": {"prompt": "final sign-off"}}])

    with pytest.raises(WorkflowHalted, match="final sign-off"):
        await engine.run(name)

    paused = await engine.get(name)
    assert paused.state is WorkflowState.PAUSED
    assert step_states(paused) == [StepState.COMPLETED, StepState.COMPLETED]
    await engine.resume(name)
    done = await engine.run(name)
    assert done.state is WorkflowState.COMPLETED
    assert attempts(done) == [1, 1]


async def test_skipping_a_final_sign_off_completes_the_workflow(engine: Engine, create) -> None:
    """`skip` of a workflow paused by a gate that was its last step (every step done)
    does what `resume` does: it completes, with no step left to run or mark."""
    name = await create(["noop", "pause"])
    with pytest.raises(WorkflowHalted):
        await engine.run(name)

    skipped = await engine.skip(name, reason="signed off by phone")

    assert (skipped.state, skipped.current_step) == (WorkflowState.PENDING, 2)
    done = await engine.run(name)
    assert done.state is WorkflowState.COMPLETED
    assert step_states(done) == [StepState.COMPLETED, StepState.COMPLETED]


# -- delete -------------------------------------------------------------------------------


async def test_delete_is_refused_for_a_running_workflow(engine: Engine, create, probe) -> None:
    """`delete` of a running workflow raises InvalidTransition and deletes nothing."""
    name = await create(["noop"])
    async with probe.held_by_other(name) as held:
        events = await probe.kinds(name)

        with pytest.raises(InvalidTransition, match="running"):
            await engine.delete(name)

        assert await probe.row(name) == held
        assert await probe.kinds(name) == events


@pytest.mark.parametrize("run_first", [False, True], ids=["pending", "completed"])
async def test_delete_keeps_the_events(engine: Engine, create, probe, run_first: bool) -> None:
    """`delete` of a non-running workflow removes it; its events stay and `history(name)`
    still returns them, ending with `deleted`."""
    name = await create(["noop"])
    if run_first:
        await engine.run(name)
    before = await probe.kinds(name)

    await engine.delete(name, reason="cleanup")

    assert not await probe.exists(name)
    with pytest.raises(WorkflowNotFound):
        await engine.get(name)
    history = await engine.history(name)
    assert [e.kind for e in history] == [*before, "deleted"]
    assert history[-1].actor == "tester@host"
    assert history[-1].reason == "cleanup"


async def test_history_is_only_this_workflows_after_an_earlier_delete(
    engine: Engine, create
) -> None:
    """`history` of a workflow never includes the events of a deleted one, even one whose
    id the new workflow may have received."""
    gone = await create(["noop"])
    await engine.pause(gone)
    await engine.delete(gone)

    name = await create(["noop"])

    assert [e.kind for e in await engine.history(name)] == ["created"]
    assert [e.kind for e in await engine.history(gone)] == ["created", "paused", "deleted"]


async def test_deleted_workflows_id_is_not_reused(engine: Engine, create, probe) -> None:
    """A new workflow never gets the id of a deleted one (its events, kept for audit, are
    keyed by that id)."""
    gone = await create(["noop"])
    gone_id = (await probe.row(gone)).id
    await engine.delete(gone)

    name = await create(["noop"])

    assert (await probe.row(name)).id != gone_id


# -- refusals -----------------------------------------------------------------------------


async def test_duplicate_name_is_refused(engine: Engine, create, probe) -> None:
    """Creating a workflow under a taken name raises WorkflowExists and leaves the first
    workflow untouched."""
    name = await create(["noop"], {"first": True})
    before = await probe.row(name)
    events = await probe.kinds(name)

    with pytest.raises(WorkflowExists, match=name):
        await engine.create_workflow(name, {"second": True}, ["write_a", "read_a_write_b"])

    assert await probe.row(name) == before
    assert await probe.kinds(name) == events
    assert [s.step for s in (await engine.get(name)).steps] == ["noop"]


async def test_run_of_workflow_held_by_another_owner_is_refused(
    engine: Engine, create, probe
) -> None:
    """`run` on a workflow another live owner holds raises WorkflowLocked and changes
    nothing (owner and fencing token stay)."""
    key = new_key("locked")
    name = await create([record(key)])
    async with probe.held_by_other(name) as held:
        with pytest.raises(WorkflowLocked, match="other-daemon"):
            await engine.run(name)

        assert await probe.row(name) == held
    assert CALLS[key] == 0


async def test_run_of_errored_workflow_raises_error_state(engine: Engine, create, probe) -> None:
    """`run` on a workflow in `error` raises ErrorState and runs nothing."""
    name = await create([fail_step("first failure")])
    with pytest.raises(StepError):
        await engine.run(name)
    before = await probe.row(name)

    with pytest.raises(ErrorState, match="first failure"):
        await engine.run(name)

    assert await probe.row(name) == before
    assert attempts(await engine.get(name)) == [1]


# -- recovery and plain-SQL control ------------------------------------------------------


async def _crash_while_running_first_step(engine: Engine, name: str) -> None:
    """Leave `name` as a crashed owner would: running, its lease expired a minute ago,
    step 0 `running` with one attempt."""
    async with engine.db.transaction() as conn:
        row = await workflow_store.workflow_get(conn, name)
        assert row is not None
        long_ago = utc_now() - timedelta(seconds=120)
        claimed = await claims.workflow_claim_by_id(
            conn, row.id, owner="crashed-daemon", now=long_ago, lease=60
        )
        assert claimed
        await step_store.step_start(conn, row.id, 0, long_ago)


async def _request_with_sql(engine: Engine, name: str, request: str) -> None:
    """`UPDATE workflows SET requested = …`, as an operator's script would."""
    async with engine.db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE workflows SET requested = :request WHERE name = :name"),
            {"request": request, "name": name},
        )


async def test_run_reruns_an_interrupted_idempotent_step(engine: Engine, create) -> None:
    """`run` takes over a workflow whose owner's lease expired mid-step and re-runs the
    interrupted step when it is idempotent (its attempts grow)."""
    name = await create([{"step": "sleep", "args": {"seconds": 0}}, "noop"])
    await _crash_while_running_first_step(engine, name)

    done = await engine.run(name)

    assert done.state is WorkflowState.COMPLETED
    assert attempts(done) == [2, 1]
    kinds = [e.kind for e in await engine.history(name)]
    # Both are written by the one transaction that takes the workflow over.
    assert kinds[0] == "created"
    assert sorted(kinds[1:3]) == ["claimed", "step_interrupted"]
    assert kinds[3:] == ["completed"]


async def test_run_does_not_rerun_an_interrupted_non_idempotent_step(
    engine: Engine, create
) -> None:
    """A non-idempotent step interrupted by its owner's crash is not re-run: the workflow
    goes to error saying so, naming `wfectl retry` and `wfectl skip`."""
    key = new_key("interrupted")
    name = await create([record(key), "noop"])
    await _crash_while_running_first_step(engine, name)

    with pytest.raises(StepError, match="interrupted"):
        await engine.run(name)

    failed = await engine.get(name)
    assert failed.state is WorkflowState.ERROR
    assert failed.last_error is not None
    assert "interrupted while running step 0 'record'" in failed.last_error
    assert "wfectl retry" in failed.last_error
    assert "wfectl skip" in failed.last_error
    assert step_states(failed) == [StepState.ERROR, StepState.PENDING]
    assert attempts(failed) == [1, 0]
    assert CALLS[key] == 0


async def test_a_stop_honoured_at_the_claim_stops_the_cut_off_step(engine: Engine, create) -> None:
    """`requested = 'stop'` set with SQL on a workflow whose owner died mid-step: the
    claimer that takes it over stops it, and the step cut off with its owner is
    `stopped` too (not left `running` in a workflow that never runs again), with no end
    time of its own; `show` still tells it was cut off."""
    key = new_key("cutstop")
    name = await create([record(key), "noop"])
    await _crash_while_running_first_step(engine, name)
    await _request_with_sql(engine, name, "stop")

    with pytest.raises(WorkflowHalted, match="stopped"):
        await engine.run(name)

    stopped = await engine.get(name)
    assert stopped.state is WorkflowState.STOPPED
    assert step_states(stopped) == [StepState.STOPPED, StepState.PENDING]
    assert stopped.steps[0].finished_at is None
    assert step_time(stopped, stopped.steps[0], utc_now()).cut_off
    assert CALLS[key] == 0


async def test_a_stop_of_a_released_workflow_stops_its_cut_off_step(engine: Engine, create) -> None:
    """A workflow handed back as pending with its step cut off (a shutdown past its
    grace), then stopped by an operator: the step is `stopped` with it."""
    name = await create([{"step": "sleep", "args": {"seconds": 0}}, "noop"])
    await _crash_while_running_first_step(engine, name)
    async with engine.db.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE workflows SET state = 'pending', claimed_by = NULL, "
                "lease_expires_at = NULL WHERE name = :name"
            ),
            {"name": name},
        )

    await engine.stop(name, reason="not today")

    stopped = await engine.get(name)
    assert stopped.state is WorkflowState.STOPPED
    assert step_states(stopped) == [StepState.STOPPED, StepState.PENDING]
    assert stopped.steps[0].finished_at is None


async def test_a_pause_never_takes_the_place_of_a_waiting_stop(
    engine: Engine, create, probe
) -> None:
    """A stop requested of a running workflow, not yet acted on by its daemon, stays
    requested when someone then asks for a pause: the pause is refused, naming the stop.
    So is a pause of a pending row whose stop was requested with SQL."""
    running = await create(["noop", "noop"])
    await probe.claimed_runner(running, "other-daemon:1", lease=600)
    await engine.stop(running, reason="wrong servers")

    with pytest.raises(InvalidTransition, match="a stop is already requested"):
        await engine.pause(running, reason="later")

    row = await probe.row(running)
    assert (row.state, row.requested) == (WorkflowState.RUNNING, Request.STOP)
    assert (await probe.kinds(running))[-1] == "stop_requested"

    pending = await create(["noop"])
    await _request_with_sql(engine, pending, "stop")
    with pytest.raises(InvalidTransition, match="when a daemon next takes it"):
        await engine.pause(pending)
    assert (await probe.row(pending)).requested is Request.STOP


async def test_pause_requested_with_plain_sql_on_pending_is_applied_by_run(
    engine: Engine, create
) -> None:
    """`UPDATE workflows SET requested = 'pause'` on a pending row: the next claimer (here
    `run`) pauses it before its first step instead of running it."""
    key = new_key("sqlpause")
    name = await create([record(key)])
    await _request_with_sql(engine, name, "pause")

    with pytest.raises(WorkflowHalted, match="paused"):
        await engine.run(name)

    paused = await engine.get(name)
    assert paused.state is WorkflowState.PAUSED
    assert paused.row.requested is None
    assert paused.current_step == 0
    assert CALLS[key] == 0
    # Nobody is on record for a request made with SQL: the event says where it came from
    # rather than reading as the claimer's own decision.
    (event,) = [e for e in await engine.history(name) if e.kind == "paused"]
    assert event.reason is not None
    assert "pause requested in the database" in event.reason
    assert "pause requested in the database" in (paused.halt_reason or "")
    await engine.resume(name)
    assert (await engine.run(name)).state is WorkflowState.COMPLETED
    assert CALLS[key] == 1


# -- retries, timeouts, bad contexts ------------------------------------------------------


async def test_retries_without_delay_count_attempts(engine: Engine, create) -> None:
    """A step with retries=2 and retry_delay 0 runs 3 times in one claim, writing a
    `step_retry` event per retry, then the workflow goes to error."""
    name = await create([fail_step("always", retries=2, retry_delay=0)])

    with pytest.raises(StepError, match="after 3 attempts"):
        await engine.run(name)

    failed = await engine.get(name)
    assert failed.state is WorkflowState.ERROR
    assert attempts(failed) == [3]
    history = await engine.history(name)
    assert [e.kind for e in history] == ["created", "claimed", "step_retry", "step_retry", "error"]
    assert [e.detail["attempt"] for e in history if e.kind == "step_retry"] == [1, 2]


async def test_retry_delay_releases_and_reclaims_until_attempts_run_out(
    engine: Engine, create, clock: RecordingClock
) -> None:
    """With retry_delay 0.2 s a failed attempt releases the workflow to pending with
    run_after 0.2 s past the engine's clock; the same `run` re-claims it once due by that
    clock; it ends in error after retries+1 attempts."""
    name = await create([fail_step("still broken", retries=1, retry_delay=0.2)])

    with pytest.raises(StepError, match="after 2 attempts"):
        await engine.run(name)

    failed = await engine.get(name)
    assert attempts(failed) == [2]
    history = await engine.history(name)
    assert [e.kind for e in history] == ["created", "claimed", "step_retry", "claimed", "error"]
    retry, reclaim = history[2], history[3]
    assert retry.detail["delay"] == pytest.approx(0.2)
    run_after = failed.row.run_after
    assert run_after is not None
    assert run_after - timedelta(seconds=0.2) in clock.told  # the delay, from the clock
    assert run_after >= retry.at
    assert reclaim.at >= run_after  # not re-claimed before it was due
    assert reclaim.detail["fence"] == history[1].detail["fence"] + 1


async def test_retry_delay_then_success_on_second_attempt(engine: Engine, create) -> None:
    """A step that fails once with retry_delay 0.2 s succeeds on its second attempt in the
    same `run` call and the workflow completes."""
    key = new_key("delay")
    name = await create([fail_times(key, 1, retries=3, retry_delay=0.2), "noop"])

    done = await engine.run(name)

    assert done.state is WorkflowState.COMPLETED
    assert attempts(done) == [2, 1]
    kinds = [e.kind for e in await engine.history(name)]
    assert kinds == ["created", "claimed", "step_retry", "claimed", "completed"]


async def test_step_timeout_fails_the_step(engine: Engine, create) -> None:
    """A step running past its `timeout` fails with a message saying it timed out."""
    name = await create([{"step": "sleep", "args": {"seconds": 30}, "timeout": 0.2}])

    with pytest.raises(StepError, match="timed out"):
        await engine.run(name)

    failed = await engine.get(name)
    assert failed.state is WorkflowState.ERROR
    assert failed.last_error is not None
    assert "timed out after 0.2 s" in failed.last_error
    assert "step 0 'sleep'" in failed.last_error


async def test_non_json_context_is_a_step_error(engine: Engine, create) -> None:
    """A step leaving a non-JSON value in the context fails with a clear message and the
    committed context stays as before that step."""
    name = await create(["write_a", "bad_context", "noop"], {"given": 1})

    with pytest.raises(StepError, match="not JSON"):
        await engine.run(name)

    failed = await engine.get(name)
    assert failed.state is WorkflowState.ERROR
    assert failed.last_error is not None
    assert "step 1 'bad_context'" in failed.last_error
    assert "context that is not JSON" in failed.last_error
    assert failed.context == {"given": 1, "a": 1, "a_on_main_thread": True}
    assert step_states(failed) == [StepState.COMPLETED, StepState.ERROR, StepState.PENDING]


# -- context edits ------------------------------------------------------------------------


async def test_set_context_sets_and_unsets_keys(engine: Engine, create) -> None:
    """`set_context` on a non-running workflow sets and unsets keys and records one
    `context_set` event."""
    name = await create(["read_a_write_b"], {"a": 1, "drop": "me", "keep": [1, 2]})

    changed = await engine.set_context(name, {"a": 10, "new": {"x": 1}}, unset=["drop"])

    assert changed.context == {"a": 10, "new": {"x": 1}, "keep": [1, 2]}
    history = await engine.history(name)
    assert [e.kind for e in history] == ["created", "context_set"]
    assert history[-1].detail == {"set": {"a": 10, "new": {"x": 1}}, "unset": ["drop"]}
    done = await engine.run(name)
    assert done.context["b"] == 11


async def test_a_context_that_is_no_object_cannot_be_edited(
    engine: Engine, new_name, probe
) -> None:
    """A context written by SQL as something other than a JSON object: `set_context` and
    `skip --set` are refused, saying what it holds and how to fix it, not a TypeError."""
    name = new_name("ctxlist")
    async with engine.db.engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO workflows (name, steps, context, state) VALUES (:n, :s, :c, :st)"),
            {"n": name, "s": '["noop", "noop"]', "c": "[1, 2]", "st": "paused"},
        )

    with pytest.raises(InvalidTransition, match=r"it holds no object.*UPDATE workflows SET"):
        await engine.set_context(name, {"a": 1})
    with pytest.raises(InvalidTransition, match="it holds no object"):
        await engine.skip(name, set_context={"a": 1})
    assert (await probe.row(name)).context == [1, 2]


async def test_set_context_is_refused_while_running(engine: Engine, create, probe) -> None:
    """`set_context` on a running workflow raises InvalidTransition and changes nothing."""
    name = await create(["noop"], {"a": 1})
    async with probe.held_by_other(name) as held:
        events = await probe.kinds(name)

        with pytest.raises(InvalidTransition, match="running"):
            await engine.set_context(name, {"a": 2})

        assert await probe.row(name) == held
        assert await probe.kinds(name) == events


async def test_unset_of_missing_context_key_is_refused(engine: Engine, create, probe) -> None:
    """Unsetting a key the context does not have is refused and changes nothing."""
    name = await create(["noop"], {"a": 1})
    before = await probe.row(name)

    with pytest.raises(InvalidTransition, match="no context key 'b'"):
        await engine.set_context(name, unset=["b"])

    assert await probe.row(name) == before


# -- events -------------------------------------------------------------------------------


async def test_simple_run_writes_created_claimed_completed(
    database_url: str, make_engine: Callable[..., Engine], new_name
) -> None:
    """A simple run writes exactly the events created, claimed, completed, each with the
    Engine's actor."""
    engine = make_engine(database_url, actor="tester@host")
    name = new_name()
    await engine.create_workflow(name, {}, ["write_a", "read_a_write_b"], queue="itest")

    await engine.run(name)

    history = await engine.history(name)
    assert [e.kind for e in history] == ["created", "claimed", "completed"]
    assert {e.actor for e in history} == {"tester@host"}
    assert all(e.workflow_name == name for e in history)
    assert history == sorted(history, key=lambda e: e.id)


async def test_every_operator_transition_writes_one_event(engine: Engine, create) -> None:
    """Each operator transition writes exactly one event of its kind, with the actor and
    the reason given."""
    name = await create(["noop"])
    expected = ["created"]

    async def check(kind: str) -> None:
        expected.append(kind)
        history = await engine.history(name)
        assert [e.kind for e in history] == expected
        assert history[-1].actor == "tester@host"

    await engine.pause(name, reason="r-pause")
    await check("paused")
    await engine.resume(name, reason="r-resume")
    await check("resumed")
    await engine.set_context(name, {"x": 1}, reason="r-ctx")
    await check("context_set")
    await engine.stop(name, reason="r-stop")
    await check("stopped")
    await engine.restart(name, reason="r-restart")
    await check("restarted")
    await engine.delete(name, reason="r-delete")
    await check("deleted")
    reasons = [e.reason for e in await engine.history(name)][1:]
    assert reasons == ["r-pause", "r-resume", "r-ctx", "r-stop", "r-restart", "r-delete"]


@pytest.mark.parametrize(
    ("queue", "priority", "words"),
    [
        ("default", 2**31, "out of range"),
        ("default", -(2**31), "out of range"),
        ("q" * 65, 0, "1 to 64 characters"),
        (" padded", 0, "surrounding spaces"),
    ],
)
async def test_placement_no_backend_stores_is_refused_before_writing(
    engine: Engine, probe, queue: str, priority: int, words: str
) -> None:
    """The same InvalidDefinition on every backend (SQLite would store these values,
    the servers fail the INSERT with their own error), and nothing written."""
    name = new_key("placement")
    with pytest.raises(InvalidDefinition, match=words):
        await engine.create_workflow(name, {}, ["noop"], queue=queue, priority=priority)
    assert not await probe.exists(name)


@pytest.mark.parametrize(
    ("kind", "words"),
    [("bigint", "context.big: an integer that does not fit 64 bits"), ("key", "key 1")],
)
async def test_a_context_a_claim_would_refuse_fails_the_step_that_left_it(
    engine: Engine, create, kind: str, words: str
) -> None:
    """Not the workflow's next turn ("invalid workflow" once resumed or retried): the
    step that left it fails, and the context stays as it was."""
    name = await create([{"step": "write_unstorable", "args": {"kind": kind}}, "noop"])

    with pytest.raises(StepError, match=words):
        await engine.run(name)

    failed = await engine.get(name)
    assert step_states(failed) == [StepState.ERROR, StepState.PENDING]
    assert failed.context == {}


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (float("nan"), "not JSON"),
        (float("inf"), "not JSON"),
        (2**80, "does not fit 64 bits"),
        (object(), "not JSON"),
        ({1: "x"}, "is not a string"),
    ],
)
async def test_a_context_edit_no_backend_stores_is_refused(
    engine: Engine, create, value: Any, words: str
) -> None:
    """`set_context` and `skip(set_context=…)`: InvalidDefinition on every backend (not
    the database's own error, nor a value stored that the next claim refuses), and the
    context unchanged."""
    name = await create([fail_step(), "noop"])
    with pytest.raises(StepError):
        await engine.run(name)

    with pytest.raises(InvalidDefinition, match=words):
        await engine.set_context(name, {"x": value})
    with pytest.raises(InvalidDefinition, match=words):
        await engine.skip(name, set_context={"x": value})
    halted = await engine.get(name)
    assert halted.state is WorkflowState.ERROR
    assert "x" not in halted.context


async def test_unset_of_one_key_given_as_a_string(engine: Engine, create) -> None:
    """`set_context(name, unset="ab")` removes the key "ab", not "a" and "b"."""
    name = await create(["noop"])
    await engine.pause(name)
    await engine.set_context(name, {"ab": 1, "a": 2, "b": 3})
    await engine.set_context(name, unset="ab")
    assert (await engine.get(name)).context == {"a": 2, "b": 3}


async def test_a_run_after_with_an_offset_is_stored_as_utc(engine: Engine, new_name) -> None:
    """16:00+02:00 is 14:00 UTC, on every backend (PostgreSQL refused an aware one, the
    others stored its wall-clock time)."""
    name = new_name("offset")
    local = datetime(2099, 1, 1, 16, 0, tzinfo=timezone(timedelta(hours=2)))
    await engine.create_workflow(name, {}, ["noop"], queue="itest", run_after=local)
    assert (await engine.get(name)).row.run_after == datetime(2099, 1, 1, 14, 0)


async def test_a_name_is_found_only_as_it_is_written(engine: Engine, create) -> None:
    """Another case or accents names another workflow, also where the database's
    collation would match them (MariaDB): `get` and `delete` find nothing."""
    name = await create(["noop"])
    other = name.upper().replace("A", "Ä")
    with pytest.raises(WorkflowNotFound):
        await engine.get(other)
    with pytest.raises(WorkflowNotFound):
        await engine.delete(other)
    assert (await engine.get(name)).name == name
