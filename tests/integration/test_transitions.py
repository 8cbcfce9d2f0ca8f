"""Every guarded transition refuses a wrong source state, through the Engine and in SQL.

The refusal table is written out from the README's state table (which operation leaves
which state), not derived from `wfed.states`, so that the code is checked against the contract.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from wfed import Engine, InvalidTransition, StepError, WorkflowState
from wfed.clock import utc_now
from wfed.engine.runner import Outcome, WorkflowRunner
from wfed.states import Operation, state_phrase
from wfed.store import claims
from wfed.store import steps as step_store
from wfed.store import workflows as workflow_store

S = WorkflowState

# operation -> the states the README ("States", "Operating wfed") does not allow it from.
# `pause` and `stop` of a running workflow are requests to its owner, not refusals, so
# they are not listed there.
REFUSED: dict[str, list[WorkflowState]] = {
    "pause": [S.PAUSED, S.ERROR, S.STOPPED, S.COMPLETED],
    "stop": [S.STOPPED, S.COMPLETED],
    "resume": [S.PENDING, S.RUNNING, S.ERROR, S.STOPPED, S.COMPLETED],
    "retry": [S.PENDING, S.RUNNING, S.PAUSED, S.STOPPED, S.COMPLETED],
    "skip": [S.PENDING, S.RUNNING, S.STOPPED, S.COMPLETED],
    "restart": [S.RUNNING],
    "delete": [S.RUNNING],
    "set_context": [S.RUNNING],
}

CASES = [(operation, state) for operation, states in REFUSED.items() for state in states]

OPERATIONS: dict[str, Callable[[Engine, str], Awaitable[Any]]] = {
    "pause": lambda engine, name: engine.pause(name, reason="r"),
    "stop": lambda engine, name: engine.stop(name, reason="r"),
    "resume": lambda engine, name: engine.resume(name, reason="r"),
    "retry": lambda engine, name: engine.retry(name, reason="r"),
    "skip": lambda engine, name: engine.skip(name, set_context={"k": "v"}, reason="r"),
    "restart": lambda engine, name: engine.restart(name, from_step=0, reason="r"),
    "delete": lambda engine, name: engine.delete(name, reason="r"),
    "set_context": lambda engine, name: engine.set_context(name, {"k": "v"}, reason="r"),
}

# The cases cover all eight operator operations and every state (checked on collection).
assert set(REFUSED) == set(OPERATIONS)
assert {state for _, state in CASES} == set(WorkflowState)


async def _put_in(engine: Engine, create, state: WorkflowState) -> str:
    """A new workflow brought into `state` (not `running`) through the Engine API."""
    if state is S.ERROR:
        name = await create(["noop", {"step": "fail", "args": {"message": "x"}}, "noop"])
        with pytest.raises(StepError):
            await engine.run(name)
    else:
        name = await create(["noop", "noop"], {"c": 1})
        if state is S.PAUSED:
            await engine.pause(name)
        elif state is S.STOPPED:
            await engine.stop(name)
        elif state is S.COMPLETED:
            await engine.run(name)
    assert (await engine.get(name)).state is state
    return name


@pytest.mark.parametrize(("operation", "state"), CASES, ids=[f"{o}-{s}" for o, s in CASES])
async def test_operation_refused_from_wrong_state(
    engine: Engine, create, probe, operation: str, state: WorkflowState
) -> None:
    """The operation raises InvalidTransition naming the current state and leaves the row
    (state, step, context, every column), its steps and its events unchanged."""
    if state is S.RUNNING:
        name = await create(["noop", "noop"], {"c": 1})
        async with probe.held_by_other(name):
            await _assert_refused(engine, probe, name, operation, state)
    else:
        name = await _put_in(engine, create, state)
        await _assert_refused(engine, probe, name, operation, state)


async def _assert_refused(
    engine: Engine, probe, name: str, operation: str, state: WorkflowState
) -> None:
    before = await probe.row(name)
    steps = (await engine.get(name)).steps
    events = await engine.history(name)

    with pytest.raises(InvalidTransition) as refused:
        await OPERATIONS[operation](engine, name)

    assert f"it is {state_phrase(state)} (allowed from:" in str(refused.value)
    after = await probe.row(name)
    assert (after.state, after.current_step, after.context) == (
        before.state,
        before.current_step,
        before.context,
    )
    assert after == before
    assert (await engine.get(name)).steps == steps
    assert await engine.history(name) == events


async def test_sql_guard_refuses_a_row_in_another_state(engine: Engine, create, probe) -> None:
    """`workflow_update` for an operation whose source states do not hold the row's
    returns False and changes nothing; for one that does, it returns True and writes the
    operation's target state (the guard is the only difference)."""
    name = await create(["noop"], {"c": 1})
    before = await probe.row(name)
    values = {"context": {"c": 2}, "current_step": 1}

    async with engine.db.transaction() as conn:
        matched = await workflow_store.workflow_update(
            conn, before.id, Operation.RESUME, values=values
        )
    assert matched is False
    assert await probe.row(name) == before

    async with engine.db.transaction() as conn:
        matched = await workflow_store.workflow_update(
            conn, before.id, Operation.STOP, values=values
        )
    assert matched is True
    after = await probe.row(name)
    assert (after.state, after.context, after.current_step) == (S.STOPPED, {"c": 2}, 1)


