"""Polling a workflow: `Engine.snapshot`, what `wfectl watch` and `wfectl logs --follow`
read once a second.

A snapshot is the workflow's row, its steps and the new lines of one step attempt's
output, from one indexed SELECT whatever the number of steps (`wfed.store.snapshot`). An
`OutputCursor` says which lines: those of a given attempt of a given step (`logs`), or
those of whichever step runs (`watch`); `Snapshot.cursor` is the cursor of the next poll.

    cursor = OutputCursor.of_running()
    while True:
        snapshot = await engine.snapshot(name, cursor)
        show(snapshot.workflow, snapshot.output)
        cursor = snapshot.cursor
        … wait a second …
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from wfed.engine.output_view import OutputLine, lines_of
from wfed.engine.views import Workflow
from wfed.errors import WorkflowNotFound
from wfed.states import StepState, WorkflowState
from wfed.store import snapshot as snapshot_store
from wfed.store.database import Database
from wfed.store.rows import StepRow

__all__ = ["OutputCursor", "Snapshot", "StepRow", "snapshot"]


@dataclass(frozen=True)
class OutputCursor:
    """Which output lines a snapshot brings: those of step `position`'s attempt `attempt`
    after chunk `after`; with `running`, then those of whichever step is running (its
    current attempt) if that is another attempt, from its first."""

    position: int = -1
    attempt: int = -1
    after: int = 0
    running: bool = False

    @classmethod
    def of_running(cls) -> OutputCursor:
        """The running step's lines, from its first."""
        return cls(running=True)

    @classmethod
    def of_attempt(cls, position: int, attempt: int, after: int = 0) -> OutputCursor:
        """The lines of one attempt of one step, after chunk `after`."""
        return cls(position, attempt, after)


@dataclass(frozen=True)
class Snapshot:
    """A workflow as one poll saw it."""

    workflow: Workflow
    """Its row and steps; the context is not read (it is {}), nor why it halted."""
    output: list[OutputLine]
    """The new lines of the followed attempt, then (with a `running` cursor) those of
    the running attempt if that is another one; each in order."""
    cursor: OutputCursor
    """Where the next poll continues."""

    @property
    def running_step(self) -> StepRow | None:
        """The step that is running, if one is."""
        if self.workflow.state is not WorkflowState.RUNNING:
            return None
        return next((s for s in self.workflow.steps if s.state is StepState.RUNNING), None)

    def step_running(self, position: int, attempt: int) -> bool:
        """Whether step `position` of the running workflow runs its attempt `attempt`."""
        step = self.running_step
        return step is not None and step.position == position and step.attempts == attempt


async def snapshot(db: Database, name: str, cursor: OutputCursor) -> Snapshot:
    """The workflow named `name` with the output lines `cursor` asks for (one SELECT);
    WorkflowNotFound."""
    async with db.autocommit() as conn:
        found = await snapshot_store.workflow_snapshot(
            conn,
            name,
            position=cursor.position,
            attempt=cursor.attempt,
            after=cursor.after,
            running=cursor.running,
        )
    if found is None:
        raise WorkflowNotFound(f"no workflow named {name!r}")
    lines = lines_of(found.output)
    following = cursor
    if found.output:
        last = found.output[-1]
        following = replace(cursor, position=last.position, attempt=last.attempt, after=last.seq)
    elif cursor.running:
        step = next((s for s in found.steps if s.state is StepState.RUNNING), None)
        if step is not None and (step.position, step.attempts) != (
            cursor.position,
            cursor.attempt,
        ):
            following = replace(cursor, position=step.position, attempt=step.attempts, after=0)
    return Snapshot(Workflow(row=found.workflow, steps=found.steps), lines, following)
