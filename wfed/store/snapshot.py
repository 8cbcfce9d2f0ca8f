"""A workflow, its steps and the new output of one step attempt, in one SELECT.

What `wfectl watch` and `wfectl logs --follow` poll: one statement per poll whatever the
number of steps. `workflows` is found by its unique name, joined to its `workflow_steps`
by their unique (workflow_id, position), and those to the chunks of
`workflow_step_output` of one attempt after a cursor, by their unique (workflow_id,
position, attempt, seq): every part of the join is an index lookup.

The context is not read: nothing that polls shows it, and it would repeat on every row.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Select, and_, bindparam, case, not_, null, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from wfed.states import StepState
from wfed.store.output import OutputChunk
from wfed.store.rows import StepRow, WorkflowRow
from wfed.store.schema import workflow_step_output, workflow_steps, workflows

O = workflow_step_output.c  # noqa: E741 - the table's columns, as W and S elsewhere
S = workflow_steps.c
W = workflows.c

_STEP_COLUMNS = (
    "position",
    "step",
    "label",
    "args",
    "state",
    "attempts",
    "started_at",
    "finished_at",
    "error",
)
_OUTPUT_COLUMNS = ("attempt", "seq", "stream", "text", "at")


@dataclass(frozen=True)
class Snapshot:
    """One workflow as one SELECT saw it."""

    workflow: WorkflowRow
    """Its row; `context` is not read (always {})."""
    steps: list[StepRow]
    output: list[OutputChunk]
    """The chunks of the followed step attempt after the cursor, in order."""


@cache
def _statement(running: bool) -> Select[Any]:
    """The snapshot's statement, built once per kind of cursor.

    Always the chunks of step `b_position`'s attempt `b_attempt` after `b_after`. With
    `running`, also those of whichever step is running, its current attempt, from its
    first (when it is another attempt): a watcher gets the last lines of the attempt it
    followed, which its end committed, with the first of the next one."""
    position = bindparam("b_position", type_=S.position.type)
    attempt = bindparam("b_attempt", type_=O.attempt.type)
    after = bindparam("b_after", type_=O.seq.type)
    followed = and_(S.position == position, O.attempt == attempt)
    chunks = and_(followed, O.seq > after)
    if running:
        chunks = or_(
            chunks,
            and_(
                S.state == StepState.RUNNING.value,
                O.attempt == S.attempts,
                not_(followed),
            ),
        )
    columns = [column for column in workflows.c if column.name != "context"]
    return (
        select(
            *columns,
            null().label("context"),
            *[S[name].label(f"s_{name}") for name in _STEP_COLUMNS],
            *[O[name].label(f"o_{name}") for name in _OUTPUT_COLUMNS],
        )
        .select_from(workflows)
        .outerjoin(workflow_steps, S.workflow_id == W.id)
        .outerjoin(
            workflow_step_output,
            and_(O.workflow_id == W.id, O.position == S.position, chunks),
        )
        .where(W.name == bindparam("b_name", type_=W.name.type))
        # The followed attempt's chunks first, then the running one's.
        .order_by(case((followed, 0), else_=1), S.position, O.attempt, O.seq)
    )


async def workflow_snapshot(
    conn: AsyncConnection,
    name: str,
    *,
    position: int,
    attempt: int,
    after: int,
    running: bool,
) -> Snapshot | None:
    """The workflow named `name`, its steps, and chunks of output (see `_statement`);
    None if there is no such workflow."""
    params = {"b_name": name, "b_position": position, "b_attempt": attempt, "b_after": after}
    rows = (await conn.execute(_statement(running), params)).mappings().all()
    if not rows:
        return None
    steps: dict[int, StepRow] = {}
    output: list[OutputChunk] = []
    for row in rows:
        if row["s_position"] is None:  # no step rows yet (enqueued with SQL, not claimed)
            continue
        if row["s_position"] not in steps:
            steps[row["s_position"]] = StepRow(
                position=row["s_position"],
                step=row["s_step"],
                label=row["s_label"],
                args=row["s_args"] or {},
                state=StepState(row["s_state"]),
                attempts=row["s_attempts"],
                started_at=row["s_started_at"],
                finished_at=row["s_finished_at"],
                error=row["s_error"],
            )
        if row["o_seq"] is not None:
            output.append(
                OutputChunk(
                    position=row["s_position"],
                    attempt=row["o_attempt"],
                    seq=row["o_seq"],
                    stream=row["o_stream"],
                    text=row["o_text"],
                    at=row["o_at"],
                )
            )
    return Snapshot(WorkflowRow.from_mapping(rows[0]), [steps[p] for p in sorted(steps)], output)
