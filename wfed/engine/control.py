"""Operator control: pause, stop, resume, retry, skip, restart, delete and context edits.

Each is one transaction that locks the workflow's row, asks `wfed.states` whether the
operation applies in the row's state (or becomes a request for the owner of a running
workflow), writes it through the store's guarded update for that operation, and records
its event with the operator and reason. A bulk command also passes the workflow as its
filter selected it (`Expected`): under the same lock, one that changed meanwhile is left
alone (ChangedMeanwhile) rather than forced.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from wfed.clock import Clock
from wfed.errors import DatabaseUnavailable, InvalidTransition, WorkflowNotFound
from wfed.logging import get_logger
from wfed.states import (
    Decision,
    EventKind,
    Operation,
    Request,
    StepState,
    WorkflowState,
    decide,
    event_kind,
    finishes,
    releases_keys,
)
from wfed.store import events as event_store
from wfed.store import locks as lock_store
from wfed.store import steps as step_store
from wfed.store import workflows as workflow_store
from wfed.store.database import DATABASE_ERRORS, Database
from wfed.store.events import Event
from wfed.store.rows import WorkflowRow
from wfed.unreadable_json import UnreadableJson
from wfed.windows import WindowSpecError, parse_windows

log = get_logger("wfed.engine")


@dataclass(frozen=True)
class Operator:
    """Who acts on the workflows of a database, and on which clock."""

    db: Database
    actor: str
    clock: Clock


class ChangedMeanwhile(InvalidTransition):
    """The workflow is no longer as it was when it was selected (a bulk command's filter
    matched it): it is left alone."""


@dataclass(frozen=True)
class Expected:
    """A workflow as a filter selected it: an operation applies to it only while it is
    still that row (not deleted and created again) in that state."""

    id: int
    state: WorkflowState

    def check(self, row: WorkflowRow) -> None:
        """ChangedMeanwhile unless `row` is still as selected."""
        if row.id != self.id:
            raise ChangedMeanwhile(
                f"workflow {row.name!r} was deleted and created again since it was selected"
            )
        if row.state is not self.state:
            raise ChangedMeanwhile(
                f"workflow {row.name!r} changed meanwhile: it is {row.state.value} now, "
                f"was {self.state.value} when selected"
            )


async def require(conn: AsyncConnection, name: str, *, for_update: bool = False) -> WorkflowRow:
    """The workflow named `name`, or WorkflowNotFound."""
    row = await workflow_store.workflow_get(conn, name, for_update=for_update)
    if row is None:
        raise WorkflowNotFound(f"no workflow named {name!r}")
    return row


@contextlib.asynccontextmanager
async def written(operator: Operator, name: str) -> AsyncIterator[AsyncConnection]:
    """The transaction of an operator's write about the workflow `name`, which records an
    event. When the connection breaks as the COMMIT goes out, its reply lost, the write
    may have landed: it did if the event is there (this operator's, recorded since the
    write began), and then the write succeeded — saying it failed would have a retry
    refused ("already exists", "it is paused") for what it did itself."""
    since = operator.clock()
    try:
        async with operator.db.transaction() as conn:
            yield conn
    except DatabaseUnavailable:
        if not await _landed(operator, name, since):
            raise
        log.info("write_landed_despite_lost_reply", workflow=name, actor=operator.actor)


async def _landed(operator: Operator, name: str, since: datetime) -> bool:
    try:
        async with operator.db.transaction() as conn:
            return await event_store.event_recorded_since(conn, name, operator.actor, since)
    except (*DATABASE_ERRORS, DatabaseUnavailable):
        return False  # still unreachable: the failure stands as it was


@contextlib.asynccontextmanager
async def _operate(
    operator: Operator, name: str, operation: Operation, expected: Expected | None = None
) -> AsyncIterator[tuple[AsyncConnection, WorkflowRow, Decision]]:
    async with written(operator, name) as conn:
        row = await require(conn, name, for_update=True)
        if expected is not None:
            expected.check(row)
        # Raises InvalidTransition, naming the state and what would work.
        yield conn, row, decide(operation, row.state, name)


async def _apply(
    operator: Operator,
    conn: AsyncConnection,
    row: WorkflowRow,
    decision: Decision,
    values: dict[str, Any],
    *,
    reason: str | None,
    position: int | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Apply a decided operation, guarded in SQL by its source states, and record it."""
    operation = decision.operation
    now = operator.clock()
    values = {"updated_at": now, **values}
    if decision.request is not None:
        values["requested"] = decision.request.value
    if decision.target is not None or operation is Operation.KEEP_PAUSED:
        # An operator's move takes a workflow out of its windows' hands: the next window
        # opening resumes only what a window's closing paused.
        values.setdefault("window_paused", None)
    if finishes(operation):
        values["finished_at"] = now
    matched = await workflow_store.workflow_update(conn, row.id, operation, values=values)
    if not matched:
        current = await workflow_store.workflow_get_by_id(conn, row.id)
        decide(operation, current.state if current else row.state, row.name)
        raise InvalidTransition(f"workflow {row.name!r} changed state meanwhile; try again")
    if releases_keys(operation):
        await lock_store.locks_release_workflow(conn, row.id)
    await _record(operator, conn, row, operation, reason, position, detail)


