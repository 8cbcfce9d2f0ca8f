"""Queries on the `workflow_steps` table.

Step rows are only written in the same transaction as a guarded write to their workflow's
row, which holds the row lock (and checks the fencing token); that is what makes them safe
without a token of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from wfed.states import StepState
from wfed.store.rows import StepRow
from wfed.store.schema import workflow_steps

S = workflow_steps.c


async def steps_insert(
    conn: AsyncConnection, workflow_id: int, rows: Sequence[tuple[str, str | None, dict[str, Any]]]
) -> None:
    """Create the step rows of a workflow: (step name, label, args) per position."""
    await conn.execute(
        workflow_steps.insert(),
        [
            {
                "workflow_id": workflow_id,
                "position": position,
                "step": name,
                "label": label,
                "args": args,
                "state": StepState.PENDING,
                "attempts": 0,
            }
            for position, (name, label, args) in enumerate(rows)
        ],
    )


# The statements every workflow run issues, built once (see workflows._guarded_update).
_STEPS_OF = (
    select(workflow_steps).where(S.workflow_id == bindparam("b_workflow_id")).order_by(S.position)
)
_START = (
    update(workflow_steps)
    .where(S.workflow_id == bindparam("b_workflow_id"), S.position == bindparam("b_position"))
    .values(
        state=StepState.RUNNING.value,
        attempts=S.attempts + 1,
        started_at=bindparam("b_now"),
        finished_at=None,
        error=None,
    )
)
_FINISH = (
    update(workflow_steps)
    .where(S.workflow_id == bindparam("b_workflow_id"), S.position == bindparam("b_position"))
    .values(state=bindparam("b_state"), finished_at=bindparam("b_now"), error=bindparam("b_error"))
)


async def steps_get(conn: AsyncConnection, workflow_id: int) -> list[StepRow]:
    """The steps of a workflow in order (empty until the definition was validated)."""
    rows = await conn.execute(_STEPS_OF, {"b_workflow_id": workflow_id})
    return [StepRow.from_mapping(row) for row in rows.mappings()]


async def step_start(conn: AsyncConnection, workflow_id: int, position: int, now: datetime) -> None:
    """Mark a step running and count the attempt."""
    await conn.execute(_START, {"b_workflow_id": workflow_id, "b_position": position, "b_now": now})


async def step_finish(
    conn: AsyncConnection,
    workflow_id: int,
    position: int,
    state: StepState,
    now: datetime,
    error: str | None = None,
) -> None:
    """Give a step its final state for this run (completed, error, skipped, stopped)."""
    await conn.execute(
        _FINISH,
        {
            "b_workflow_id": workflow_id,
            "b_position": position,
            "b_state": state.value,
            "b_now": now,
            "b_error": error,
        },
    )


_FINISH_AND_START = (
    update(workflow_steps)
    .where(
        S.workflow_id == bindparam("b_workflow_id"),
        S.position.in_([bindparam("b_position"), bindparam("b_next")]),
    )
    .values(
        state=case(
            (S.position == bindparam("b_position"), StepState.COMPLETED.value),
            else_=StepState.RUNNING.value,
        ),
        attempts=case((S.position == bindparam("b_next"), S.attempts + 1), else_=S.attempts),
        started_at=case(
            (S.position == bindparam("b_next"), bindparam("b_now")), else_=S.started_at
        ),
        finished_at=case((S.position == bindparam("b_position"), bindparam("b_now")), else_=None),
        error=None,
    )
)


async def step_finish_and_start_next(
    conn: AsyncConnection, workflow_id: int, position: int, now: datetime
) -> None:
    """Complete step `position` and start step `position + 1` in one statement (built
    once: it runs for every step)."""
    await conn.execute(
        _FINISH_AND_START,
        {
            "b_workflow_id": workflow_id,
            "b_position": position,
            "b_next": position + 1,
            "b_now": now,
        },
    )


def _pairs_in(name: str) -> Any:
    return tuple_(S.workflow_id, S.position).in_(bindparam(name, expanding=True))


# `_FINISH_AND_START` for a batch of workflows (see workflows.workflows_advance_many).
# The plain id list lets every database find the rows through the unique index.
_FINISH_AND_START_MANY = (
    update(workflow_steps)
    .where(S.workflow_id.in_(bindparam("b_ids", expanding=True)), _pairs_in("b_touched"))
    .values(
        state=case(
            (_pairs_in("b_finished"), StepState.COMPLETED.value), else_=StepState.RUNNING.value
        ),
        attempts=case((_pairs_in("b_started"), S.attempts + 1), else_=S.attempts),
        started_at=case((_pairs_in("b_started"), bindparam("b_now")), else_=S.started_at),
        finished_at=case((_pairs_in("b_finished"), bindparam("b_now")), else_=None),
        error=None,
    )
)


async def steps_finish_and_start_next_many(
    conn: AsyncConnection, moves: Sequence[tuple[int, int]], now: datetime
) -> None:
    """`step_finish_and_start_next` for many (workflow id, completed position) pairs."""
    finished = list(moves)
    started = [(workflow_id, position + 1) for workflow_id, position in moves]
    await conn.execute(
        _FINISH_AND_START_MANY,
        {
            "b_ids": [workflow_id for workflow_id, _ in moves],
            "b_touched": finished + started,
            "b_finished": finished,
            "b_started": started,
            "b_now": now,
        },
    )


async def step_reschedule(
    conn: AsyncConnection, workflow_id: int, position: int, error: str
) -> None:
    """Put a failed step back to pending for its next attempt, keeping the error."""
    await conn.execute(
        update(workflow_steps)
        .where(S.workflow_id == workflow_id, S.position == position)
        .values(state=StepState.PENDING, error=error)
    )


async def steps_reset_from(conn: AsyncConnection, workflow_id: int, position: int) -> None:
    """Make steps from `position` on pending again, as never run (restart)."""
    await conn.execute(
        update(workflow_steps)
        .where(S.workflow_id == workflow_id, S.position >= position)
        .values(state=StepState.PENDING, attempts=0, started_at=None, finished_at=None, error=None)
    )


async def step_reschedule_clean(conn: AsyncConnection, workflow_id: int, position: int) -> None:
    """Make a halted step pending again for a retry; its attempts are kept."""
    await conn.execute(
        update(workflow_steps)
        .where(S.workflow_id == workflow_id, S.position == position)
        .values(state=StepState.PENDING, finished_at=None)
    )
