"""The daemon's supervisor: its lifecycle, its signals, and the runners of the workflows
it claimed, many at once.

The services do the work, each in a file of its own with a `run_once()`: the claimer
(`claimer.py`), the heartbeat (`heartbeat.py`) and the chores (`chores.py`). Their loops,
and the committers', run in one TaskGroup, so a crash in one stops the whole daemon loudly
instead of leaving it half-alive. Signal handlers only set events; the loops wait on "stop
or timeout", never on a bare sleep.

Shutdown (SIGTERM/SIGINT): stop claiming, let in-flight steps finish within
`shutdown_grace` while the heartbeat keeps their leases, hand every workflow back as
pending at once, deregister, exit 0. A second signal cancels the steps at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable

import structlog

from wfed import __version__
from wfed.clock import Clock, utc_now
from wfed.config import Config
from wfed.daemon import sdnotify, signals
from wfed.daemon.chores import DaemonPruner, Retention, StateCounter
from wfed.daemon.claimer import Claimer
from wfed.daemon.committer import StepCommitter
from wfed.daemon.heartbeat import Heartbeat
from wfed.daemon.loops import wait_for
from wfed.daemon.notifier import Notifier
from wfed.daemon.runners import Runners
from wfed.daemon.scheduler import Scheduler
from wfed.daemon.wakeups import Wakeups
from wfed.daemon.window_resumer import WindowResumer
from wfed.engine import output
from wfed.engine.runner import WorkflowRunner
from wfed.engine.turn import Outcome
from wfed.errors import DatabaseUnavailable, WfedError
from wfed.metrics import Metrics
from wfed.steps.registry import StepRegistry
from wfed.store import daemons as daemon_store
from wfed.store import migrate
from wfed.store.database import (
    DATABASE_ERRORS,
    Database,
    database_error,
    is_unreachable,
)
from wfed.store.rows import DaemonRow, WorkflowRow

log = structlog.get_logger("wfed.daemon")

# Concurrent group-commit transactions: enough to keep the database busy while a batch's
# statements travel, few enough that batches stay large.
COMMITTERS = 4
START_RETRY_FIRST = 1.0
START_RETRY_MAX = 10.0
"""The backoff of a start-up waiting for its database, in seconds."""
# How long shutdown waits for live step output still being written.
OUTPUT_SETTLE_SECONDS = 5.0
# Turns whose end records an event a webhook may want.
NOTIFIED_OUTCOMES = frozenset({Outcome.COMPLETED, Outcome.ERROR, Outcome.PAUSED, Outcome.STOPPED})


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
        self.settings = settings = config.daemon
        self.registry = registry or StepRegistry.from_modules(
            config.steps.modules, paths=config.steps.paths
        )
        self.clock = clock
        self.id = settings.id or f"{socket.gethostname()}:{os.getpid()}"
        self.db = db = Database(
            config.database.url,
            config.database_password(),
            pool_size=min(settings.max_workflows, 20) + 2,
            lean_pool=True,
            # No transaction of a frozen daemon may hold its rows past their leases.
            idle_transaction_timeout=settings.lease / 2,
        )
        self.committer = StepCommitter(db)
        self.metrics = metrics = Metrics()
        self.runners = Runners(settings.max_workflows, metrics)
        self._stopping = asyncio.Event()
        self._finished = asyncio.Event()
        self._signals = 0
        self.log = log.bind(daemon=self.id)
        now = clock()
        row = DaemonRow(
            id=self.id,
            host=socket.gethostname(),
            pid=os.getpid(),
            version=__version__,
            queues=list(settings.queues),
            max_workflows=settings.max_workflows,
            lease_seconds=round(settings.lease),
            started_at=now,
            heartbeat_at=now,
        )
        self.queue_windows = config.windows.by_queue()
        self.heartbeat = Heartbeat(
            db, settings, row, self.runners.by_id, metrics=metrics, clock=clock
        )
        self.claimer = Claimer(
            db,
            settings,
            daemon_id=self.id,
            slots=self.runners,
            start=self._start,
            metrics=metrics,
            clock=clock,
            locks=config.locks,
            queue_windows=self.queue_windows,
        )
        # PostgreSQL pushes: new work and requests wake the claimer and the heartbeat.
        self.wakeups = Wakeups(
            db,
            settings.queues,
            wake_claimer=self.claimer.wake,
            wake_heartbeat=self.heartbeat.wake,
            runs=lambda workflow_id: workflow_id in self.runners.by_id,
        )
        self.pruner = DaemonPruner(db, daemon_id=self.id, clock=clock)
        self.window_resumer = WindowResumer(
            db, list(settings.queues), self.queue_windows, daemon_id=self.id, clock=clock
        )
        self.counter = StateCounter(db, metrics)
        self.retention = Retention(
            db, config.retention, daemon_id=self.id, lease=settings.lease, clock=clock
        )
        self.notifier = (
            Notifier(
                db,
                config.notify,
                daemon_id=self.id,
                metrics=metrics,
                clock=clock,
                claim_margin=settings.lease,
            )
            if config.notify.webhooks
            else None
        )
        self.scheduler = Scheduler(
            db,
            self.registry,
            config.schedules,
            daemon_id=self.id,
            interval=settings.poll_interval,
            lease=settings.lease,
            metrics=metrics,
            clock=clock,
        )

    # -- lifecycle --------------------------------------------------------------------

    async def _start_up(self) -> bool:
        """Check the schema, register, prune dead daemons' rows. A database that cannot be
        reached (down, restarting, its connection lost, no answer) is waited for, as
        the running daemon rides out an outage; systemd is told to keep waiting. Any other
        database error (a login refused, a privilege or the schema missing) ends the
        start-up at once, said as wfectl says it. False if a shutdown was asked for while
        waiting."""
        delay = START_RETRY_FIRST
        while True:
            try:
                await migrate.require_current(self.db)
                await self.heartbeat.register()
                await self.pruner.run_once()
            except (*DATABASE_ERRORS, DatabaseUnavailable) as exc:
                # The store says an outage met inside a transaction as DatabaseUnavailable,
                # the driver's error as its cause; elsewhere the driver's error comes as is.
                explained: WfedError
                if isinstance(exc, DatabaseUnavailable):
                    explained, cause = exc, exc.__cause__
                else:
                    explained, cause = database_error(exc, self.db.display_url), exc
                if cause is None or not is_unreachable(cause):
                    raise explained from None
                self.log.warning("database_unreachable", error=str(explained), retry_in=delay)
                sdnotify.notify(
                    "STATUS=waiting for the database\n"
                    f"EXTEND_TIMEOUT_USEC={int(2 * delay * 1_000_000)}"
                )
                await wait_for(self._stopping, delay)
                if self._stopping.is_set():
                    return False
                delay = min(delay * 2, START_RETRY_MAX)
            else:
                return True

    async def run(self) -> None:
        """Run until a signal (or `request_shutdown`) and a clean shutdown."""
        try:
            # Before anything that may wait: a SIGTERM while the database is away at
            # start-up stops the daemon cleanly rather than killing it.
            signals.install(self.request_shutdown)
            if self.config.metrics.listen:
                host, port = self.metrics.serve(self.config.metrics.listen)
                self.log.info("metrics_listening", address=f"{host}:{port}")
            if not await self._start_up():
                return  # asked to stop while waiting for the database
            self.log.info(
                "daemon_started",
                queues=self.settings.queues,
                max_workflows=self.settings.max_workflows,
                database=self.db.display_url,
                steps=self.registry.names(),
            )
            sdnotify.notify("READY=1\nSTATUS=claiming workflows")
            async with asyncio.TaskGroup() as group:
                loops: dict[str, Awaitable[None]] = {
                    "claimer": self.claimer.run(self._stopping),
                    "heartbeat": self.heartbeat.run(self._finished),
                    "pruner": self.pruner.run(self._stopping),
                    "window_resumer": self.window_resumer.run(self._stopping),
                    "scheduler": self.scheduler.run(self._stopping),
                }
                if self.db.backend == "postgresql":
                    loops["wakeups"] = self.wakeups.run(self._stopping)
                if self.config.metrics.listen:
                    loops["state_counter"] = self.counter.run(self._finished)
                if self.config.retention.purge_after:
                    loops["retention"] = self.retention.run(self._stopping)
                if self.notifier is not None:
                    loops["notifier"] = self.notifier.run(self._finished)
                for name, body in loops.items():
                    group.create_task(self._side_loop(name, body))
                # SQLite takes one writer at a time: a second committer would only wait.
                for _ in range(1 if self.db.backend == "sqlite" else COMMITTERS):
                    group.create_task(
                        self._side_loop("committer", self.committer.loop(self._finished))
                    )
                await self._stopping.wait()
                await self._drain()
                self._finished.set()
        except WfedError as exc:
            # Logged here, so that it comes before `daemon_stopped`.
            self.log.error("daemon_failed", error=str(exc))
            raise
        finally:
            signals.remove()
            with contextlib.suppress(Exception):
                await asyncio.shield(self._deregister())
                await output.settle(OUTPUT_SETTLE_SECONDS)
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
            for runner in self.runners.by_id.values():
                runner.release_after_step()
        else:
            self.log.warning("shutdown_forced", running=len(self.runners.tasks))
            for task in self.runners.tasks.values():
                task.cancel()

    async def _deregister(self) -> None:
        async with self.db.transaction() as conn:
            await daemon_store.daemon_deregister(conn, self.id)

    async def _drain(self) -> None:
        """Shutdown: wait for in-flight steps up to the grace, then cancel them.

        A claim that was in flight when the signal came may still add a runner (it
        releases after its first step), so this waits until none is left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_grace
        if self.runners.tasks:
            self.log.info("draining", running=len(self.runners.tasks))
        while self.runners.tasks:
            remaining = deadline - loop.time()
            tasks = list(self.runners.tasks.values())
            if remaining <= 0:
                self.log.warning("grace_expired", cancelled=len(tasks))
                for task in tasks:
                    task.cancel()
            await asyncio.wait(tasks, timeout=max(remaining, 0) or None)

    async def _side_loop(self, name: str, body: Awaitable[None]) -> None:
        try:
            await body
        except Exception:
            self.log.exception("side_loop_crashed", loop=name)
            raise

    # -- runners ----------------------------------------------------------------------

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
            queue_windows=self.queue_windows,
        )
        if self._stopping.is_set():
            runner.release_after_step()
        self.runners.add(runner, asyncio.create_task(self._run_workflow(runner)))

    async def _run_workflow(self, runner: WorkflowRunner) -> None:
        workflow_id = runner.workflow.id
        try:
            with output.recording(self.db, runner.workflow.name, self.config.output.max_bytes):
                result = await runner.run()
            if self.notifier is not None and result.outcome in NOTIFIED_OUTCOMES:
                # The turn's end is committed: its events are the notifier's to send now.
                self.notifier.wake()
            self.log.info(
                "runner_finished",
                workflow=runner.workflow.name,
                outcome=result.outcome.value,
                message=result.message,
            )
        except Exception:
            # A runner bug must not take the daemon down with it; the lease expiring
            # hands the workflow to another daemon's claimer.
            self.log.exception("runner_crashed", workflow=runner.workflow.name)
        finally:
            self.runners.remove(workflow_id)
