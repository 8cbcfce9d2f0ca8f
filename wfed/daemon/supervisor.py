"""The daemon's supervisor: claims workflows into free slots and runs them, many at once.

Its side loops (poller, heartbeat, rescuer) run in one TaskGroup, so a crash in one stops
the whole daemon loudly instead of leaving it half-alive. Signal handlers only set events;
the loops wait on "stop or timeout", never on a bare sleep.

Shutdown (SIGTERM/SIGINT): stop claiming, let in-flight steps finish within
`shutdown_grace` while the heartbeat keeps their leases, hand every workflow back as
pending at once, deregister, exit 0. A second signal cancels the steps at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import structlog

from wfed import __version__
from wfed.clock import Clock, utc_now
from wfed.config import Config
from wfed.daemon import sdnotify
from wfed.daemon.committer import StepCommitter
from wfed.engine.retention import purge_finished
from wfed.engine.runner import WorkflowRunner
from wfed.metrics import STATE_COUNT_INTERVAL, Metrics
from wfed.states import Request, WorkflowState
from wfed.steps.registry import StepRegistry
from wfed.store import daemons as daemon_store
from wfed.store import migrate
from wfed.store import workflows as workflow_store
from wfed.store.database import OUTAGE_ERRORS, Database, is_outage, run_retrying
from wfed.store.rows import DaemonRow, WorkflowRow
from wfed.store.workflows import Held

log = structlog.get_logger("wfed.daemon")

OUTAGE_BACKOFF_MAX = 10.0
# Concurrent group-commit transactions: enough to keep the database busy while a batch's
# statements travel, few enough that batches stay large.
COMMITTERS = 4
DEAD_DAEMON_KEPT = timedelta(days=1)
PRUNE_INTERVAL = 3600.0


# What a database loop rides out: an outage, or a query that outlived `_query_limit`.
LOOP_ERRORS = (*OUTAGE_ERRORS, TimeoutError)


def _ridden_out(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError) or is_outage(exc)


def _describe(exc: BaseException) -> str:
    """One line for the log: the first line of the message, or the error's type."""
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


