"""Queries on the `workflow_steps` table.

Step rows are only written in the same transaction as a guarded write to their workflow's
row, which holds the row lock (and checks the fencing token); that is what makes them safe
without a token of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Update, bindparam, case, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import BindParameter

from wfed.states import StepState
from wfed.store.bounded import bounded
from wfed.store.rows import StepRow
from wfed.store.schema import workflow_steps

S = workflow_steps.c


# Built once (see workflows._guarded_update). Executed with a list of rows, it becomes the
# driver's executemany (asyncmy rewrites it into one multi-row INSERT); a multi-row
# `insert().values([...])` would be compiled anew on every execution (it has no cache key).
_INSERT = workflow_steps.insert()


@dataclass(frozen=True)
class NewSteps:
    """The step rows of one workflow to create: (step name, label, args) per position, all
    pending — except step `running`, if given, which starts at once (first attempt at
    the insert's `now`), saving the daemon an UPDATE per workflow, and those before
    `skipped_before`, skipped (a workflow set to start at a later step)."""

    workflow_id: int
    rows: Sequence[tuple[str, str | None, dict[str, Any]]]
    running: int | None = None
    skipped_before: int = 0

    def state(self, position: int) -> StepState:
        if position == self.running:
            return StepState.RUNNING
        return StepState.SKIPPED if position < self.skipped_before else StepState.PENDING


async def steps_insert(
    conn: AsyncConnection,
    workflow_id: int,
    rows: Sequence[tuple[str, str | None, dict[str, Any]]],
    *,
    running: int | None = None,
    now: datetime | None = None,
    skipped_before: int = 0,
) -> None:
    """Create the step rows of a workflow (see `NewSteps`)."""
    await steps_insert_many(conn, [NewSteps(workflow_id, rows, running, skipped_before)], now)


async def steps_insert_many(
    conn: AsyncConnection, workflows: Sequence[NewSteps], now: datetime | None = None
) -> None:
    """Create the step rows of many workflows in one INSERT."""
    await conn.execute(
        _INSERT,
        [
            {
                "workflow_id": new.workflow_id,
                "position": position,
                "step": name,
                "label": label,
                "args": args,
                "state": new.state(position).value,
                "attempts": 1 if position == new.running else 0,
                "started_at": now if position == new.running else None,
            }
            for new in workflows
            for position, (name, label, args) in enumerate(new.rows)
        ],
    )


@cache
def _steps_of_many(size: int) -> Any:
    """The state and attempts of `size` workflows' step rows, built once per size."""
    ids = [bindparam(f"b_id_{i}", type_=S.workflow_id.type) for i in range(size)]
    return select(S.workflow_id, S.position, S.state, S.attempts).where(S.workflow_id.in_(ids))


async def steps_progress_many(
    conn: AsyncConnection, workflow_ids: Sequence[int]
) -> dict[int, list[tuple[int, str, int]]]:
    """(position, state, attempts) of each step row of the workflows, by workflow id (a
    workflow without step rows has no entry)."""
    params = {f"b_id_{i}": workflow_id for i, workflow_id in enumerate(workflow_ids)}
    found: dict[int, list[tuple[int, str, int]]] = {}
    for row in await conn.execute(_steps_of_many(len(workflow_ids)), params):
        found.setdefault(row.workflow_id, []).append((row.position, row.state, row.attempts))
    return found


@cache
def _start_many(size: int) -> Update:
    """Start one step in each of `size` workflows in one statement, built once per size:
    `b_position_i` is the step of the workflow `b_id_i`."""
    ids, position, _ = _moved_steps(size)
    return (
        update(workflow_steps)
        .where(S.workflow_id.in_(ids), S.position == position)
        .values(
            state=StepState.RUNNING.value,
            attempts=S.attempts + 1,
            started_at=bindparam("b_now", type_=S.started_at.type),
            finished_at=None,
            error=None,
        )
    )


async def steps_start_many(
    conn: AsyncConnection, steps: Sequence[tuple[int, int]], now: datetime
) -> None:
    """`step_start` for many workflows: (workflow id, position) each."""
    params: dict[str, Any] = {"b_now": now}
    for i, (workflow_id, position) in enumerate(steps):
        params[f"b_id_{i}"] = workflow_id
        params[f"b_position_{i}"] = position
    await conn.execute(_start_many(len(steps)), params)


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
            "b_error": bounded(error),
        },
    )


def _moved_steps(size: int) -> tuple[list[BindParameter[int]], Any, Any]:
    """The parameters of `size` workflows' step moves: their ids, and, per row (a CASE on
    the workflow id), the position each completed and when it finished."""
    # Typed parameters: PostgreSQL cannot infer a type for one in a CASE.
    ids: list[BindParameter[int]] = [
        bindparam(f"b_id_{i}", type_=S.workflow_id.type) for i in range(size)
    ]
    done = case(
        *[(ids[i], bindparam(f"b_position_{i}", type_=S.position.type)) for i in range(size)],
        value=S.workflow_id,
    )
    finished = case(
        *[(ids[i], bindparam(f"b_finished_{i}", type_=S.finished_at.type)) for i in range(size)],
        value=S.workflow_id,
    )
    return ids, done, finished


