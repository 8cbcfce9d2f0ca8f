"""How a runner's turn with a workflow ends, and what comes next when it does not.

Every end of a turn is the same write: the guarded update of the operation that ends it
(complete, fail, interrupt, honour a pause or stop, release), the step it leaves behind,
and the events that record it — all in the transaction the runner is given. `TurnEnd`
says which; `TurnWriter.end` writes it. The write raises LeaseLost only before it has
written anything, so a group commit can hand that error to its runner alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from wfed.clock import Clock
from wfed.engine.lease import Lease, error_text
from wfed.errors import LeaseLost
from wfed.logging import get_logger
from wfed.states import (
    HONOURED,
    REQUEST_OF,
    EventKind,
    Operation,
    Request,
    StepState,
    event_kind,
    finishes,
    releases_keys,
    sources,
)
from wfed.store import events as event_store
from wfed.store import locks as lock_store
from wfed.store import steps as step_store
from wfed.store import workflows as workflow_store
from wfed.store.database import Database
from wfed.store.events import Event
from wfed.store.rows import WorkflowRow

log = get_logger("wfed.runner")


class Outcome(StrEnum):
    """How a runner's turn with a workflow ended."""

    COMPLETED = "completed"
    ERROR = "error"
    PAUSED = "paused"
    STOPPED = "stopped"
    RELEASED = "released"
    """Handed back as pending: a retry delay, or the owner is shutting down."""
    LOST = "lost"
    """Another owner took the workflow over; nothing was written."""


_OUTCOME_OF: dict[Operation, Outcome] = {
    Operation.COMPLETE: Outcome.COMPLETED,
    Operation.FAIL: Outcome.ERROR,
    Operation.REJECT: Outcome.ERROR,
    Operation.INTERRUPT: Outcome.ERROR,
    Operation.HONOUR_PAUSE: Outcome.PAUSED,
    Operation.HONOUR_STOP: Outcome.STOPPED,
    Operation.RELEASE: Outcome.RELEASED,
    Operation.WAIT_FOR_WINDOW: Outcome.RELEASED,
}


@dataclass(frozen=True)
class RunResult:
    """The end of a runner's turn."""

    outcome: Outcome
    message: str | None = None
    invalid: bool = False
    run_after: datetime | None = None


@dataclass(frozen=True)
class NextStep:
    """The turn goes on: run attempt `attempt` of step `position` with `context`."""

    context: dict[str, Any]
    position: int
    attempt: int


Next = NextStep | RunResult
"""What comes after a step: the next one, or the end of the turn."""


@dataclass(frozen=True)
class StepEnd:
    """What becomes of the step the turn leaves behind."""

    position: int
    state: StepState | None
    """Its final state for this run; None puts it back to pending for a later attempt."""
    error: str | None = None


@dataclass(frozen=True)
class TurnEnd:
    """One way a turn ends: the operation, what it writes, and what it records."""

    operation: Operation
    values: dict[str, Any] = field(default_factory=dict)
    """Workflow columns the operation writes besides its state (context, current_step…)."""
    step: StepEnd | None = None
    position: int | None = None
    """The position the event names."""
    reason: str | None = None
    message: str | None = None
    """What the runner reports (RunResult.message)."""
    detail: dict[str, Any] = field(default_factory=dict)
    event: EventKind | None = None
    """Recorded instead of the operation's own event kind (a retry's `step_retry`)."""
    before: tuple[tuple[EventKind, dict[str, Any]], ...] = ()
    """Events recorded first, at the same position."""
    on_request: bool = False
    """The turn ends on an operator's pause or stop request, whose author and reason the
    event carries."""
    yields_to_request: bool = False
    """Written only while no request waits; a pause or stop request that does is
    honoured instead (a window's closing must not hide an operator's pause)."""


def result_of(end: TurnEnd) -> RunResult:
    """What the runner reports once `end` is written."""
    return RunResult(
        _OUTCOME_OF[end.operation],
        end.message,
        invalid=end.operation is Operation.REJECT,
        run_after=end.values.get("run_after"),
    )


def recorded_as(end: TurnEnd) -> EventKind:
    """The kind of the event that records `end`."""
    kind = end.event or event_kind(end.operation)
    if kind is None:
        raise AssertionError(f"{end.operation} records no event")
    return kind


def _request_of(honour: Operation) -> Request:
    """The request that `honour` carries out."""
    return next(r for r, operation in HONOURED.items() if operation is honour)


def _request_event(honour: Operation) -> str:
    """The event kind of the operator's request that `honour` carries out."""
    request = _request_of(honour)
    asked = next(op for op, r in REQUEST_OF.items() if r is request)
    kind = event_kind(asked)
    if kind is None:
        raise AssertionError(f"{asked} records no event")
    return kind.value