class Daemon:
    """One wfed daemon process."""

    def __init__(
        self,
        config: Config,
        *,
        registry: StepRegistry | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.config = config
        self.settings = config.daemon
        self.registry = registry or StepRegistry.from_modules(config.steps.modules)
        self.clock = clock
        self.id = self.settings.id or f"{socket.gethostname()}:{os.getpid()}"
        self.db = Database(
            config.database.url,
            config.database_password(),
            pool_size=min(self.settings.max_workflows, 20) + 2,
            lean_pool=True,
        )
        self.committer = StepCommitter(self.db)
        self.metrics = Metrics()
        self.metrics.free_slots.set(self.settings.max_workflows)
        self.runners: dict[int, WorkflowRunner] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()
        self._finished = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._signals = 0
        self._pruned_at: float | None = None
        self._beaten_at: float | None = None
        self.log = log.bind(daemon=self.id)

    # -- lifecycle --------------------------------------------------------------------

    async def run(self) -> None:
        """Run until a signal (or `request_shutdown`) and a clean shutdown."""
        try:
            await migrate.require_current(self.db)
            if self.config.metrics.listen:
                host, port = self.metrics.serve(self.config.metrics.listen)
                self.log.info("metrics_listening", address=f"{host}:{port}")
            await self._register()
            await self._prune_dead_daemons()
            self._install_signal_handlers()
            self.log.info(
                "daemon_started",
                queues=self.settings.queues,
                max_workflows=self.settings.max_workflows,
                database=self.db.display_url,
                steps=self.registry.names(),
            )
            sdnotify.notify("READY=1\nSTATUS=claiming workflows")
            async with asyncio.TaskGroup() as group:
                group.create_task(self._side_loop("poller", self._poll_loop))
                group.create_task(self._side_loop("heartbeat", self._heartbeat_loop))
                group.create_task(self._side_loop("rescuer", self._rescue_loop))
                # SQLite takes one writer at a time: a second committer would only wait.
                for _ in range(1 if self.db.backend == "sqlite" else COMMITTERS):
                    group.create_task(
                        self._side_loop("committer", lambda: self.committer.loop(self._finished))
                    )
                if self.config.metrics.listen:
                    group.create_task(self._side_loop("state_counter", self._count_loop))
                if self.config.retention.purge_after:
                    group.create_task(self._side_loop("retention", self._retention_loop))
                await self._stopping.wait()
                await self._drain()
                self._finished.set()
        finally:
            self._remove_signal_handlers()
            with contextlib.suppress(Exception):
                await asyncio.shield(self._deregister())
            await self.db.dispose()
            self.metrics.close()
            self.log.info(
                "daemon_stopped",
                step_batches=self.committer.batches,
                step_transitions=self.committer.bodies,
            )

    def request_shutdown(self) -> None:
        """Begin a graceful shutdown; a second call cancels running steps at once."""
        self._signals += 1
        if self._signals == 1:
            self.log.info("shutdown_requested", grace=self.settings.shutdown_grace)
            sdnotify.notify("STOPPING=1")
            self._stopping.set()
            for runner in self.runners.values():
                runner.release_after_step()
        else:
            self.log.warning("shutdown_forced", running=len(self._tasks))
            for task in self._tasks.values():
                task.cancel()

    @property
    def _query_limit(self) -> float | None:
        """How long a claim or heartbeat may take. One that hangs (packets silently
        dropped, no error) must not outlive the leases it is meant to renew, nor stall
        the poller. SQLite has no network; there a slow one is waiting its turn for the
        write lock, and cutting it short would only hurt."""
        return None if self.db.backend == "sqlite" else self.settings.lease / 2

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_shutdown)

    def _remove_signal_handlers(self) -> None:
        with contextlib.suppress(RuntimeError):
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    def _daemon_row(self, now: datetime) -> DaemonRow:
        return DaemonRow(
            id=self.id,
            host=socket.gethostname(),
            pid=os.getpid(),
            version=__version__,
            queues=list(self.settings.queues),
            max_workflows=self.settings.max_workflows,
            lease_seconds=round(self.settings.lease),
            started_at=now,
            heartbeat_at=now,
        )

    async def _register(self) -> None:
        async with self.db.transaction() as conn:
            await daemon_store.daemon_register(conn, self._daemon_row(self.clock()))
        self._beaten_at = asyncio.get_running_loop().time()

    async def _deregister(self) -> None:
        async with self.db.transaction() as conn:
            await daemon_store.daemon_deregister(conn, self.id)

    async def _drain(self) -> None:
        """Shutdown: wait for in-flight steps up to the grace, then cancel them.

        A claim that was in flight when the signal came may still add a runner (it
        releases after its first step), so this waits until none is left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_grace
        if self._tasks:
            self.log.info("draining", running=len(self._tasks))
        while self._tasks:
            remaining = deadline - loop.time()
            tasks = list(self._tasks.values())
            if remaining <= 0:
                self.log.warning("grace_expired", cancelled=len(tasks))
                for task in tasks:
                    task.cancel()
            await asyncio.wait(tasks, timeout=max(remaining, 0) or None)

    # -- loops ------------------------------------------------------------------------

    async def _side_loop(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        try:
            await body()
        except Exception:
            self.log.exception("side_loop_crashed", loop=name)
            raise

    async def _wait(self, event: asyncio.Event, seconds: float) -> bool:
        """Wait for `event` at most `seconds`; returns whether it is set."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await event.wait()
        return event.is_set()

    async def _outage(self, what: str, exc: BaseException, delay: float) -> float:
        """Log a database problem in a loop and wait before the next try."""
        self.log.warning(f"{what}_failed", error=_describe(exc), retry_in=delay)
        self.metrics.database_errors.labels(type(exc).__name__).inc()
        await self._wait(self._finished, delay)
        return min(delay * 2, OUTAGE_BACKOFF_MAX)

    async def _poll_loop(self) -> None:
        delay = self.settings.poll_interval
        # Once a claim found nothing, each poll first asks whether there is anything to
        # claim (one autocommit read) instead of running the locking claim transaction:
        # an idle daemon costs its database one statement per poll.
        idle = False
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            started = loop.time()
            free = self.settings.max_workflows - len(self._tasks)
            if free <= 0:
                # Full: the next poll is when a slot frees up.
                self._slot_freed.clear()
                await self._wait_any(self._slot_freed, self.settings.poll_interval)
                continue
            try:
                async with asyncio.timeout(self._query_limit):
                    claimed = []
                    if not idle or await self._claimable(expired=False):
                        claimed = await self._claim(free, expired=False)
            except LOOP_ERRORS as exc:
                if not _ridden_out(exc):
                    raise
                delay = await self._outage("claim", exc, delay)
                continue
            delay = self.settings.poll_interval
            idle = not claimed
            if len(claimed) == free:
                continue  # there may be more: claim again at once
            self._slot_freed.clear()
            # Polls start every poll_interval, however long the last one took: a new
            # workflow waits poll_interval / 2 on average, not half of a longer cycle.
            remaining = started + self.settings.poll_interval - loop.time()
            await self._wait_any(self._slot_freed, max(remaining, 0.0))

    async def _wait_any(self, event: asyncio.Event, seconds: float) -> None:
        """Wait for `event`, shutdown, or `seconds`."""
        stop = asyncio.ensure_future(self._stopping.wait())
        other = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait({stop, other}, timeout=seconds, return_when="FIRST_COMPLETED")
        finally:
            stop.cancel()
            other.cancel()

    async def _rescue_loop(self) -> None:
        """Take over workflows whose owner's lease expired (a dead or stuck daemon)."""
        interval = max(self.settings.poll_interval, self.settings.lease / 4)
        delay = interval
        while not await self._wait(self._stopping, delay):
            free = self.settings.max_workflows - len(self._tasks)
            if free <= 0:
                continue
            try:
                async with asyncio.timeout(self._query_limit):
                    rescued = []
                    if await self._claimable(expired=True):
                        rescued = await self._claim(free, expired=True)
            except LOOP_ERRORS as exc:
                if not _ridden_out(exc):
                    raise
                delay = await self._outage("rescue", exc, delay)
                continue
            delay = interval
            if rescued:
                self.log.warning("workflows_recovered", count=len(rescued))
            await self._prune_dead_daemons()

    async def _claimable(self, *, expired: bool) -> bool:
        async with self.db.autocommit() as conn:
            return await workflow_store.workflows_claimable(
                conn, self.settings.queues, self.clock(), expired=expired
            )

    async def _claim(self, limit: int, *, expired: bool) -> list[WorkflowRow]:
        # A rescue leaves alone the workflows this daemon's runners still hold: such a
        # runner must give its workflow up (lease expired on its own clock) first.
        claim = (
            functools.partial(workflow_store.workflow_claim_expired, exclude=list(self.runners))
            if expired
            else workflow_store.workflow_claim_pending
        )

        async def attempt() -> list[WorkflowRow]:
            async with self.db.transaction() as conn:
                return await claim(
                    conn,
                    owner=self.id,
                    queues=self.settings.queues,
                    limit=limit,
                    now=self.clock(),
                    lease=self.settings.lease,
                )

        with self.metrics.claim_seconds.time():
            rows: list[WorkflowRow] = await run_retrying(attempt)
        self.metrics.claim_batch.observe(len(rows))
        for row in rows:
            self._start(row)
        if rows:
            self.log.info("workflows_claimed", count=len(rows), expired=expired)
        return rows

    def _start(self, row: WorkflowRow) -> None:
        runner = WorkflowRunner(
            self.db,
            self.registry,
            row,
            actor=self.id,
            lease_seconds=self.settings.lease,
            clock=self.clock,
            metrics=self.metrics,
            committer=self.committer.run,
        )
        if self._stopping.is_set():
            runner.release_after_step()
        self.runners[row.id] = runner
        self._tasks[row.id] = asyncio.create_task(self._run_workflow(runner))
        self._update_slots()

    async def _run_workflow(self, runner: WorkflowRunner) -> None:
        workflow_id = runner.workflow.id
        try:
            result = await runner.run()
            self.log.info(
                "runner_finished",
                workflow=runner.workflow.name,
                outcome=result.outcome.value,
                message=result.message,
            )
        except Exception:
            # A runner bug must not take the daemon down with it; the lease expiring
            # hands the workflow to a rescuer.
            self.log.exception("runner_crashed", workflow=runner.workflow.name)
        finally:
            self.runners.pop(workflow_id, None)
            self._tasks.pop(workflow_id, None)
            self._update_slots()
            self._slot_freed.set()

    async def _heartbeat_loop(self) -> None:
        """Every `control_interval`: refresh this daemon's row, renew all its leases in one
        UPDATE, and pass stop requests and lost leases on to the runners."""
        interval = self.settings.control_interval
        watchdog = sdnotify.watchdog_interval()
        if watchdog is not None:
            interval = min(interval, watchdog)
        delay = interval
        limit = self._query_limit
        while not await self._wait(self._finished, delay):
            if watchdog is not None:
                # The watchdog guards against a wedged event loop, not a database away:
                # outages are ridden out (see docs/operations.md).
                sdnotify.notify("WATCHDOG=1")
            try:
                async with asyncio.timeout(limit):
                    await self._beat()
            except LOOP_ERRORS as exc:
                if not _ridden_out(exc):
                    raise
                # Back off, but look at the leases often enough to drop an expired one
                # soon after it ends (see the finally below).
                delay = min(await self._outage("heartbeat", exc, delay), self.settings.lease / 4)
                continue
            finally:
                # Whatever the database said, a lease past its end on this daemon's own
                # clock is lost: its runner must stop before another owner starts.
                self._lose_expired()
            delay = interval

    async def _beat(self) -> None:
        now = self.clock()
        owned_ids = list(self.runners)
        if not owned_ids:
            await self._idle_beat(now)
            return

        async def attempt() -> dict[int, Held]:
            async with self.db.transaction() as conn:
                if not await daemon_store.daemon_heartbeat(conn, self.id, now):
                    # Our row is gone (pruned while we looked dead): register again.
                    self.log.warning("daemon_reregistered")
                    await daemon_store.daemon_register(conn, self._daemon_row(now))
                return await workflow_store.workflow_renew_owned(
                    conn, owner=self.id, ids=owned_ids, now=now, lease=self.settings.lease
                )

        owned: dict[int, Held] = await run_retrying(attempt)
        self._beaten_at = asyncio.get_running_loop().time()
        expires = now + timedelta(seconds=self.settings.lease)
        for workflow_id in owned_ids:
            runner = self.runners.get(workflow_id)
            if runner is None:
                continue
            held = owned.get(workflow_id)
            if held is None or held.fence != runner.fence:
                runner.lose()
                continue
            if held.renewed:
                runner.renewed(expires)
                self.metrics.lease_renewals.inc()
            if held.request is Request.STOP:
                runner.stop("stop requested")

    async def _idle_beat(self, now: datetime) -> None:
        """With no workflows, only the daemon's row needs refreshing, and only often
        enough to look alive (its lease) — every lease/4, one autocommit UPDATE."""
        loop = asyncio.get_running_loop()
        interval = max(self.settings.control_interval, self.settings.lease / 4)
        if self._beaten_at is not None and loop.time() - self._beaten_at < interval:
            return
        async with self.db.autocommit() as conn:
            present = await daemon_store.daemon_heartbeat(conn, self.id, now)
        if not present:
            # Our row is gone (pruned while we looked dead): register again.
            self.log.warning("daemon_reregistered")
            await self._register()
        self._beaten_at = loop.time()

    def _lose_expired(self) -> None:
        """Runners whose lease ran out while the database was away have lost it."""
        now = self.clock()
        for runner in list(self.runners.values()):
            if now >= runner.lease_expires_at:
                runner.lose()

    async def _prune_dead_daemons(self) -> None:
        """Drop rows of daemons silent for a day: `wfectl daemons` shows a dead daemon
        for that long, then it is history (its workflows were recovered long before).
        Checked at start-up and then hourly, not on every rescue: idle cost matters."""
        loop = asyncio.get_running_loop()
        if self._pruned_at is not None and loop.time() - self._pruned_at < PRUNE_INTERVAL:
            return
        self._pruned_at = loop.time()
        try:
            async with self.db.transaction() as conn:
                pruned = await daemon_store.daemons_prune(conn, self.clock() - DEAD_DAEMON_KEPT)
        except OUTAGE_ERRORS as exc:
            self.log.warning("daemon_prune_failed", error=_describe(exc))
            return
        if pruned:
            self.log.info("dead_daemons_pruned", count=pruned)

    def _update_slots(self) -> None:
        self.metrics.running.set(len(self._tasks))
        self.metrics.free_slots.set(max(self.settings.max_workflows - len(self._tasks), 0))

    async def _count_loop(self) -> None:
        """Count workflows by state for the metrics, now and then (not per scrape)."""
        while True:
            try:
                async with self.db.transaction() as conn:
                    counts = await workflow_store.workflow_counts(conn)
            except OUTAGE_ERRORS:
                counts = {}  # counted again next time; metrics are not worth a crash
            for state in WorkflowState:
                if counts:
                    self.metrics.workflows.labels(state.value).set(counts.get(state.value, 0))
            if await self._wait(self._finished, STATE_COUNT_INTERVAL):
                return

    async def _retention_loop(self) -> None:
        """Purge old finished workflows every `[retention] interval`, when this daemon is
        the eldest live one (so one daemon at a time does it)."""
        retention = self.config.retention
        age = retention.purge_age()
        if age is None:
            return
        while not await self._wait(self._stopping, retention.interval):
            since = self.clock() - timedelta(seconds=self.settings.lease)
            try:
                async with self.db.transaction() as conn:
                    eldest = await daemon_store.daemon_is_eldest_live(conn, self.id, since)
                if eldest:
                    await purge_finished(
                        self.db,
                        age,
                        states=retention.states,
                        events=retention.purge_events,
                        actor=self.id,
                        clock=self.clock,
                    )
            except OUTAGE_ERRORS as exc:
                # An outage, or a privilege the daemon's account lacks: retention is a
                # chore, never a reason to stop running workflows.
                self.log.warning("retention_failed", error=_describe(exc))
