"""The first transaction of a runner's turn with a workflow it has just claimed.

It validates the row (a definition that cannot run ends the turn in `error`), creates
the step rows of a first run, honours a pause or stop request that waits, completes a
workflow with nothing left to run, decides what to do with a step its previous owner was
cut off in, and starts the current step — one transaction, shared with other workflows'
writes in the daemon's group commit.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import fields, replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from wfed.engine import window_reads, windows
from wfed.engine.group_commit import BatchableStart
from wfed.engine.turn import Next, NextStep, RunResult, StepEnd, TurnEnd, TurnWriter
from wfed.errors import InvalidDefinition
from wfed.logging import get_logger
from wfed.states import HONOURED, EventKind, Operation, Request, StepState
from wfed.steps.definition import StepPlan, parse_context, parse_row_definition
from wfed.steps.registry import StepRegistry
from wfed.store import events as event_store
from wfed.store import locks as lock_store
from wfed.store import steps as step_store
from wfed.store import workflows as workflow_store
from wfed.store.events import Event
from wfed.store.lock_keys import parse_lock_keys
from wfed.store.rows import StepRow, WorkflowRow
from wfed.store.steps import NewSteps
from wfed.store.workflows import Start
from wfed.unreadable_json import UnreadableTimestamp
from wfed.windows import Closed, QueueWindows, WindowGate, specs

log = get_logger("wfed.runner")

Write = Callable[..., Awaitable[Any]]
Count = Callable[[str, str], None]


class Halted(Exception):
    """The turn ended in its first transaction (or before it)."""

    def __init__(self, result: RunResult) -> None:
        self.result = result


class TurnStart:
    """Prepares one turn: validation, step rows, waiting requests, interrupted steps."""

    def __init__(
        self,
        writer: TurnWriter,
        registry: StepRegistry,
        count: Count,
        queue_windows: QueueWindows | None = None,
    ) -> None:
        self.writer = writer
        self.registry = registry
        self.count = count
        # None: windows are not honoured (`Engine.run` runs a workflow when asked to).
        self.queue_windows = queue_windows
        self.gate = WindowGate()
        """The windows the workflow runs in, once `prepare` has read them."""
        self.prior_attempts: list[int] = []
        self._found: list[Callable[[], Any]] = []
        self.log = log.bind(workflow=writer.workflow.name, workflow_id=writer.workflow.id)

    async def prepare(self, write: Write) -> tuple[list[StepPlan], Next]:
        """The workflow's step plans and what comes first; Halted if the turn is over."""
        row = self.writer.workflow
        unreadable = _unreadable_timestamp(row) or _not_a_position(row)
        if unreadable is not None:
            raise Halted(await self._reject(write, unreadable))
        try:
            plans = parse_row_definition(row.steps, self.registry)
            context = parse_context(row.context)
            parse_lock_keys(row.locks)
        except InvalidDefinition as exc:
            raise Halted(await self._reject(write, str(exc))) from None
        bad_windows = window_reads.unreadable(row.windows)
        if bad_windows is not None:
            raise Halted(await self._reject(write, bad_windows))
        if self.queue_windows is not None:
            self.gate = window_reads.gate_of(self.queue_windows, row.queue, row.windows)

        async def body(conn: AsyncConnection) -> Next:
            # A transaction may be tried again (a lock wait, an outage): what it found is
            # logged once, after it committed.
            self._found.clear()
            return await self._begin(conn, plans, context)

        try:
            first: Next = await write(body, shared=True, advance=self._batchable(plans, context))
        except InvalidDefinition as exc:
            raise Halted(await self._reject(write, str(exc))) from None
        for line in self._found:
            line()
        if isinstance(first, RunResult):
            raise Halted(first)
        return plans, first

    def _batchable(
        self, plans: list[StepPlan], context: dict[str, Any]
    ) -> Callable[[], BatchableStart] | None:
        """The first write as data for a group commit (see `BatchableStart`), built anew
        for each attempt; None where only the body can decide (a request waits, the row
        names a step it does not have)."""
        row = self.writer.workflow
        position = row.current_step
        if row.requested is not None or not 0 <= position < len(plans):
            return None
        lease = self.writer.lease
        steps = _new_steps(row, plans, started=True)
        following = NextStep(context, position, 1)

        def applies() -> bool:
            now = self.writer.clock()
            return not lease.lost and (self.gate.closed(now) if self.gate else None) is None

        def build() -> BatchableStart:
            # What `_begin` finds for a workflow that never ran; it sets its own if the
            # body runs instead.
            self.prior_attempts = [0] * len(plans)
            return BatchableStart(
                Start(row.id, lease.fence, position),
                steps,
                self.writer.clock(),
                lease.next_expiry(),
                self.writer.event(EventKind.CLAIMED, position=position, fence=lease.fence),
                following,
                applies=applies,
            )

        return build

    async def _begin(
        self, conn: AsyncConnection, plans: list[StepPlan], context: dict[str, Any]
    ) -> Next:
        row = self.writer.workflow
        lease = self.writer.lease
        # Lock the workflow row first (checking the fence): inserting step rows takes a
        # shared lock on it for the foreign key, and upgrading that lock later would
        # deadlock against the heartbeat renewing this daemon's leases.
        requested = await self._lock_for_start(conn, row.requested)
        closed = self.gate.closed(self.writer.clock()) if self.gate else None
        rows = await step_store.steps_get(conn, row.id)
        position = row.current_step
        started = False
        if not rows:
            started = requested is None and closed is None
            rows = await self._first_rows(conn, plans, started=started)
        self.prior_attempts = [r.attempts for r in rows]
        mismatch = _rows_mismatch(rows, plans)
        if mismatch is not None:
            raise InvalidDefinition(
                f"{mismatch}: its step rows, wfed's record of what ran, no longer match "
                "`steps` (edited after the workflow started, or rows written with SQL?). "
                f"Delete them (DELETE FROM workflow_steps WHERE workflow_id = {row.id}) "
                "for wfed to make them again from `steps`, then `wfectl retry`"
            )
        if not 0 <= position <= len(plans):  # len: the last step is done, to complete
            raise InvalidDefinition(_out_of_range(position, len(plans)))
        values = {"context": context, "current_step": position}
        if requested is not None:
            honour = TurnEnd(HONOURED[requested], values=values, position=position, on_request=True)
            if requested is Request.STOP and position < len(rows):
                # A step its last owner was cut off in is stopped with the workflow.
                await step_store.step_stop_cut_off(conn, row.id, position)
            return await self.writer.end(conn, honour)
        if position >= len(plans):
            return await self.writer.end(conn, TurnEnd(Operation.COMPLETE, values=values))
        current = rows[position]
        if current.state is StepState.RUNNING:
            if await self._started_by_this_owner(conn):
                # This very transaction was committed before, its reply lost: the step
                # was started by this owner, not cut off by a dead one.
                return NextStep(context, position, current.attempts)
            interrupted = await self._interrupted(conn, plans[position], current)
            if interrupted is not None:
                return interrupted
        if closed is not None:
            return await self._wait_for_window(conn, closed, context, current)
        if not started:
            await step_store.step_start(conn, row.id, position, self.writer.clock())
        claimed = self.writer.event(EventKind.CLAIMED, position=position, fence=lease.fence)
        await event_store.events_insert(conn, claimed)
        return NextStep(context, position, current.attempts + 1)

    async def _first_rows(
        self, conn: AsyncConnection, plans: list[StepPlan], *, started: bool
    ) -> list[StepRow]:
        """A first run's step rows: it starts at `current_step` (0, unless a restart or
        the INSERT chose a later step, and then the steps before it are skipped), which
        is created running if `started` (not when the workflow ends here: a waiting
        request, outside its windows)."""
        row = self.writer.workflow
        position = row.current_step
        if not 0 <= position < len(plans):
            raise InvalidDefinition(_out_of_range(position, len(plans)))
        await step_store.steps_insert_many(
            conn, [_new_steps(row, plans, started=started)], self.writer.clock()
        )
        rows = [StepRow.fresh(p.position, p.name, p.label, p.args) for p in plans]
        rows[:position] = [replace(r, state=StepState.SKIPPED) for r in rows[:position]]
        return rows

    async def _wait_for_window(
        self, conn: AsyncConnection, closed: Closed, context: dict[str, Any], current: StepRow
    ) -> RunResult:
        """Claimed outside its windows: back to pending until they open (an error when
        they never open: windows that do not overlap its queue's)."""
        position = self.writer.workflow.current_step
        if closed.opens_at is None:
            text = (
                "invalid workflow: its maintenance windows never overlap its queue's "
                f"({', '.join(specs(self.gate.own))} against {', '.join(specs(self.gate.queue))})"
            )
            end = TurnEnd(Operation.REJECT, values={"last_error": text}, reason=text, message=text)
            return await self.writer.end(conn, end)
        rerun = current.state is StepState.RUNNING
        if not any(self.prior_attempts):
            # Not started yet: it waits without the concurrency keys its claim took, so
            # that other workflows on them run meanwhile (one mid-run keeps them).
            await lock_store.locks_release_workflow(conn, self.writer.workflow.id)
        end = windows.outside_windows(position, context, closed, closed.opens_at, rerun=rerun)
        self._found.append(
            functools.partial(self.log.info, "workflow_waits_for_window", opens_at=closed.opens_at)
        )
        return await self.writer.end(conn, end)

    async def _started_by_this_owner(self, conn: AsyncConnection) -> bool:
        """Whether the workflow's last claim event is this owner's: its fence is recorded
        in the same transaction that starts the step."""
        claimed = await event_store.event_latest(
            conn, self.writer.workflow.id, [EventKind.CLAIMED.value]
        )
        return claimed is not None and claimed.detail.get("fence") == self.writer.lease.fence

    async def _lock_for_start(
        self, conn: AsyncConnection, requested: Request | None
    ) -> Request | None:
        """Lock the workflow row (checking the fence, renewing the lease) and return the
        request waiting on it. One written guard covers the usual case; only when it
        fails (a pause or stop requested since the claim read the row, or the lease
        lost) is the row read again, so a request committed before the first step
        starts is always honoured."""
        lease = self.writer.lease
        values = {"lease_expires_at": lease.next_expiry()}
        if requested is None and await lease.guard(conn, Operation.START, values, unrequested=True):
            return None
        await lease.must(conn, Operation.START, values)
        current = await workflow_store.workflow_get_by_id(conn, lease.workflow_id)
        return current.requested if current is not None else None

    async def _interrupted(
        self, conn: AsyncConnection, plan: StepPlan, current: StepRow
    ) -> RunResult | None:
        """The previous owner died (or was cancelled) while this step ran: re-run it if it
        is idempotent (None), else put the workflow in error."""
        self.count(plan.name, "interrupted")
        if plan.idempotent:
            self._found.append(
                functools.partial(
                    self.log.warning,
                    "step_interrupted_rerun",
                    position=plan.position,
                    step=plan.name,
                )
            )
            rerun = self.writer.event(
                EventKind.STEP_INTERRUPTED, position=plan.position, rerun=True
            )
            await event_store.events_insert(conn, rerun)
            return None
        message = (
            f"interrupted while running {plan.title} (attempt {current.attempts}); it is not "
            "idempotent, so it was not re-run: check what it did, then `wfectl retry` or "
            "`wfectl skip`"
        )
        self._found.append(
            functools.partial(
                self.log.error, "step_interrupted", position=plan.position, step=plan.name
            )
        )
        end = TurnEnd(
            Operation.INTERRUPT,
            values={"last_error": message},
            step=StepEnd(plan.position, StepState.ERROR, message),
            position=plan.position,
            reason=message,
            message=message,
            before=((EventKind.STEP_INTERRUPTED, {"rerun": False}),),
        )
        return await self.writer.end(conn, end)

    async def _reject(self, write: Write, message: str) -> RunResult:
        """The row cannot be run as it stands: the workflow goes to error."""
        text = f"invalid workflow: {message}"

        async def body(conn: AsyncConnection) -> RunResult:
            end = TurnEnd(
                Operation.REJECT, values={"last_error": text}, reason=text, message=message
            )
            return await self.writer.end(conn, end)

        result: RunResult = await write(body)
        self.log.error("workflow_invalid", error=message)
        return result


