"""Runs one claimed workflow's steps, one at a time, for the daemon and for `Engine.run`.

The runner holds a `Lease` on the workflow; every write it makes is guarded by the
lease's fence. Finishing step N and starting step N+1 (after checking for a pause or stop
request) is one transaction: about one commit per step. The first transaction of a turn
(`wfed.engine.start`) validates the row and deals with a request or an interrupted step;
every way a turn ends is a `TurnEnd` written by `wfed.engine.turn`.

Control comes from outside: the owner's heartbeat calls `stop()` on a stop request and
`lose()` when the lease could not be renewed; a pause request is seen by the transaction
that would start the next step, so no step starts once a pause is committed.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from wfed.clock import Clock, utc_now
from wfed.engine import ends, windows
from wfed.engine.advance import StepAdvance
from wfed.engine.execution import AttemptCancelled, StepAttempt
from wfed.engine.group_commit import Batchable, GroupCommit, TransactionBody
from wfed.engine.lease import Lease, error_text
from wfed.engine.start import Halted, TurnStart, start_again
from wfed.engine.turn import Next, NextStep, Outcome, RunResult, TurnEnd, TurnWriter
from wfed.errors import LeaseLost
from wfed.logging import get_logger
from wfed.metrics import Metrics, count_step
from wfed.states import HONOURED, EventKind, Operation, Request, event_kind
from wfed.steps.definition import StepPlan
from wfed.steps.registry import StepRegistry
from wfed.store.database import Database
from wfed.store.rows import WorkflowRow
from wfed.windows import Closed, QueueWindows, WindowGate

log = get_logger("wfed.runner")


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
        committer: GroupCommit | None = None,
        queue_windows: QueueWindows | None = None,
    ) -> None:
        self.db = db
        self.committer = committer
        self.metrics = metrics
        self.registry = registry
        self.workflow = workflow
        self.clock = clock
        self.lease = Lease(
            workflow.id,
            workflow.fence,
            workflow.lease_expires_at or clock(),
            seconds=lease_seconds,
            clock=clock,
            on_lost=self._cancel_attempt,
        )
        self.writer = TurnWriter(workflow, self.lease, actor=actor, clock=clock)
        # The daemon's runners honour maintenance windows (None: `Engine.run` does not).
        self.queue_windows = queue_windows
        self._gate = WindowGate()
        self._attempt: StepAttempt | None = None
        # The step whose attempt ended but whose outcome is not committed yet: if the
        # lease is lost before it is, that outcome is discarded, and the log says so.
        self._unrecorded: StepPlan | None = None
        self._stop_reason: str | None = None
        self._release_requested = False
        self._prior_attempts: list[int] = []
        self.log = log.bind(workflow=workflow.name, workflow_id=workflow.id)
        self._count = functools.partial(count_step, metrics)

    # -- control, called by the owner's heartbeat or shutdown -----------------------------

    @property
    def fence(self) -> int:
        return self.lease.fence

    @property
    def lease_expires_at(self) -> datetime:
        return self.lease.expires_at

    def stop(self, reason: str = "stop requested") -> None:
        """Cancel the in-flight step; the workflow and step become `stopped`. Only the
        first call counts: a step's own grace (a shell step's kill_grace) must run."""
        if self._stop_reason is not None:
            return
        self._stop_reason = reason
        self._cancel_attempt()

    def lose(self) -> None:
        """The lease is gone: cancel the step and write nothing more."""
        self.lease.lose()

    def release_after_step(self) -> None:
        """Hand the workflow back as pending once the current step finishes (shutdown)."""
        self._release_requested = True

    def renewed(self, lease_expires_at: datetime) -> None:
        self.lease.renewed(lease_expires_at)

    def _cancel_attempt(self) -> None:
        if self._attempt is not None:
            self._attempt.cancel()

    # -- the run ----------------------------------------------------------------------

    async def run(self) -> RunResult:
        try:
            start = TurnStart(self.writer, self.registry, self._count, self.queue_windows)
            plans, following = await start.prepare(self._write)
            self._gate = start.gate
            self._prior_attempts = start.prior_attempts
            while isinstance(following, NextStep):
                following = await self._run_step(plans, following)
        except Halted as halted:
            if not halted.result.invalid:
                self.log.info(f"workflow_{halted.result.outcome}", message=halted.result.message)
            return halted.result
        except LeaseLost:
            unrecorded = self._unrecorded
            if unrecorded is None:
                self.log.warning("lease_lost")
            else:
                self.log.warning(
                    "lease_lost",
                    discarded=f"the outcome of step {unrecorded.position} "
                    f"{unrecorded.name!r}, not recorded; the new owner decides what to rerun",
                )
            if self.metrics:
                self.metrics.leases_lost.inc()
            return RunResult(
                Outcome.LOST,
                "the lease was lost: it ran out (the database away too long), "
                "or another owner took the workflow over",
            )
        except asyncio.CancelledError:
            # Cancelled from outside (shutdown past its grace): the step is interrupted.
            # Hand the workflow back at once rather than making others wait for the lease.
            await asyncio.shield(self.writer.release_interrupted(self.db))
            raise
        except Exception as exc:
            # Whatever a row's content made go wrong here, it ends that workflow in error
            # rather than escaping: a crashed runner's workflow would be claimed, and
            # crash its next runner, again and again.
            self.log.exception("runner_failed", error=error_text(exc))
            return await self._fail_unexpectedly(exc)
        return following

    async def _fail_unexpectedly(self, failure: BaseException) -> RunResult:
        message = f"wfed could not run this workflow: {error_text(failure)}"
        try:
            return await self._finish(ends.unrunnable(message))
        except Exception as exc:  # the write itself fails: the lease expiring retries it
            self.log.warning("runner_fail_unwritten", error=error_text(exc))
            return RunResult(Outcome.ERROR, message)

    async def _write(
        self,
        body: TransactionBody,
        *,
        shared: bool = False,
        advance: Callable[[], Batchable] | None = None,
    ) -> Any:
        """Run `body` in a transaction under the lease (riding out outages). With
        `shared`, the daemon's group commit may run it with other workflows' writes;
        `advance` builds, for each attempt, the body's effect as data to batch."""

        async def attempt() -> Any:
            if shared and self.committer is not None:
                batched = advance() if advance is not None else None
                return await self.committer(self.workflow.id, body, batched)
            async with self.db.transaction() as conn:
                return await body(conn)

        return await self.lease.write(attempt)

    async def _finish(self, end: TurnEnd, *, shared: bool = False) -> RunResult:
        """End the turn with `end`, and log it once committed."""

        async def body(conn: AsyncConnection) -> RunResult:
            return await self.writer.end(conn, end)

        result: RunResult = await self._write(body, shared=shared)
        self._log_end(end, result)
        return result

    def _log_end(self, end: TurnEnd, result: RunResult) -> None:
        kind = end.event or event_kind(end.operation)
        line = self.log.error if result.outcome is Outcome.ERROR else self.log.info
        line(f"workflow_{kind}", position=end.position, reason=end.reason or result.message)

    async def _run_step(self, plans: list[StepPlan], now: NextStep) -> Next:
        """Run one attempt of one step and commit what follows from it."""
        plan = plans[now.position]
        # Bound for the attempt and what follows from it, then reset: set and reset
        # directly, at a quarter of the cost of `bound_contextvars`, which reads every
        # context variable to save what it rebinds.
        bound = structlog.contextvars.bind_contextvars(
            workflow=self.workflow.name,
            position=plan.position,
            step=plan.name,
            attempt=now.attempt,
        )
        try:
            following = await self._attempt_step(plan, now)
        finally:
            structlog.contextvars.reset_contextvars(**bound)
        self._unrecorded = None
        return following

    async def _attempt_step(self, plan: StepPlan, now: NextStep) -> Next:
        working = copy.deepcopy(now.context)
        started = time.monotonic()
        # Debug only: at thousands of steps a second, a line per step start would
        # double the log volume; `step_completed` carries the step and its duration.
        self.log.debug("step_started")
        self._count(plan.name, "started")
        self._attempt = StepAttempt(plan, working)
        self.writer.step_finished_at = None
        if self.lease.expired():  # frozen past the lease since its start committed
            self.lease.lose()
        if self._stop_reason is not None or self.lease.lost:
            self._attempt.cancel()  # control arrived between steps
        try:
            pause_prompt = await self._attempt.run()
        except AttemptCancelled:
            if self.lease.lost:
                raise LeaseLost from None
            self._count(plan.name, "stopped", started)
            return await self._stopped(plan)
        except Exception as exc:  # a step may raise anything: that is a step failure
            self.log.warning(
                "step_failed",
                error=error_text(exc),
                seconds=round(time.monotonic() - started, 3),
            )
            outcome = "failed" if now.attempt > plan.retries else "retried"
            self._count(plan.name, outcome, started)
            return await self._failed(plan, now, exc)
        finally:
            self._attempt = None
            self._unrecorded = plan
            self.writer.step_finished_at = self.clock()
        self.log.info("step_completed", seconds=round(time.monotonic() - started, 3))
        self._count(plan.name, "completed", started)
        if self._stop_reason is not None:
            # A stop that arrived as the step finished: the step's work stands.
            return await self._after_step(plan, working, Request.STOP)
        if pause_prompt is not None:
            return await self._pause_gate(plan, working, pause_prompt)
        return await self._after_step(plan, working, None)

    async def _after_step(
        self, plan: StepPlan, context: dict[str, Any], forced: Request | None
    ) -> Next:
        """Commit a completed step and, in the same transaction, start the next one —
        unless a request, the end of the workflow or a shutdown says otherwise."""
        nxt = plan.position + 1
        last = nxt >= len(self._prior_attempts)

        def ending() -> TurnEnd | None:
            if last:
                return ends.after_step(plan, Operation.COMPLETE, context)
            if forced is not None:
                return ends.after_step(plan, HONOURED[forced], context)
            closed = self._window_closed()
            if closed is not None:
                return windows.window_closed(plan, context, closed)
            if self._release_requested:
                return ends.after_step(plan, Operation.RELEASE, context)
            return None

        following = NextStep(context, nxt, 0 if last else self._prior_attempts[nxt] + 1)
        move = StepAdvance(self.writer, plan, following)
        # Only the plain advance and the plain completion have a batched form; the body
        # decides everything else.
        batched = None
        if last:
            batched = functools.partial(move.batchable_completion, lambda: not self.lease.lost)
        elif ending() is None:
            # Asked again when the batch is built: a release requested meanwhile
            # (shutdown) must hand the workflow back instead of starting a step.
            batched = functools.partial(
                move.batchable,
                lambda: (
                    not self._release_requested
                    and not self.lease.lost
                    and self._window_closed() is None
                ),
            )

        async def body(conn: AsyncConnection) -> Next:
            return await move.commit(conn, ending())

        result: Next = await self._write(body, shared=True, advance=batched)
        if isinstance(result, RunResult) and move.ended is not None:
            self._log_end(move.ended, result)
        return result

    def _window_closed(self) -> Closed | None:
        """Why the workflow may not start another step now (its windows are closed)."""
        return self._gate.closed(self.clock()) if self._gate else None

    async def _pause_gate(self, plan: StepPlan, context: dict[str, Any], prompt: str) -> Next:
        """A step asked to pause after itself: complete it and pause before the next. A
        gate that is the last step pauses too (a final sign-off): `resume` completes the
        workflow."""
        return await self._finish(ends.at_gate(plan, context, prompt))

    async def _stopped(self, plan: StepPlan) -> RunResult:
        """The step was cancelled by a stop request: step and workflow become stopped."""
        end = ends.stopped(plan, self._stop_reason or "stop requested")
        return await asyncio.shield(self._finish(end))

    async def _failed(self, plan: StepPlan, now: NextStep, failure: BaseException) -> Next:
        """A step attempt failed: retry it (now, or later with the slot released) or put
        the workflow in error. The context is the one from before the attempt."""
        error = error_text(failure)
        if now.attempt > plan.retries:
            return await self._finish(ends.failed(plan, now.attempt, error))
        delay = plan.delay_before(now.attempt)
        detail: dict[str, Any] = {"attempt": now.attempt, "delay": delay, "error": error}
        if delay > 0 or self._release_requested:
            run_after = self.clock() + timedelta(seconds=delay)
            return await self._finish(ends.retry_later(plan, run_after, detail))
        retry = self.writer.event(EventKind.STEP_RETRY, position=plan.position, **detail)
        again = NextStep(now.context, plan.position, now.attempt + 1)
        retried: NextStep = await self._write(
            functools.partial(start_again, self.writer, again, retry)
        )
        return retried