def _step_move_params(moves: Sequence[StepMove], now: datetime) -> dict[str, Any]:
    """`_moved_steps`' parameters for `moves`. A step's finish time is its own, not the
    commit's (never after `now`): a commit that waited out a database outage does not
    lengthen it."""
    params: dict[str, Any] = {}
    for i, move in enumerate(moves):
        params[f"b_id_{i}"] = move.workflow_id
        params[f"b_position_{i}"] = move.position
        params[f"b_finished_{i}"] = min(move.finished_at, now)
    return params


@cache
def _finish_and_start_many(size: int) -> Update:
    """Complete a step and start the next one, for `size` workflows in one statement,
    built once per size (see workflows._advance_many). `done` is, per row, the position
    its workflow just completed; the id list lets every database find the rows through
    the (workflow_id, position) index."""
    ids, done, finished = _moved_steps(size)
    now: BindParameter[datetime] = bindparam("b_now", type_=S.started_at.type)
    return (
        update(workflow_steps)
        .where(S.workflow_id.in_(ids), S.position.in_([done, done + 1]))
        .values(
            state=case(
                (S.position == done, StepState.COMPLETED.value), else_=StepState.RUNNING.value
            ),
            attempts=case((S.position == done, S.attempts), else_=S.attempts + 1),
            started_at=case((S.position == done, S.started_at), else_=now),
            finished_at=case((S.position == done, finished), else_=None),
            error=None,
        )
    )


@dataclass(frozen=True)
class StepMove:
    """Step `position` of a workflow completed at `finished_at` (in an advance, the next
    one starts)."""

    workflow_id: int
    position: int
    finished_at: datetime


async def step_finish_and_start_next(conn: AsyncConnection, move: StepMove, now: datetime) -> None:
    """Complete step `move.position` and start the next one (at `now`) in one statement."""
    await steps_finish_and_start_next_many(conn, [move], now)


async def steps_finish_and_start_next_many(
    conn: AsyncConnection, moves: Sequence[StepMove], now: datetime
) -> None:
    """`step_finish_and_start_next` for many workflows, each step finishing at its own
    time (see `_step_move_params`)."""
    params = {"b_now": now, **_step_move_params(moves, now)}
    await conn.execute(_finish_and_start_many(len(moves)), params)


@cache
def _finish_many(size: int) -> Update:
    """Complete one step of each of `size` workflows (its workflow's last), in one
    statement built once per size (see workflows._advance_many)."""
    ids, done, finished = _moved_steps(size)
    return (
        update(workflow_steps)
        .where(S.workflow_id.in_(ids), S.position == done)
        .values(state=StepState.COMPLETED.value, finished_at=finished, error=None)
    )


async def steps_complete_many(
    conn: AsyncConnection, moves: Sequence[StepMove], now: datetime
) -> None:
    """Complete step `position` of each workflow, at its own finish time (see
    `_step_move_params`)."""
    await conn.execute(_finish_many(len(moves)), _step_move_params(moves, now))


async def step_reschedule(
    conn: AsyncConnection, workflow_id: int, position: int, error: str
) -> None:
    """Put a failed step back to pending for its next attempt, keeping the error."""
    await conn.execute(
        update(workflow_steps)
        .where(S.workflow_id == workflow_id, S.position == position)
        .values(state=StepState.PENDING, error=bounded(error))
    )


async def steps_reset_from(conn: AsyncConnection, workflow_id: int, position: int) -> None:
    """Make steps from `position` on pending again, as never run (restart)."""
    await conn.execute(
        update(workflow_steps)
        .where(S.workflow_id == workflow_id, S.position >= position)
        .values(state=StepState.PENDING, attempts=0, started_at=None, finished_at=None, error=None)
    )


async def step_stop_cut_off(conn: AsyncConnection, workflow_id: int, position: int) -> None:
    """A workflow stopped while not running: its step `position`, if its row still says
    `running` (cut off with an owner that died or shut down past its grace), is stopped
    with it. Its `finished_at` stays empty: when the run ended is not known here."""
    await conn.execute(
        update(workflow_steps)
        .where(
            S.workflow_id == workflow_id,
            S.position == position,
            S.state == StepState.RUNNING.value,
        )
        .values(state=StepState.STOPPED)
    )


async def steps_skip_before(conn: AsyncConnection, workflow_id: int, position: int) -> None:
    """Mark the steps before `position` that neither completed nor were skipped as
    skipped: a restart from `position` will not run them (its turn may complete)."""
    await conn.execute(
        update(workflow_steps)
        .where(
            S.workflow_id == workflow_id,
            S.position < position,
            S.state.not_in([StepState.COMPLETED.value, StepState.SKIPPED.value]),
        )
        .values(state=StepState.SKIPPED)
    )


async def step_reschedule_clean(conn: AsyncConnection, workflow_id: int, position: int) -> None:
    """Make a halted step pending again for a retry; its attempts are kept."""
    await conn.execute(
        update(workflow_steps)
        .where(S.workflow_id == workflow_id, S.position == position)
        .values(state=StepState.PENDING, finished_at=None)
    )
