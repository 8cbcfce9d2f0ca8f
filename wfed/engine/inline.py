"""`Engine.run`: claim one workflow by name and run it in this process.

A script or a test runs the workflow with the same runner the daemon uses. What the
daemon's heartbeat does for its runners, a keeper task does here for the one: it renews
the lease every control interval and passes a stop request on to the runner.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from wfed.clock import Clock
from wfed.engine.lease import error_text
from wfed.engine.runner import WorkflowRunner
from wfed.engine.turn import Outcome, RunResult
from wfed.engine.views import Workflow
from wfed.errors import (
    ErrorState,
    InvalidDefinition,
    LeaseLost,
    StepError,
    WorkflowHalted,
    WorkflowLocked,
    WorkflowNotFound,
)
from wfed.logging import get_logger
from wfed.states import Request, WorkflowState
from wfed.steps.registry import StepRegistry
from wfed.store import claims
from wfed.store import locks as lock_store
from wfed.store import workflows as workflow_store
from wfed.store.database import OUTAGE_ERRORS, Database, is_outage
from wfed.store.guards import lease_holds
from wfed.store.lock_keys import parse_lock_keys
from wfed.store.locks import LimitOf, one_slot
from wfed.store.rows import WorkflowRow

log = get_logger("wfed.engine")

Sleep = Callable[[float], Awaitable[None]]


class InlineRun:
    """Runs workflows by name in this process, for `Engine.run`."""

    def __init__(
        self,
        db: Database,
        registry: StepRegistry,
        *,
        actor: str,
        lease: float,
        control_interval: float,
        clock: Clock,
        get: Callable[[str], Awaitable[Workflow]],
        sleep: Sleep = asyncio.sleep,
        limit_of: LimitOf = one_slot,
    ) -> None:
        self.limit_of = limit_of
        self.db = db
        self.registry = registry
        self.actor = actor
        self.lease = lease
        self.control_interval = control_interval
        self.clock = clock
        self.get = get
        self.sleep = sleep

    async def run(self, name: str) -> None:
        """Run `name` until it completes (returns) or halts (raises, see `Engine.run`)."""
        while True:
            now = self.clock()
            async with self.db.transaction() as conn:
                row = await workflow_store.workflow_get(conn, name)
                if row is None:
                    raise WorkflowNotFound(f"no workflow named {name!r}")
                if row.state is WorkflowState.COMPLETED:
                    return
                _check_runnable(row, now)
                not_before = _not_before(row, now)
                if not_before is None:
                    claimed = await claims.workflow_claim_by_id(
                        conn, row.id, owner=self.actor, now=now, lease=self.lease
                    )
                    if claimed and row.state is WorkflowState.PENDING:
                        # Raising rolls the claim back: it takes its keys or nothing.
                        await self._take_keys(conn, row, now)
                    fresh = await workflow_store.workflow_get_by_id(conn, row.id)
            if not_before is not None:
                # Pending, but not runnable before `run_after` (set at creation, or a
                # retry delay): wait for it here, then claim it.
                await self.sleep(not_before)
                continue
            if fresh is None:
                raise WorkflowNotFound(f"no workflow named {name!r}")
            if not claimed:
                _check_runnable(fresh, self.clock())
                raise WorkflowLocked(f"workflow {name!r} changed state meanwhile; try again")
            runner = WorkflowRunner(
                self.db,
                self.registry,
                fresh,
                actor=self.actor,
                lease_seconds=self.lease,
                clock=self.clock,
            )
            result = await self._run_kept(runner)
            if result.outcome is Outcome.RELEASED and result.run_after is not None:
                continue  # a retry delay: waited for at the top
            await self._finish(name, result)
            return

    async def _take_keys(self, conn: AsyncConnection, row: WorkflowRow, now: datetime) -> None:
        """Take the concurrency keys of a workflow claimed from pending, all of them, or
        raise WorkflowLocked naming a full key and its holders (an unreadable `locks`
        value takes nothing: the runner sends the workflow to error)."""
        try:
            keys = parse_lock_keys(row.locks)
        except InvalidDefinition:
            return
        if not keys:
            return
        full = await lock_store.locks_take_all(conn, row.id, keys, self.limit_of, now)
        if full is None:
            return
        holders = await lock_store.locks_held(conn, keys=[full])
        names = ", ".join(f"{h.workflow_name} ({h.state.value})" for h in holders) or "nobody"
        raise WorkflowLocked(
            f"workflow {row.name!r} waits for concurrency key {full!r}, at its limit "
            f"of {self.limit_of(full)}: held by {names}"
        )

    async def _run_kept(self, runner: WorkflowRunner) -> RunResult:
        done = asyncio.Event()
        keeper = asyncio.create_task(self._keep(runner, done))
        try:
            return await runner.run()
        finally:
            done.set()
            await keeper

    async def _keep(self, runner: WorkflowRunner, done: asyncio.Event) -> None:
        """Renew the runner's lease and pass on a stop request until `done`."""
        interval = min(self.control_interval, self.lease / 3)
        while not await _wait(done, interval):
            try:
                request = await runner.lease.renew(self.db)
            except LeaseLost:
                runner.lose()
                return
            except OUTAGE_ERRORS as exc:
                if not is_outage(exc):
                    runner.lose()
                    raise
                # The runner's writes ride the outage out; a lease past its end on
                # this process's clock may have been taken over by now.
                log.warning(
                    "lease_renewal_failed", workflow=runner.workflow.name, error=error_text(exc)
                )
                if runner.lease.expired():
                    runner.lose()
                    return
                continue
            if request is Request.STOP:
                runner.stop("stop requested")

    async def _finish(self, name: str, result: RunResult) -> None:
        if result.outcome is Outcome.ERROR:
            if result.invalid:
                raise InvalidDefinition(f"workflow {name!r}: {result.message}")
            raise StepError(f"workflow {name!r} is now in error: {result.message}")
        if result.outcome in {Outcome.PAUSED, Outcome.STOPPED}:
            workflow = await self.get(name)
            why = f": {workflow.halt_reason}" if workflow.halt_reason else ""
            raise WorkflowHalted(f"workflow {name!r} is {workflow.state.value}{why}")
        if result.outcome is Outcome.LOST:
            raise WorkflowLocked(f"workflow {name!r}: {result.message}")


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """Wait for `event` at most `seconds`; returns whether it is set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()


def _check_runnable(row: WorkflowRow, now: datetime) -> None:
    """Refuse to run a workflow that is halted, in error or held by a live owner."""
    name, state, lease_expires_at = row.name, row.state, row.lease_expires_at
    if state is WorkflowState.ERROR:
        raise ErrorState(
            f"workflow {name!r} is in error ({row.last_error}); retry, skip or delete it first"
        )
    if state in {WorkflowState.PAUSED, WorkflowState.STOPPED}:
        raise WorkflowHalted(f"workflow {name!r} is {state.value}")
    if state is WorkflowState.RUNNING and lease_holds(lease_expires_at, now):
        raise WorkflowLocked(f"workflow {name!r} is running, owned by {row.claimed_by}")


def _not_before(row: WorkflowRow, now: datetime) -> float | None:
    """Seconds until a pending workflow's `run_after`, or None if it may run now."""
    if row.state is not WorkflowState.PENDING or row.run_after is None:
        return None
    wait = (row.run_after - now).total_seconds()
    return wait if wait > 0 else None