async def test_sql_guard_refuses_a_wrong_fence(engine: Engine, create, probe) -> None:
    """`workflow_update` with a fencing token the row does not hold returns False and
    changes nothing, though the state matches; the current token matches."""
    name = await create(["noop"])
    unclaimed = await probe.row(name)
    async with probe.held_by_other(name) as held:
        assert held.fence == unclaimed.fence + 1
        values = {"context": {"written": "by a stale owner"}, "current_step": 1}

        for stale in (held.fence - 1, held.fence + 1):
            async with engine.db.transaction() as conn:
                matched = await workflow_store.workflow_update(
                    conn, held.id, Operation.ADVANCE, fence=stale, values=values
                )
            assert matched is False
            assert await probe.row(name) == held

        async with engine.db.transaction() as conn:
            matched = await workflow_store.workflow_update(
                conn, held.id, Operation.ADVANCE, fence=held.fence, values=values
            )
        assert matched is True
        assert (await probe.row(name)).context == {"written": "by a stale owner"}


async def test_sql_guard_unrequested_refuses_a_row_with_a_request(
    engine: Engine, create, probe
) -> None:
    """`workflow_update(unrequested=True)` does not match a running row that has a pause
    request waiting, even with the right state and fence."""
    name = await create(["noop"])
    async with probe.held_by_other(name) as held:
        await engine.pause(name, reason="please")
        requested = await probe.row(name)
        assert requested.requested is not None
        assert requested.requested.value == "pause"

        async with engine.db.transaction() as conn:
            matched = await workflow_store.workflow_update(
                conn,
                held.id,
                Operation.ADVANCE,
                fence=held.fence,
                unrequested=True,
                values={"current_step": 1},
            )
            steps = await step_store.steps_get(conn, held.id)
        assert matched is False
        assert await probe.row(name) == requested
        assert [s.attempts for s in steps] == [0]


async def test_claim_by_id_refuses_a_live_lease(engine: Engine, create, probe) -> None:
    """The guarded claim does not take a running workflow whose lease is still valid."""
    name = await create(["noop"])
    async with probe.held_by_other(name) as held:
        async with engine.db.transaction() as conn:
            claimed = await claims.workflow_claim_by_id(
                conn, held.id, owner="thief", now=utc_now(), lease=30
            )
        assert claimed is False
        assert await probe.row(name) == held


async def test_a_pause_committed_after_the_claim_is_honoured_before_the_first_step(
    engine: Engine, create, probe
) -> None:
    """A pause requested between the claim (whose row said: no request) and the
    runner's first transaction is seen by that transaction: the workflow is paused and
    no step has started."""
    name = await create(["noop", "noop"])
    row = await probe.row(name)
    async with engine.db.transaction() as conn:
        assert await claims.workflow_claim_by_id(
            conn, row.id, owner="runner@test", now=utc_now(), lease=60
        )
    claimed = await probe.row(name)
    assert claimed.requested is None
    await engine.pause(name, reason="changed my mind")

    runner = WorkflowRunner(
        engine.db, engine.registry, claimed, actor="runner@test", lease_seconds=60
    )
    result = await runner.run()

    assert result.outcome is Outcome.PAUSED
    paused = await engine.get(name)
    assert paused.state is WorkflowState.PAUSED
    assert [step.attempts for step in paused.steps] == [0, 0]