async def start_again(
    writer: TurnWriter, again: NextStep, retry: Event, conn: AsyncConnection
) -> NextStep:
    """Start a failed step's next attempt at once (a retry without delay)."""
    lease = writer.lease
    await lease.must(conn, Operation.START, {"lease_expires_at": lease.next_expiry()})
    await step_store.step_start(conn, lease.workflow_id, again.position, writer.clock())
    await event_store.events_insert(conn, retry)
    return again


def _rows_mismatch(rows: list[StepRow], plans: list[StepPlan]) -> str | None:
    """How the workflow's step rows fail to be the record of its definition, or None.
    Only wfed writes them, one per step, in order, naming the step: any other row would
    be shown by `show` and `export` as what ran while the definition's step ran."""
    if len(rows) != len(plans):
        return f"the definition has {len(plans)} steps but {len(rows)} step rows exist"
    for position, (found, plan) in enumerate(zip(rows, plans, strict=True)):
        if found.position != position:
            return f"a step row is at position {found.position!r} where {position} was due"
        if found.step != plan.name:
            return (
                f"step row {position} names {str(found.step)[:80]!r} but the definition's "
                f"step {position} is {plan.name!r}"
            )
    return None


def _unreadable_timestamp(row: WorkflowRow) -> str | None:
    """What is wrong with a timestamp column of the row that holds no timestamp (SQLite
    stores anything), or None."""
    for column in fields(row):
        value = getattr(row, column.name)
        if isinstance(value, UnreadableTimestamp):
            return (
                f"{column.name} holds {value.text!r}, not a timestamp "
                "(write UTC as 'YYYY-MM-DD HH:MM:SS', or NULL)"
            )
    return None


def _new_steps(row: WorkflowRow, plans: list[StepPlan], *, started: bool) -> NewSteps:
    """A first run's step rows: those before `current_step` skipped, that one running if
    `started`, the rest pending."""
    position = row.current_step
    return NewSteps(
        row.id,
        [(p.name, p.label, p.args) for p in plans],
        running=position if started else None,
        skipped_before=position,
    )


def _not_a_position(row: WorkflowRow) -> str | None:
    """What is wrong with `current_step` if it holds no step number (SQLite stores text
    or a fraction in an INTEGER column), or None."""
    position: Any = row.current_step
    if isinstance(position, int) and not isinstance(position, bool):
        return None
    return (
        f"current_step holds {str(position)[:40]!r}, not a step number "
        "(leave it out of the INSERT, or `wfectl restart --from-step K`)"
    )


def _out_of_range(position: int, count: int) -> str:
    return (
        f"current_step is {position}, but its steps are numbered 0 to {count - 1}: "
        "leave it out of the INSERT (0), or `wfectl restart --from-step K`"
    )
