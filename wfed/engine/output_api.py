"""The Engine's reads of live step output: the lines a step attempt printed, a snapshot
for polling, and what a follower needs to know (part of `wfed.Engine`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wfed.engine import control
from wfed.store import steps as step_store
from wfed.store.database import Database

# The output's views and snapshots load when output is read (`logs`, `watch`): no other
# wfectl command needs them.
if TYPE_CHECKING:
    from wfed.engine import output_view
    from wfed.engine import snapshot as snapshots


class OutputReads:
    """`Engine.output`, `snapshot`, `output_attempt` and `step_running`."""

    db: Database

    async def output(
        self,
        name: str,
        *,
        position: int | None = None,
        attempt: int | None = None,
        after: int | None = None,
    ) -> list[output_view.OutputLine]:
        """The lines a step attempt printed, in order (see `wfed.engine.output_view`).

        By default the running step, else the step the workflow stopped at if it printed,
        else the last step before it that printed; and that step's current attempt if it
        runs, else its last attempt that printed. `after` is a cursor: only the lines of
        chunks after that `seq` (the `seq` of the last line read). WorkflowNotFound;
        StepNotFound for a position the workflow has no step at."""
        from wfed.engine import output_view  # noqa: PLC0415

        async with self.db.transaction() as conn:
            row = await control.require(conn, name)
            steps = await step_store.steps_get(conn, row.id)
            return await output_view.read_output(
                conn, row, steps, position=position, attempt=attempt, after=after
            )

    async def snapshot(
        self, name: str, cursor: snapshots.OutputCursor | None = None
    ) -> snapshots.Snapshot:
        """The workflow, its steps and the new output lines `cursor` asks for (by default
        those of the running step), from one indexed SELECT whatever the number of steps:
        what `wfectl watch` and `logs --follow` poll (see `wfed.engine.snapshot`). The
        context is not read, nor why a workflow halted (`get` tells). WorkflowNotFound."""
        from wfed.engine import snapshot as snapshots  # noqa: PLC0415

        return await snapshots.snapshot(
            self.db, name, cursor or snapshots.OutputCursor.of_running()
        )

    async def output_attempt(
        self, name: str, *, position: int | None = None, attempt: int | None = None
    ) -> tuple[int, int] | None:
        """(position, attempt) whose lines `output` reads with these arguments, even before
        there are any (a follower starts here); None while the workflow has no step rows
        (enqueued with SQL, not claimed yet). WorkflowNotFound; StepNotFound."""
        from wfed.engine import output_view  # noqa: PLC0415

        async with self.db.transaction() as conn:
            row = await control.require(conn, name)
            steps = await step_store.steps_get(conn, row.id)
            return await output_view.choose(conn, row, steps, position=position, attempt=attempt)

    async def step_running(self, name: str, position: int, attempt: int | None = None) -> bool:
        """Whether step `position` of the workflow is running (in its attempt `attempt`,
        if given): a follower of its output reads once more after this turns False, then
        stops. WorkflowNotFound; StepNotFound."""
        from wfed.engine import output_view  # noqa: PLC0415

        async with self.db.transaction() as conn:
            row = await control.require(conn, name)
            steps = await step_store.steps_get(conn, row.id)
        return output_view.step_running(row, steps, position, attempt)
