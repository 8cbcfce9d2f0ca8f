"""The daemon's chores, none of them a reason to stop running workflows: forgetting daemons
long dead, counting workflows by state for the metrics, and retention. Each has a
`run_once()` saying what it did, and a loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta

import structlog

from wfed.clock import Clock, utc_now
from wfed.config import RetentionConfig
from wfed.daemon.loops import describe, wait_for
from wfed.engine.retention import purge_finished
from wfed.metrics import STATE_COUNT_INTERVAL, Metrics
from wfed.states import WorkflowState
from wfed.store import daemons as daemon_store
from wfed.store import workflows as workflow_store
from wfed.store.database import OUTAGE_ERRORS, Database

log = structlog.get_logger("wfed.daemon")

DEAD_DAEMON_KEPT = timedelta(days=1)
PRUNE_INTERVAL = 3600.0


class DaemonPruner:
    """Drops rows of daemons silent for a day: `wfectl daemons` shows a dead daemon for
    that long, then it is history (its workflows were recovered long before). At start-up
    and then hourly, not more: idle cost matters."""

    def __init__(
        self,
        db: Database,
        *,
        daemon_id: str,
        clock: Clock = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        interval: float = PRUNE_INTERVAL,
    ) -> None:
        self.db = db
        self.clock = clock
        self.monotonic = monotonic
        self.interval = interval
        self.log = log.bind(daemon=daemon_id)
        self._pruned_at: float | None = None

    async def run_once(self) -> int | None:
        """Prune, if an interval passed since the last time: how many rows went, or None
        when it was not time yet or the database could not be asked."""
        if self._pruned_at is not None and self.monotonic() - self._pruned_at < self.interval:
            return None
        self._pruned_at = self.monotonic()
        try:
            async with self.db.transaction() as conn:
                pruned = await daemon_store.daemons_prune(conn, self.clock() - DEAD_DAEMON_KEPT)
        except OUTAGE_ERRORS as exc:
            self.log.warning("daemon_prune_failed", error=describe(exc))
            return None
        if pruned:
            self.log.info("dead_daemons_pruned", count=pruned)
        return pruned

    def _due_in(self) -> float:
        if self._pruned_at is None:
            return 0.0
        return max(self._pruned_at + self.interval - self.monotonic(), 0.0)

    async def run(self, stopping: asyncio.Event) -> None:
        while not await wait_for(stopping, self._due_in()):
            await self.run_once()


class StateCounter:
    """Counts workflows by state for the metrics, now and then (not per scrape)."""

    def __init__(self, db: Database, metrics: Metrics) -> None:
        self.db = db
        self.metrics = metrics

    async def run_once(self) -> dict[str, int]:
        """Count and set the gauges: the counts by state, or {} when the database could not
        be asked (counted again next time; metrics are not worth a crash)."""
        try:
            async with self.db.transaction() as conn:
                counts = await workflow_store.workflow_counts(conn)
        except OUTAGE_ERRORS:
            return {}
        for state in WorkflowState:
            if counts:
                self.metrics.workflows.labels(state.value).set(counts.get(state.value, 0))
        return counts

    async def run(self, finished: asyncio.Event) -> None:
        while True:
            await self.run_once()
            if await wait_for(finished, STATE_COUNT_INTERVAL):
                return


class Retention:
    """Purges old finished workflows every `[retention] interval`, when this daemon is the
    eldest live one (so one daemon at a time does it)."""

    def __init__(
        self,
        db: Database,
        config: RetentionConfig,
        *,
        daemon_id: str,
        lease: float,
        clock: Clock = utc_now,
    ) -> None:
        self.db = db
        self.config = config
        self.daemon_id = daemon_id
        self.lease = lease
        self.clock = clock
        self.log = log.bind(daemon=daemon_id)

    async def run_once(self) -> int | None:
        """Purge if this daemon is the one to: how many workflows went, or None when it is
        not (or retention is off, or the database refused)."""
        age = self.config.purge_age()
        if age is None:
            return None
        since = self.clock() - timedelta(seconds=self.lease)
        try:
            async with self.db.transaction() as conn:
                eldest = await daemon_store.daemon_is_eldest_live(conn, self.daemon_id, since)
            if not eldest:
                return None
            return await purge_finished(
                self.db,
                age,
                states=self.config.states,
                events=self.config.purge_events,
                actor=self.daemon_id,
                clock=self.clock,
            )
        except OUTAGE_ERRORS as exc:
            # An outage, or a privilege the daemon's account lacks: retention is a chore,
            # never a reason to stop running workflows.
            self.log.warning("retention_failed", error=describe(exc))
            return None

    async def run(self, stopping: asyncio.Event) -> None:
        if self.config.purge_age() is None:
            return
        while not await wait_for(stopping, self.config.interval):
            await self.run_once()
