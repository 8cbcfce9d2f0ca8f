"""Runs one claimed workflow's steps, one at a time, for the daemon and for `Engine.run`.

The runner owns a lease (the workflow id and its fencing token). Every write it makes is
guarded by that token, so once another owner has taken the workflow over, nothing this
runner does can change it. Finishing step N and starting step N+1 (after checking for a
pause or stop request) is one transaction: about one commit per step.

Control comes from outside: the owner's heartbeat calls `stop()` on a stop request and
`lose()` when the lease could not be renewed; a pause request is seen by the transaction
that would start the next step, so no step starts once a pause is committed.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from wfed.clock import Clock, utc_now
from wfed.engine.handover import Body, Committer, FastAdvance
from wfed.errors import InvalidDefinition, LeaseLost
from wfed.metrics import Metrics
from wfed.states import HONOURED, Operation, Request, StepState, WorkflowState, event_kind, finishes
from wfed.steps.base import PauseWorkflow
from wfed.steps.definition import StepPlan, check_args, parse_context, parse_definition
from wfed.steps.registry import StepRegistry
from wfed.steps.template import render
from wfed.store import events as event_store
from wfed.store import steps as step_store
from wfed.store import workflows as workflow_store
from wfed.store.database import OUTAGE_ERRORS, Database, is_outage
from wfed.store.events import Event
from wfed.store.rows import StepRow, WorkflowRow
from wfed.store.workflows import Advance

log = structlog.get_logger("wfed.runner")

RUNNING = [WorkflowState.RUNNING]
OUTAGE_BACKOFF_MAX = 5.0
ERROR_TEXT_MAX = 4000


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


@dataclass(frozen=True)
class RunResult:
    outcome: Outcome
    message: str | None = None
    invalid: bool = False
    run_after: datetime | None = None


class _Stopped(Exception):
    """The in-flight step was cancelled by a stop request."""


class _Halt(Exception):
    def __init__(self, result: RunResult) -> None:
        self.result = result


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip()
    described = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return described[:ERROR_TEXT_MAX]


class WorkflowRunner:
    """One claimed workflow, run until it completes, halts, is released or is lost."""

    def __init__(
        self,
        db: Database,
        registry: StepRegistry,
        workflow: WorkflowRow,
        *,
        actor: str,
        lease_seconds: float,
        clock: Clock = utc_now,
        metrics: Metrics | None = None,
        committer: Committer | None = None,
    ) -> None:
        self.db = db
        self.committer = committer
        self.metrics = metrics
        self.registry = registry
        self.workflow = workflow
        self.actor = actor
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.fence = workflow.fence
        self.lease_expires_at = workflow.lease_expires_at or clock()
        self._step_task: asyncio.Task[None] | None = None
        self._stop_reason: str | None = None
        self._lost = False
        self._release_requested = False
        self._prior_attempts: list[int] = []
        self._uncommitted_expiry: datetime | None = None
        self.log = log.bind(workflow=workflow.name, workflow_id=workflow.id)

    # -- control, called by the owner's heartbeat or shutdown -----------------------------

    def stop(self, reason: str = "stop requested") -> None:
        """Cancel the in-flight step; the workflow and step become `stopped`."""
        if self._stop_reason is None:
            self._stop_reason = reason
        if self._step_task is not None:
            self._step_task.cancel()

    def lose(self) -> None:
        """The lease is gone: cancel the step and write nothing more."""
        self._lost = True
        if self._step_task is not None:
            self._step_task.cancel()

    def release_after_step(self) -> None:
        """Hand the workflow back as pending once the current step finishes (shutdown)."""
        self._release_requested = True

    def renewed(self, lease_expires_at: datetime) -> None:
        self.lease_expires_at = lease_expires_at

    # -- the run ----------------------------------------------------------------------

    async def run(self) -> RunResult:
        try:
            plans, context, position, attempts = await self._prepare()
            while True:
                plan = plans[position]
                result = await self._run_step(plan, context, attempts)
                if isinstance(result, RunResult):
                    return result
                context, position, attempts = result
        except _Halt as halt:
            return halt.result
        except LeaseLost:
            self.log.warning("lease_lost")
            if self.metrics:
                self.metrics.leases_lost.inc()
            return RunResult(Outcome.LOST, "the lease was taken over by another owner")
        except asyncio.CancelledError:
            # Cancelled from outside (shutdown past its grace): the step is interrupted.
            # Hand the workflow back at once rather than making others wait for the lease.
            await asyncio.shield(self._release_interrupted())
            raise

    def _event(self, kind: str, *, position: int | None = None, **extra: Any) -> Event:
        reason = extra.pop("reason", None)
        return Event(
            workflow_id=self.workflow.id,
            workflow_name=self.workflow.name,
            kind=kind,
            actor=self.actor,
            at=self.clock(),
            position=position,
            reason=reason,
            detail=extra,
        )

    async def _write(
        self,
        body: Body,
        *,
        shared: bool = False,
        fast: Callable[[], FastAdvance] | None = None,
    ) -> Any:
        """Run `body` in a transaction, riding out deadlocks and database outages.

        An outage is retried with backoff for as long as the lease can still be valid: a
        finished step's result is committed when the database returns, unless by then
        another owner may have taken over. With `shared`, the daemon's committer may run
        the body in a transaction shared with other workflows' step transitions; such a
        body raises a wfed error only before it has written anything. `fast` builds, for
        each attempt, the body's effect as data for the committer to batch.
        """
        delay = 0.05
        while True:
            if self._lost:
                raise LeaseLost
            self._uncommitted_expiry = None
            try:
                if shared and self.committer is not None:
                    batched = fast() if fast is not None else None
                    result = await self.committer(self.workflow.id, body, batched)
                else:
                    async with self.db.transaction() as conn:
                        result = await body(conn)
                self._lease_committed()
                return result  # noqa: TRY300 - the except below must not cover this
            except OUTAGE_ERRORS as exc:
                if not is_outage(exc):
                    raise
                if self.clock() >= self.lease_expires_at:
                    self.log.warning("lease_expired_during_outage", error=_error_text(exc))
                    raise LeaseLost from exc
                self.log.warning("database_write_retried", error=_error_text(exc), delay=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, OUTAGE_BACKOFF_MAX)

    async def _guarded(
        self,
        conn: AsyncConnection,
        operation: Operation,
        values: dict[str, Any],
        *,
        unrequested: bool = False,
    ) -> bool:
        now = self.clock()
        values = {"updated_at": now, **values}
        return await workflow_store.workflow_update(
            conn,
            self.workflow.id,
            operation,
            fence=self.fence,
            unrequested=unrequested,
            values=values,
        )

    async def _must(
        self, conn: AsyncConnection, operation: Operation, values: dict[str, Any]
    ) -> None:
        if not await self._guarded(conn, operation, values):
            raise LeaseLost

    def _unowned(self, operation: Operation, **values: Any) -> dict[str, Any]:
        """Values that end this owner's hold on the workflow."""
        finished = finishes(operation)
        return {
            "claimed_by": None,
            "lease_expires_at": None,
            "requested": None,
            **({"finished_at": self.clock()} if finished else {}),
            **values,
        }

    async def _prepare(self) -> tuple[list[StepPlan], dict[str, Any], int, int]:
        """Validate the definition, create step rows, honour a waiting request, handle an
        interrupted step, and start the current step."""
        row = self.workflow
        try:
            plans = parse_definition(row.steps, self.registry)
            context = parse_context(row.context)
        except InvalidDefinition as exc:
            await self._fail_invalid(str(exc))
            raise _Halt(RunResult(Outcome.ERROR, str(exc), invalid=True)) from None

        # The body returns a RunResult when the workflow ends here: raising would roll
        # back the very transition it just wrote.
        async def body(conn: AsyncConnection) -> RunResult | tuple[int, int]:
            # Lock the workflow row first (checking the fence): inserting step rows takes a
            # shared lock on it for the foreign key, and upgrading that lock later would
            # deadlock against the heartbeat renewing this daemon's leases.
            requested = await self._lock_for_start(conn, row.requested)
            rows = await step_store.steps_get(conn, row.id)
            started = False
            if not rows:
                # A first run: the current step is created running, unless the
                # workflow ends here (a waiting request, or nothing left to run).
                started = requested is None and row.current_step < len(plans)
                await step_store.steps_insert(
                    conn,
                    row.id,
                    [(p.name, p.label, p.args) for p in plans],
                    running=row.current_step if started else None,
                    now=self.clock(),
                )
                rows = [StepRow.fresh(p.position, p.name, p.label, p.args) for p in plans]
            self._prior_attempts = [r.attempts for r in rows]
            if len(rows) != len(plans):
                raise InvalidDefinition(
                    f"the definition has {len(plans)} steps but {len(rows)} step rows exist "
                    "(was `steps` edited after the workflow started?); "
                    "`wfectl restart --from-step 0` rebuilds them"
                )
            if requested is not None:
                return await self._honour_request(conn, requested, None, context)
            position = row.current_step
            if position >= len(plans):
                await self._complete(conn, context, None)
                return RunResult(Outcome.COMPLETED)
            current = rows[position]
            if current.state is StepState.RUNNING:
                halted = await self._interrupted(conn, plans[position], current)
                if halted is not None:
                    return halted
            if not started:
                await step_store.step_start(conn, row.id, position, self.clock())
            await event_store.events_insert(
                conn, self._event("claimed", position=position, fence=self.fence)
            )
            return position, current.attempts + 1

        try:
            prepared: RunResult | tuple[int, int] = await self._write(body, shared=True)
        except InvalidDefinition as exc:
            await self._fail_invalid(str(exc))
            raise _Halt(RunResult(Outcome.ERROR, str(exc), invalid=True)) from None
        if isinstance(prepared, RunResult):
            raise _Halt(prepared)
        position, attempts = prepared
        return plans, context, position, attempts

    async def _lock_for_start(
        self, conn: AsyncConnection, requested: Request | None
    ) -> Request | None:
        """Lock the workflow row (checking the fence, renewing the lease) and return the
        request waiting on it. One written guard covers the usual case; only when it
        fails (a pause or stop requested since the claim read the row, or the lease
        lost) is the row read again, so a request committed before the first step
        starts is always honoured."""
        values = {"lease_expires_at": self._next_expiry()}
        if requested is None and await self._guarded(
            conn, Operation.START, values, unrequested=True
        ):
            return None
        await self._must(conn, Operation.START, values)
        current = await workflow_store.workflow_get_by_id(conn, self.workflow.id)
        return current.requested if current is not None else None

    def _lease_committed(self) -> None:
        if self._uncommitted_expiry is not None:
            self.lease_expires_at = self._uncommitted_expiry

    def _renewal_due(self) -> datetime | None:
        """A renewed lease end for a step commit, once half of the lease is spent: the
        heartbeat renews leases but skips rows a step commit holds, so a workflow
        whose row it kept finding locked renews its own; otherwise None."""
        half = timedelta(seconds=self.lease_seconds / 2)
        if self.clock() < self.lease_expires_at - half:
            return None
        return self._next_expiry()

    def _next_expiry(self) -> datetime:
        """A renewed lease end for the write being built; it counts once committed."""
        expires = self.clock() + timedelta(seconds=self.lease_seconds)
        self._uncommitted_expiry = expires
        return expires

    async def _interrupted(
        self, conn: AsyncConnection, plan: StepPlan, current: StepRow
    ) -> RunResult | None:
        """The previous owner died (or was cancelled) while this step ran: re-run it if it
        is idempotent (None), else put the workflow in error."""
        self._count(plan, "interrupted")
        if plan.idempotent:
            self.log.warning("step_interrupted_rerun", position=plan.position, step=plan.name)
            await event_store.events_insert(
                conn,
                self._event("step_interrupted", position=plan.position, rerun=True),
            )
            return None
        message = (
            f"interrupted while running {plan.title} (attempt {current.attempts}); it is not "
            "idempotent, so it was not re-run: check what it did, then `wfectl retry` or "
            "`wfectl skip`"
        )
        self.log.error("step_interrupted", position=plan.position, step=plan.name)
        await self._must(
            conn, Operation.INTERRUPT, self._unowned(Operation.INTERRUPT, last_error=message)
        )
        await step_store.step_finish(
            conn, self.workflow.id, plan.position, StepState.ERROR, self.clock(), message
        )
        await event_store.events_insert(
            conn,
            self._event("step_interrupted", position=plan.position, rerun=False),
            self._event("error", position=plan.position, reason=message),
        )
        return RunResult(Outcome.ERROR, message)

    async def _fail_invalid(self, message: str) -> None:
        text = f"invalid workflow: {message}"
        self.log.error("workflow_invalid", error=message)

        async def body(conn: AsyncConnection) -> None:
            await self._must(conn, Operation.FAIL, self._unowned(Operation.FAIL, last_error=text))
            await event_store.events_insert(conn, self._event("invalid", reason=text))

        await self._write(body)

    async def _honour_request(
        self,
        conn: AsyncConnection,
        request: Request,
        finished: StepPlan | None,
        context: dict[str, Any],
    ) -> RunResult:
        """Apply a pause or stop request between steps (after `finished`, if any)."""
        position = self.workflow.current_step if finished is None else finished.position + 1
        operation = HONOURED[request]
        await self._must(
            conn, operation, self._unowned(operation, context=context, current_step=position)
        )
        if finished is not None:
            await step_store.step_finish(
                conn, self.workflow.id, finished.position, StepState.COMPLETED, self.clock()
            )
        # Carry the operator's reason over, so `show` says who halted it and why.
        asked = await event_store.event_latest(
            conn, self.workflow.id, [f"{request.value}_requested"]
        )
        by = {"requested_by": asked.actor} if asked else {}
        await event_store.events_insert(
            conn,
            self._event(
                str(event_kind(operation)),
                position=position,
                reason=asked.reason if asked else None,
                **by,
            ),
        )
        self.log.info(f"workflow_{event_kind(operation)}", position=position)
        return RunResult(Outcome.PAUSED if request is Request.PAUSE else Outcome.STOPPED)

    async def _complete(
        self, conn: AsyncConnection, context: dict[str, Any], last: StepPlan | None
    ) -> None:
        now = self.clock()
        position = self.workflow.current_step if last is None else last.position + 1
        await self._must(
            conn,
            Operation.COMPLETE,
            self._unowned(Operation.COMPLETE, context=context, current_step=position),
        )
        if last is not None:
            await step_store.step_finish(
                conn, self.workflow.id, last.position, StepState.COMPLETED, now
            )
        await event_store.events_insert(conn, self._event("completed"))
        self.log.info("workflow_completed")

    async def _run_step(
        self, plan: StepPlan, context: dict[str, Any], attempts: int
    ) -> RunResult | tuple[dict[str, Any], int, int]:
        """Run one attempt of one step and commit what follows from it."""
        with structlog.contextvars.bound_contextvars(
            workflow=self.workflow.name, position=plan.position, step=plan.name, attempt=attempts
        ):
            working = copy.deepcopy(context)
            started = time.monotonic()
            # Debug only: at thousands of steps a second, a line per step start would
            # double the log volume; `step_completed` carries the step and its duration.
            self.log.debug("step_started")
            self._count(plan, "started")
            try:
                pause_prompt = await self._await_step(plan, working)
            except _Stopped:
                self._count(plan, "stopped", started)
                return await self._stopped(plan)
            except Exception as exc:  # a step may raise anything: that is a step failure
                self.log.warning("step_failed", error=_error_text(exc), seconds=_since(started))
                self._count(plan, "failed" if attempts > plan.retries else "retried", started)
                return await self._failed(plan, context, attempts, exc)
            self.log.info("step_completed", seconds=_since(started))
            self._count(plan, "completed", started)
            if self._stop_reason is not None:
                # A stop that arrived as the step finished: the step's work stands.
                return await self._after_step(plan, working, Request.STOP)
            if pause_prompt is not None:
                return await self._pause_gate(plan, working, pause_prompt)
            return await self._after_step(plan, working, None)

    def _count(self, plan: StepPlan, outcome: str, started: float | None = None) -> None:
        if self.metrics is None:
            return
        self.metrics.steps.labels(plan.name, outcome).inc()
        if started is not None:
            self.metrics.step_seconds.labels(plan.name).observe(time.monotonic() - started)

    async def _await_step(self, plan: StepPlan, working: dict[str, Any]) -> str | None:
        """Run the step as a task that control can cancel; returns a pause gate's prompt.

        Raises what the step raised, _Stopped if a stop request cancelled it, LeaseLost
        if the lease did, and CancelledError if the runner itself was cancelled.
        """
        self._step_task = asyncio.create_task(self._attempt(plan, working))
        if self._stop_reason is not None or self._lost:
            # Control arrived between steps: this one must not run at all.
            self._step_task.cancel()
        try:
            await self._step_task
        except PauseWorkflow as gate:
            return str(gate) or "paused by a pause step"
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not self._step_task.cancelled() or (current and current.cancelling()):
                raise
            if self._lost:
                raise LeaseLost from None
            raise _Stopped from None
        finally:
            if not self._step_task.done():
                self._step_task.cancel()
            self._step_task = None
        try:
            json.dumps(working)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"the step left a context that is not JSON: {exc}") from None
        return None

    async def _attempt(self, plan: StepPlan, context: dict[str, Any]) -> None:
        args = render(plan.args, context)
        args = check_args(plan.step_class, args, plan.title, rendered=True)
        step = plan.step_class()
        if plan.timeout is None:
            await step.invoke(context, args)
            return
        try:
            async with asyncio.timeout(plan.timeout):
                await step.invoke(context, args)
        except TimeoutError:
            raise TimeoutError(f"timed out after {plan.timeout:g} s") from None

    async def _after_step(
        self, plan: StepPlan, context: dict[str, Any], forced: Request | None
    ) -> RunResult | tuple[dict[str, Any], int, int]:
        """Commit a completed step and, in the same transaction, start the next one —
        unless a request, the end of the workflow or a shutdown says otherwise."""
        plans_total = len(self._prior_attempts)
        nxt = plan.position + 1

        async def body(conn: AsyncConnection) -> RunResult | tuple[dict[str, Any], int, int]:
            if nxt >= plans_total:
                await self._complete(conn, context, plan)
                return RunResult(Outcome.COMPLETED)
            if forced is not None:
                return await self._honour_request(conn, forced, plan, context)
            if self._release_requested:
                await self._must(
                    conn,
                    Operation.RELEASE,
                    self._unowned(Operation.RELEASE, context=context, current_step=nxt),
                )
                await step_store.step_finish(
                    conn, self.workflow.id, plan.position, StepState.COMPLETED, self.clock()
                )
                await event_store.events_insert(conn, self._event("released", position=nxt))
                return RunResult(Outcome.RELEASED)
            advanced = await workflow_store.workflow_advance(
                conn,
                self.workflow.id,
                fence=self.fence,
                context=context,
                current_step=nxt,
                now=self.clock(),
                lease_expires_at=self._renewal_due(),
            )
            if not advanced:
                current = await workflow_store.workflow_get_by_id(conn, self.workflow.id)
                if (
                    current is None
                    or current.fence != self.fence
                    or current.state is not WorkflowState.RUNNING
                    or current.requested is None
                ):
                    raise LeaseLost
                return await self._honour_request(conn, current.requested, plan, context)
            await step_store.step_finish_and_start_next(
                conn, self.workflow.id, plan.position, self.clock()
            )
            return context, nxt, self._prior_attempts[nxt] + 1

        def fast() -> FastAdvance:
            move = Advance(self.workflow.id, self.fence, plan.position, context)
            result = (context, nxt, self._prior_attempts[nxt] + 1)
            return FastAdvance(
                move,
                self.clock(),
                result,
                lease_expires_at=self._renewal_due(),
                # Asked again when the batch is built: a release requested meanwhile
                # (shutdown) must hand the workflow back instead of starting a step.
                applies=lambda: not self._release_requested and not self._lost,
            )

        # Only the plain advance has a batched form; the body decides everything else.
        plain = nxt < plans_total and forced is None and not self._release_requested
        outcome: RunResult | tuple[dict[str, Any], int, int] = await self._write(
            body, shared=True, fast=fast if plain else None
        )
        return outcome

    async def _pause_gate(self, plan: StepPlan, context: dict[str, Any], prompt: str) -> RunResult:
        """A step asked to pause after itself: complete it and pause before the next."""
        nxt = plan.position + 1

        async def body(conn: AsyncConnection) -> RunResult:
            if nxt >= len(self._prior_attempts):
                await self._complete(conn, context, plan)
                return RunResult(Outcome.COMPLETED)
            await self._must(
                conn,
                Operation.HONOUR_PAUSE,
                self._unowned(Operation.HONOUR_PAUSE, context=context, current_step=nxt),
            )
            await step_store.step_finish(
                conn, self.workflow.id, plan.position, StepState.COMPLETED, self.clock()
            )
            await event_store.events_insert(
                conn, self._event("paused", position=nxt, reason=prompt, gate=plan.name)
            )
            return RunResult(Outcome.PAUSED, prompt)

        self.log.info("workflow_paused", position=nxt, reason=prompt)
        result: RunResult = await self._write(body)
        return result

    async def _stopped(self, plan: StepPlan) -> RunResult:
        """The step was cancelled by a stop request: step and workflow become stopped."""
        reason = self._stop_reason or "stop requested"

        async def body(conn: AsyncConnection) -> RunResult:
            await self._must(conn, Operation.HONOUR_STOP, self._unowned(Operation.HONOUR_STOP))
            await step_store.step_finish(
                conn, self.workflow.id, plan.position, StepState.STOPPED, self.clock(), reason
            )
            await event_store.events_insert(
                conn, self._event("stopped", position=plan.position, reason=reason)
            )
            return RunResult(Outcome.STOPPED, reason)

        self.log.info("workflow_stopped", position=plan.position)
        result: RunResult = await asyncio.shield(self._write(body))
        return result

    async def _failed(
        self, plan: StepPlan, context: dict[str, Any], attempts: int, failure: BaseException
    ) -> RunResult | tuple[dict[str, Any], int, int]:
        """A step attempt failed: retry it (now, or later with the slot released) or put
        the workflow in error. The context is the one from before the attempt."""
        error = _error_text(failure)
        if attempts <= plan.retries:
            delay = plan.retry_delay * plan.backoff ** (attempts - 1)
            return await self._retry(plan, context, attempts, error, delay)
        tries = f"after {attempts} attempts" if attempts > 1 else ""
        message = " ".join(filter(None, [f"{plan.title} failed", tries])) + f": {error}"

        async def body(conn: AsyncConnection) -> RunResult:
            await self._must(
                conn, Operation.FAIL, self._unowned(Operation.FAIL, last_error=message)
            )
            await step_store.step_finish(
                conn, self.workflow.id, plan.position, StepState.ERROR, self.clock(), error
            )
            await event_store.events_insert(
                conn, self._event("error", position=plan.position, reason=message)
            )
            return RunResult(Outcome.ERROR, message)

        self.log.error("workflow_error", position=plan.position, error=message)
        result: RunResult = await self._write(body)
        return result

    async def _retry(
        self, plan: StepPlan, context: dict[str, Any], attempts: int, error: str, delay: float
    ) -> RunResult | tuple[dict[str, Any], int, int]:
        retry = self._event(
            "step_retry", position=plan.position, attempt=attempts, delay=delay, error=error
        )
        if delay <= 0 and not self._release_requested:

            async def again(conn: AsyncConnection) -> tuple[dict[str, Any], int, int]:
                await self._must(conn, Operation.START, {"lease_expires_at": self._next_expiry()})
                await step_store.step_start(conn, self.workflow.id, plan.position, self.clock())
                await event_store.events_insert(conn, retry)
                return context, plan.position, attempts + 1

            result: tuple[dict[str, Any], int, int] = await self._write(again)
            return result
        # Waiting out a retry delay does not hold a slot: the workflow goes back to
        # pending with run_after, and any daemon may pick it up then.
        run_after = self.clock() + timedelta(seconds=delay)

        async def later(conn: AsyncConnection) -> RunResult:
            await self._must(
                conn, Operation.RELEASE, self._unowned(Operation.RELEASE, run_after=run_after)
            )
            await step_store.step_reschedule(conn, self.workflow.id, plan.position, error)
            await event_store.events_insert(conn, retry)
            return RunResult(Outcome.RELEASED, error, run_after=run_after)

        self.log.info("step_retry_scheduled", position=plan.position, delay=delay)
        released: RunResult = await self._write(later)
        return released

    async def _release_interrupted(self) -> None:
        """Hand a workflow whose step was cut off back as pending; the step stays
        `running`, which the next owner treats as interrupted."""
        if self._lost:
            return

        async def body(conn: AsyncConnection) -> None:
            if await self._guarded(conn, Operation.RELEASE, self._unowned(Operation.RELEASE)):
                await event_store.events_insert(conn, self._event("released", interrupted=True))

        try:
            async with self.db.transaction() as conn:
                await body(conn)
        except Exception as exc:  # best effort: the lease expiring does the same, later
            self.log.warning("release_failed", error=_error_text(exc))