class TurnWriter:
    """Writes the ends of one owner's turns with one workflow."""

    def __init__(self, workflow: WorkflowRow, lease: Lease, *, actor: str, clock: Clock) -> None:
        self.workflow = workflow
        self.lease = lease
        self.actor = actor
        self.clock = clock
        self.step_finished_at: datetime | None = None
        """When the step just run ended, for its `finished_at`: a commit that waits out a
        database outage must not lengthen the step's recorded run time."""

    def finished_at(self, now: datetime) -> datetime:
        """The finish time of the step just run (never after `now`), else `now`."""
        ended = self.step_finished_at
        return now if ended is None else min(ended, now)

    def event(
        self,
        kind: EventKind,
        *,
        position: int | None = None,
        reason: str | None = None,
        **detail: Any,
    ) -> Event:
        return Event(
            workflow_id=self.workflow.id,
            workflow_name=self.workflow.name,
            kind=kind,
            actor=self.actor,
            at=self.clock(),
            position=position,
            reason=reason,
            detail=detail,
        )

    async def end(self, conn: AsyncConnection, end: TurnEnd) -> RunResult:
        """Write `end` in `conn`'s transaction; LeaseLost (before any write) if this owner
        no longer holds the workflow."""
        now = self.clock()
        values: dict[str, Any] = {
            "claimed_by": None,
            "lease_expires_at": None,
            "requested": None,
            **end.values,
        }
        if finishes(end.operation):
            values["finished_at"] = now
        result = result_of(end)
        if not await self.lease.guard(
            conn, end.operation, values, unrequested=end.yields_to_request
        ):
            if end.yields_to_request:
                instead = await self._request_instead(conn, end)
                if instead is not None:
                    return await self.end(conn, instead)
            if await self._landed(conn):
                return result
            raise LeaseLost
        workflow_id = self.workflow.id
        # A workflow whose row named no keys when it was claimed took none: its end
        # spares the group commit a statement.
        if releases_keys(end.operation) and self.workflow.locks is not None:
            await lock_store.locks_release_workflow(conn, workflow_id)
        if end.step is not None and end.step.state is None:
            await step_store.step_reschedule(
                conn, workflow_id, end.step.position, end.step.error or ""
            )
        elif end.step is not None and end.step.state is not None:
            await step_store.step_finish(
                conn,
                workflow_id,
                end.step.position,
                end.step.state,
                self.finished_at(now),
                end.step.error,
            )
        reason, detail = end.reason, dict(end.detail)
        if end.on_request:
            # Carry the operator's name and reason over, so `show` says who halted it
            # and why, rather than naming the daemon that honoured the request.
            asked = await event_store.event_latest(
                conn, workflow_id, [_request_event(end.operation)]
            )
            if asked is not None:
                reason = asked.reason if asked.reason else reason
                detail["requested_by"] = asked.actor
            else:
                # `requested` set with SQL: nobody is on record, and the event must not
                # read as if the daemon chose to halt the workflow.
                reason = (
                    f"{_request_of(end.operation).value} requested in the database "
                    "(workflows.requested set without wfectl: no one is on record)"
                )
        await event_store.events_insert(
            conn,
            *(self.event(before, position=end.position, **more) for before, more in end.before),
            self.event(recorded_as(end), position=end.position, reason=reason, **detail),
        )
        return result

    async def _request_instead(self, conn: AsyncConnection, end: TurnEnd) -> TurnEnd | None:
        """The end that honours the request waiting on this owner's workflow, in place of
        `end` (which yields to it); None when no request waits or the row is not ours."""
        current = await workflow_store.workflow_get_by_id(conn, self.lease.workflow_id)
        if (
            current is None
            or current.fence != self.lease.fence
            or current.state not in sources(Operation.ADVANCE)
            or current.requested is None
        ):
            return None
        values = {key: value for key, value in end.values.items() if key != "window_paused"}
        return TurnEnd(
            HONOURED[current.requested],
            values=values,
            step=end.step,
            position=end.position,
            on_request=True,
        )

    async def _landed(self, conn: AsyncConnection) -> bool:
        """Whether an end of this turn was committed already, its reply lost: the row
        still has this owner's fence but is no longer running. Only this owner can take
        a workflow with its fence out of `running`; any other owner bumps the fence."""
        current = await workflow_store.workflow_get_by_id(conn, self.lease.workflow_id)
        return (
            current is not None
            and current.fence == self.lease.fence
            and current.state not in sources(Operation.ADVANCE)
        )

    async def release_interrupted(self, db: Database) -> None:
        """Hand the workflow back as pending in a transaction of its own (its step was
        cut off by a shutdown past its grace): the step stays `running`, which the next
        owner treats as interrupted. Nothing is written once the lease is lost. Best
        effort: the lease expiring does the same, later."""
        if self.lease.lost:
            return
        values = {"claimed_by": None, "lease_expires_at": None, "requested": None}
        try:
            async with db.transaction() as conn:
                if await self.lease.guard(conn, Operation.RELEASE, values):
                    released = self.event(EventKind.RELEASED, interrupted=True)
                    await event_store.events_insert(conn, released)
        except Exception as exc:
            log.warning("release_failed", workflow=self.workflow.name, error=error_text(exc))
