"""The operations table of wfed.states, as the database applies it.

Every guarded write of the store reads its source and target states from the table, so
this exercises the production writes themselves — the guarded update of every operation,
the claim by id, the claimable check and delete — on a row in each state, against
expectations written by hand from docs/ and the state table of the README, not derived
from wfed.states. Changing one row of the table makes one of these fail.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from conftest import unique_name
from sqlalchemy import update

from wfed import Engine
from wfed.clock import utc_now
from wfed.states import Operation as Op
from wfed.states import WorkflowState
from wfed.store import claims
from wfed.store import workflows as workflow_store
from wfed.store.schema import workflows

S = WorkflowState
ALL = frozenset(S)
NOT_RUNNING = ALL - {S.RUNNING}
RUNNING = frozenset({S.RUNNING})

# operation -> (the states it applies to, the state it leaves; None: unchanged)
EXPECTED: dict[Op, tuple[frozenset[WorkflowState], WorkflowState | None]] = {
    Op.CREATE: (frozenset(), S.PENDING),
    Op.PAUSE: (frozenset({S.PENDING}), S.PAUSED),
    Op.STOP: (frozenset({S.PENDING, S.PAUSED, S.ERROR}), S.STOPPED),
    Op.RESUME: (frozenset({S.PAUSED}), S.PENDING),
    Op.RETRY: (frozenset({S.ERROR}), S.PENDING),
    Op.SKIP: (frozenset({S.PAUSED, S.ERROR}), S.PENDING),
    Op.RESTART: (NOT_RUNNING, S.PENDING),
    Op.DELETE: (NOT_RUNNING, None),
    Op.SET_CONTEXT: (NOT_RUNNING, None),
    Op.REQUEST_PAUSE: (RUNNING, None),
    Op.REQUEST_STOP: (RUNNING, None),
    Op.CLAIM: (frozenset({S.PENDING}), S.RUNNING),
    Op.RESCUE: (RUNNING, S.RUNNING),
    Op.RENEW: (RUNNING, None),
    Op.START: (RUNNING, None),
    Op.ADVANCE: (RUNNING, None),
    Op.COMPLETE: (RUNNING, S.COMPLETED),
    Op.FAIL: (RUNNING, S.ERROR),
    Op.REJECT: (RUNNING, S.ERROR),
    Op.INTERRUPT: (RUNNING, S.ERROR),
    Op.HONOUR_PAUSE: (RUNNING, S.PAUSED),
    Op.HONOUR_STOP: (RUNNING, S.STOPPED),
    Op.RELEASE: (RUNNING, S.PENDING),
    Op.WAIT_FOR_WINDOW: (RUNNING, S.PENDING),
    Op.KEEP_PAUSED: (frozenset({S.PAUSED}), None),
    Op.SET_WINDOWS: (NOT_RUNNING, None),
}


def test_every_operation_is_expected() -> None:
    """The hand-written table has a row for every operation."""
    assert set(EXPECTED) == set(Op)


async def _in_state(engine: Engine, create, state: WorkflowState) -> int:
    """A new workflow put in `state` (lease expired, if running), in a queue of its own
    so that no claim of another test ever sees it."""
    name = await create(["noop"], queue=unique_name("table"))
    async with engine.db.transaction() as conn:
        row = await workflow_store.workflow_get(conn, name)
        assert row is not None
        await conn.execute(
            update(workflows)
            .where(workflows.c.id == row.id)
            .values(state=state.value, lease_expires_at=utc_now() - timedelta(seconds=5))
        )
    return row.id


async def _state_of(engine: Engine, workflow_id: int) -> WorkflowState | None:
    async with engine.db.transaction() as conn:
        row = await workflow_store.workflow_get_by_id(conn, workflow_id)
    return None if row is None else row.state


@pytest.mark.parametrize("operation", list(Op), ids=str)
async def test_guarded_update_follows_the_table(engine: Engine, create, operation: Op) -> None:
    """The guarded update of `operation` matches a row exactly in the operation's source
    states, and leaves it in the operation's target state (or its own)."""
    sources, target = EXPECTED[operation]
    for state in S:
        workflow_id = await _in_state(engine, create, state)
        async with engine.db.transaction() as conn:
            matched = await workflow_store.workflow_update(
                conn, workflow_id, operation, values={"updated_at": utc_now()}
            )
        assert matched is (state in sources), (operation, state)
        expected = (target or state) if matched else state
        assert await _state_of(engine, workflow_id) is expected, (operation, state)


async def test_claim_by_id_follows_the_table(engine: Engine, create) -> None:
    """A claim by id takes a workflow from the claim's or (lease expired) the rescue's
    source states, into the claim's target state; nothing else."""
    claimable = EXPECTED[Op.CLAIM][0] | EXPECTED[Op.RESCUE][0]
    for state in S:
        workflow_id = await _in_state(engine, create, state)
        async with engine.db.transaction() as conn:
            claimed = await claims.workflow_claim_by_id(
                conn, workflow_id, owner="table-test", now=utc_now(), lease=60
            )
        assert claimed is (state in claimable), state
        after = EXPECTED[Op.CLAIM][1] if claimed else state
        assert await _state_of(engine, workflow_id) is after, state


async def test_delete_follows_the_table(engine: Engine, create) -> None:
    """A workflow is deleted from the delete operation's source states only."""
    for state in S:
        workflow_id = await _in_state(engine, create, state)
        async with engine.db.transaction() as conn:
            deleted = await workflow_store.workflow_delete(conn, workflow_id)
        assert deleted is (state in EXPECTED[Op.DELETE][0]), state
        assert (await _state_of(engine, workflow_id) is None) is deleted, state


async def test_a_new_workflow_is_pending(engine: Engine, create) -> None:
    """A created workflow is in the create operation's target state."""
    name = await create(["noop"], queue=unique_name("table"))
    assert (await engine.get(name)).state is EXPECTED[Op.CREATE][1]


async def test_claimable_follows_the_table(engine: Engine, create) -> None:
    """The idle daemon's question finds pending work in the claim's source states and
    expired leases in the rescue's, and nothing in any other state."""
    for state in S:
        workflow_id = await _in_state(engine, create, state)
        async with engine.db.transaction() as conn:
            row = await workflow_store.workflow_get_by_id(conn, workflow_id)
            assert row is not None
            pending = await claims.workflows_claimable(conn, [row.queue], utc_now())
            expired = await claims.workflows_claimable(conn, [row.queue], utc_now(), expired=True)
        assert pending is (state in EXPECTED[Op.CLAIM][0]), state
        assert expired is (state in EXPECTED[Op.RESCUE][0]), state
