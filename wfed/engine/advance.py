"""The commonest write of a run: step N completed and step N+1 started, in one
transaction, with the context step N left.

Its guard holds when the runner still owns the workflow, it is still at step N, and no
pause or stop request waits. Then the write is plain data, which the daemon's group
commit batches with other workflows' advances (`batchable`). When the guard fails, the
body (`commit`) finds out why: a waiting request ends the turn by honouring it; anything
else means the lease is lost.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncConnection

from wfed.engine import ends
from wfed.engine.group_commit import BatchableAdvance
from wfed.engine.turn import Next, NextStep, TurnEnd, TurnWriter, recorded_as, result_of
from wfed.errors import LeaseLost
from wfed.states import HONOURED, Operation, sources
from wfed.steps.definition import StepPlan
from wfed.store import steps as step_store
from wfed.store import workflows as workflow_store
from wfed.store.steps import StepMove
from wfed.store.workflows import Advance


class StepAdvance:
    """One runner's move from step `plan` (just completed) to `following`."""

    def __init__(self, writer: TurnWriter, plan: StepPlan, following: NextStep) -> None:
        self.writer = writer
        self.plan = plan
        self.following = following
        self.ended: TurnEnd | None = None
        """How the turn ended instead, once `commit` has ended it."""

    def batchable(self, applies: Callable[[], bool]) -> BatchableAdvance:
        """The advance as data for a group commit (built anew for each attempt)."""
        lease = self.writer.lease
        now = self.writer.clock()
        return BatchableAdvance(
            Advance(lease.workflow_id, lease.fence, self.plan.position, self.following.context),
            now,
            self.following,
            finished_at=self.writer.finished_at(now),
            lease_expires_at=lease.renewal_due(),
            applies=applies,
        )

    def batchable_completion(self, applies: Callable[[], bool]) -> BatchableAdvance:
        """The workflow's completion after its last step, as data for a group commit
        (built anew for each attempt): what `commit` writes for `ends.after_step(plan,
        COMPLETE, …)`."""
        lease = self.writer.lease
        now = self.writer.clock()
        end = ends.after_step(self.plan, Operation.COMPLETE, self.following.context)
        self.ended = end  # for the runner's log line, whichever way it is written
        return BatchableAdvance(
            Advance(lease.workflow_id, lease.fence, self.plan.position, self.following.context),
            now,
            result_of(end),
            finished_at=self.writer.finished_at(now),
            applies=applies,
            completes=self.writer.event(recorded_as(end), position=end.position),
            # As `TurnWriter.end`: a row that named no keys at its claim took none.
            releases_keys=self.writer.workflow.locks is not None,
        )

    async def commit(self, conn: AsyncConnection, end: TurnEnd | None) -> Next:
        """Write the advance — or `end`, when the turn ends here — in `conn`'s
        transaction; what comes next."""
        lease = self.writer.lease
        if end is None:
            moved = await workflow_store.workflow_advance(
                conn,
                lease.workflow_id,
                fence=lease.fence,
                context=self.following.context,
                current_step=self.following.position,
                now=self.writer.clock(),
                lease_expires_at=lease.renewal_due(),
            )
            if moved:
                now = self.writer.clock()
                await step_store.step_finish_and_start_next(
                    conn,
                    StepMove(lease.workflow_id, self.plan.position, self.writer.finished_at(now)),
                    now,
                )
                return self.following
            end = await self._why_not(conn)
            if end is None:
                return self.following
        self.ended = end
        return await self.writer.end(conn, end)

    async def _why_not(self, conn: AsyncConnection) -> TurnEnd | None:
        """The guard failed: this very advance landed already (None: carry on), a
        request waits (honour it), or the lease is lost.

        An advance lands already when its commit reached the database but the reply
        did not (a connection lost at COMMIT): the retry then finds the workflow with
        this owner's fence at the next step, which no one but this owner can have
        written. Only another fence means another owner."""
        lease = self.writer.lease
        current = await workflow_store.workflow_get_by_id(conn, lease.workflow_id)
        if (
            current is None
            or current.fence != lease.fence
            or current.state not in sources(Operation.ADVANCE)
        ):
            raise LeaseLost
        if current.current_step == self.following.position:
            return None
        if current.requested is None or current.current_step != self.plan.position:
            raise LeaseLost
        operation = HONOURED[current.requested]
        return ends.after_step(self.plan, operation, self.following.context)