async def _record(
    operator: Operator,
    conn: AsyncConnection,
    row: WorkflowRow,
    operation: Operation,
    reason: str | None,
    position: int | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    kind = event_kind(operation)
    if kind is None:
        raise AssertionError(f"operation {operation} records no event")
    event = Event(
        row.id, row.name, kind, operator.actor, operator.clock(), position, reason, detail or {}
    )
    await event_store.events_insert(conn, event)
    log.info(f"workflow_{kind.value}", workflow=row.name, actor=operator.actor, reason=reason)


async def pause(
    operator: Operator, name: str, reason: str | None, expected: Expected | None = None
) -> None:
    """Pause: at once if pending, after the current step if running (a request)."""
    await _halt(operator, name, Operation.PAUSE, reason, expected)


async def stop(
    operator: Operator, name: str, reason: str | None, expected: Expected | None = None
) -> None:
    """Stop for good: at once if not running, else the owner cancels the step."""
    await _halt(operator, name, Operation.STOP, reason, expected)


async def _halt(
    operator: Operator,
    name: str,
    operation: Operation,
    reason: str | None,
    expected: Expected | None,
) -> None:
    if operation is Operation.PAUSE and await _window_paused(operator, name):
        # Already paused, by a window's closing: the operator's pause keeps it paused.
        operation = Operation.KEEP_PAUSED
    async with _operate(operator, name, operation, expected) as (conn, row, decision):
        if operation is Operation.PAUSE and row.requested is Request.STOP:
            # A pause must not take the place of a stop nobody has acted on yet: the
            # operator who asked for the stop is owed it.
            raise InvalidTransition(
                f"cannot pause workflow {name!r}: a stop is already requested; it stops "
                + (
                    "once its daemon cancels the current step"
                    if row.state is WorkflowState.RUNNING
                    else "when a daemon next takes it (`wfectl stop` stops it now)"
                )
            )
        values = {} if decision.request else {"requested": None}
        await _apply(
            operator, conn, row, decision, values, reason=reason, position=row.current_step
        )
        if decision.target is WorkflowState.STOPPED:
            await step_store.step_stop_cut_off(conn, row.id, row.current_step)


async def _window_paused(operator: Operator, name: str) -> bool:
    """Whether `name` is paused by a window's closing (read before the locked operation,
    which checks the state again)."""
    async with operator.db.transaction() as conn:
        row = await require(conn, name)
    return row.state is WorkflowState.PAUSED and row.window_paused is not None


async def resume(
    operator: Operator, name: str, reason: str | None, expected: Expected | None = None
) -> None:
    """Make a paused workflow runnable again, from the step it halted before."""
    async with _operate(operator, name, Operation.RESUME, expected) as (conn, row, decision):
        await _apply(
            operator,
            conn,
            row,
            decision,
            {"requested": None, "run_after": _later_run_after(operator, row)},
            reason=reason,
            position=row.current_step,
        )


def _later_run_after(operator: Operator, row: WorkflowRow) -> datetime | None:
    """A workflow's `run_after` if it is still to come, else None: resuming or skipping
    makes a workflow runnable again, but not before the time it was set to run at (a
    maintenance planned for tonight, paused and resumed this afternoon, waits)."""
    run_after = row.run_after
    if isinstance(run_after, datetime) and run_after > operator.clock():
        return run_after
    return None


async def retry(
    operator: Operator, name: str, reason: str | None, expected: Expected | None = None
) -> None:
    """Run a workflow in error again from the step that failed (its attempts go on)."""
    async with _operate(operator, name, Operation.RETRY, expected) as (conn, row, decision):
        await _apply(
            operator,
            conn,
            row,
            decision,
            {"last_error": None, "requested": None, "run_after": None},
            reason=reason,
            position=row.current_step,
        )
        await step_store.step_reschedule_clean(conn, row.id, row.current_step)


async def skip(
    operator: Operator,
    name: str,
    set_context: dict[str, Any] | None,
    reason: str | None,
    expected: Expected | None = None,
) -> None:
    """Skip the step a workflow halted at (error or paused), optionally patching the
    context; the workflow continues with the next step."""
    async with _operate(operator, name, Operation.SKIP, expected) as (conn, row, decision):
        steps = await step_store.steps_get(conn, row.id)
        position = row.current_step
        signed_off = bool(steps) and position == len(steps)
        if not steps and row.state is WorkflowState.PAUSED:
            _check_skip_before_first_run(name, position, _definition_length(row.steps))
        elif signed_off and row.state is WorkflowState.PAUSED:
            pass  # paused by a pause step that was its last: skipping the gate completes it
        elif position >= len(steps):
            raise InvalidTransition(
                f"cannot skip in workflow {name!r}: it has no step {position} "
                "(an invalid definition has no steps to skip: fix `steps`, then retry)"
            )
        context = _storable({**_editable_context(row), **(set_context or {})})
        await _apply(
            operator,
            conn,
            row,
            decision,
            {
                "current_step": position if signed_off else position + 1,
                "context": context,
                "last_error": None,
                "requested": None,
                "run_after": _later_run_after(operator, row),
            },
            reason=reason,
            position=position,
            detail={"set": set_context} if set_context else None,
        )
        if steps and not signed_off:
            await step_store.step_finish(
                conn, row.id, position, StepState.SKIPPED, operator.clock()
            )
        # Else no daemon has run it yet: its first run creates the step rows, those
        # before `current_step` skipped.


def _check_skip_before_first_run(name: str, position: int, count: int) -> None:
    """A workflow paused before any daemon ran it has no step rows: skipping moves its
    `current_step` on, which its first run honours (the steps before it are recorded
    skipped) — but not past its last step, which a first run takes for a bad row."""
    if count == 0:
        raise InvalidTransition(
            f"cannot skip in workflow {name!r}: its `steps` is not a list of steps "
            "(fix `steps`, then resume)"
        )
    if position + 1 >= count:
        raise InvalidTransition(
            f"cannot skip step {position} of workflow {name!r}: no daemon has run it yet "
            "and that is its last step, so nothing would be left to run; delete it instead"
        )


async def restart(operator: Operator, name: str, from_step: int, reason: str | None) -> None:
    """Run a non-running workflow again from step `from_step` (0-based)."""
    async with _operate(operator, name, Operation.RESTART) as (conn, row, decision):
        steps = await step_store.steps_get(conn, row.id)
        count = len(steps) if steps else _definition_length(row.steps)
        if not 0 <= from_step < max(count, 1):
            raise InvalidTransition(
                f"cannot restart workflow {name!r} from step {from_step}: "
                f"its steps are numbered 0 to {count - 1}"
            )
        await _apply(
            operator,
            conn,
            row,
            decision,
            {
                "current_step": from_step,
                "last_error": None,
                "requested": None,
                "run_after": None,
                "finished_at": None,
            },
            reason=reason,
            position=from_step,
        )
        await step_store.steps_reset_from(conn, row.id, from_step)
        await step_store.steps_skip_before(conn, row.id, from_step)


async def delete(
    operator: Operator, name: str, reason: str | None, expected: Expected | None = None
) -> None:
    """Delete a workflow that is not running; its events are kept."""
    async with _operate(operator, name, Operation.DELETE, expected) as (conn, row, decision):
        if not await workflow_store.workflow_delete(conn, row.id):
            raise InvalidTransition(f"workflow {name!r} changed state meanwhile; try again")
        await _record(operator, conn, row, decision.operation, reason)


async def set_context(
    operator: Operator,
    name: str,
    updates: dict[str, Any] | None,
    unset: Sequence[str],
    reason: str | None,
) -> None:
    """Change keys of the context of a workflow that is not running."""
    async with _operate(operator, name, Operation.SET_CONTEXT) as (conn, row, decision):
        context = {**_editable_context(row), **(updates or {})}
        keys = [unset] if isinstance(unset, str) else list(unset)  # one key, not its letters
        missing = [key for key in keys if key not in context]
        if missing:
            raise InvalidTransition(f"workflow {name!r} has no context key {missing[0]!r} to unset")
        for key in keys:
            del context[key]
        context = _storable(context)
        await _apply(
            operator,
            conn,
            row,
            decision,
            {"context": context},
            reason=reason,
            detail={"set": updates or {}, "unset": keys},
        )


def _storable(context: dict[str, Any]) -> dict[str, Any]:
    """`storable_context`, imported here: pause, stop and the like need no step
    definitions (wfectl start-up)."""
    from wfed.steps.definition import storable_context  # noqa: PLC0415

    return storable_context(context)


# The events after which a pending workflow's `run_after` is what the last of them left.
_RUN_AFTER_EVENTS = [
    kind.value
    for kind in (
        EventKind.CREATED,
        EventKind.WINDOW_WAIT,
        EventKind.STEP_RETRY,
        EventKind.RESUMED,
        EventKind.RETRIED,
        EventKind.SKIPPED,
        EventKind.RESTARTED,
    )
]


async def set_windows(
    operator: Operator, name: str, windows: list[str], reason: str | None
) -> None:
    """Replace the maintenance windows of a workflow that is not running (empty: none).
    A pending workflow waiting for its old windows' opening may run at once; one that a
    window's closing paused is resumed by the daemons when its new windows are open."""
    async with _operate(operator, name, Operation.SET_WINDOWS) as (conn, row, decision):
        values: dict[str, Any] = {"windows": windows or None}
        if row.state is WorkflowState.PENDING and row.run_after is not None:
            last = await event_store.event_latest(conn, row.id, _RUN_AFTER_EVENTS)
            if last is not None and last.kind == EventKind.WINDOW_WAIT.value:
                values["run_after"] = None
        await _apply(
            operator,
            conn,
            row,
            decision,
            values,
            reason=reason,
            detail={"windows": windows, "before": _readable_windows(row.windows)},
        )


def _readable_windows(value: Any) -> Any:
    """A `windows` value for an event's detail: as stored when it reads as windows, else
    a bounded note (a hostile row's value could be anything, of any size)."""
    try:
        parse_windows(value)
    except WindowSpecError:
        return "(unreadable)"
    return value


def _editable_context(row: WorkflowRow) -> dict[str, Any]:
    """The context an edit starts from; InvalidTransition if the row's context is not a
    JSON object (written so by SQL), which no key can be set in."""
    if isinstance(row.context, dict):
        return row.context
    held = "text that is not JSON" if isinstance(row.context, UnreadableJson) else "no object"
    raise InvalidTransition(
        f"cannot edit the context of workflow {row.name!r}: it holds {held}, so no key can "
        f"be set in it; write a JSON object there with SQL (UPDATE workflows SET context "
        f"= '{{}}' WHERE name = '{row.name}'), or delete the workflow"
    )


def _definition_length(steps: Any) -> int:
    return len(steps) if isinstance(steps, list) else 0
