"""Reading one workflow as operators see it (`Engine.get`): its row, its steps, why it
halted, and the events that tell how long a cut-off step ran; and who owns a running one
(`Engine.owner`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from wfed.engine import control
from wfed.engine import health as fleet_health
from wfed.engine.locks import workflow_keys
from wfed.engine.views import DaemonStatus, Workflow
from wfed.states import EventKind, Request, StepState, WorkflowState
from wfed.store import daemons as daemon_store
from wfed.store import events as event_store
from wfed.store import steps as step_store
from wfed.store.database import Database
from wfed.store.locks import one_slot
from wfed.store.rows import EventRow, StepRow, WorkflowRow

# Which events explain a halt, per halted state (for `show`).
_HALT_EVENTS = {
    WorkflowState.PAUSED: [EventKind.PAUSED.value, EventKind.PAUSE_REQUESTED.value],
    WorkflowState.STOPPED: [EventKind.STOPPED.value, EventKind.STOP_REQUESTED.value],
}
# The event of the request waiting on a running workflow.
_REQUEST_EVENTS = {
    Request.PAUSE: [EventKind.PAUSE_REQUESTED.value],
    Request.STOP: [EventKind.STOP_REQUESTED.value],
}


async def read_workflow(
    conn: AsyncConnection, name: str, limit_of: Callable[[str], int] = one_slot
) -> Workflow:
    """The workflow named `name` with its steps, its concurrency keys (`limit_of` gives a
    key's slots) and, if halted, why (WorkflowNotFound)."""
    row = await control.require(conn, name)
    steps = await step_store.steps_get(conn, row.id)
    reason = await halt_reason(conn, row)
    released, interrupted = await _cut_offs(conn, row, steps)
    keys = await workflow_keys(conn, row, limit_of)
    return Workflow(
        row=row,
        steps=steps,
        halt_reason=reason,
        released_at=released,
        interrupted=interrupted,
        keys=keys,
    )


async def halt_reason(conn: AsyncConnection, row: WorkflowRow) -> str | None:
    """Why a halted workflow halted (or what waits on a running one), and who asked."""
    if row.state is WorkflowState.ERROR:
        return row.last_error
    kinds = _HALT_EVENTS.get(row.state)
    if row.state is WorkflowState.RUNNING and row.requested is not None:
        kinds = _REQUEST_EVENTS[row.requested]
    if kinds is None:
        return None
    event = await event_store.event_latest(conn, row.id, kinds)
    if event is None:
        return None
    actor = event.detail.get("requested_by", event.actor)
    by = f"{event.kind.replace('_', ' ')} by {actor}"
    return f"{by}: {event.reason}" if event.reason else by


async def _cut_offs(
    conn: AsyncConnection, row: WorkflowRow, steps: list[StepRow]
) -> tuple[datetime | None, EventRow | None]:
    """The events that say how long a cut-off step ran, read only when a step may have
    been cut off: one in error (found interrupted?), or one whose row says `running`
    while its workflow does not run (left by a forced shutdown)."""
    failed = any(step.state is StepState.ERROR for step in steps)
    left = row.state is not WorkflowState.RUNNING and any(
        step.state is StepState.RUNNING for step in steps
    )
    interrupted = None
    if failed:
        interrupted = await event_store.event_latest(
            conn, row.id, [EventKind.STEP_INTERRUPTED.value]
        )
    released_at = None
    if left or interrupted is not None:
        released = await event_store.event_latest(conn, row.id, [EventKind.RELEASED.value])
        if released is not None and released.detail.get("interrupted"):
            released_at = released.at
    return released_at, interrupted


async def owner(db: Database, workflow: Workflow, now: datetime) -> DaemonStatus | None:
    """The registered daemon that holds a running workflow, as seen at `now` (its last
    heartbeat, alive or not); None if the workflow is not claimed or its owner is not a
    registered daemon (an `Engine.run`, or a daemon whose row was pruned)."""
    claimed_by = workflow.row.claimed_by
    if claimed_by is None:
        return None
    async with db.transaction() as conn:
        rows = await daemon_store.daemons_list(conn)
    fleet = fleet_health.fleet_status([r for r in rows if r.id == claimed_by], {}, now)
    return fleet.daemons[0] if fleet.daemons else None
