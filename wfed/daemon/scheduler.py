"""The scheduler: every daemon fires the schedules that are due (docs/schedules.md).

Each poll is one indexed query for the next schedules, then a transaction per due tick
(`wfed.engine.schedule_firing`). Every daemon of a fleet runs one; the database, not
this loop, makes each tick enqueue once. A database outage is logged and waited out
with backoff, like the claimer's.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog

from wfed.clock import Clock, utc_now
from wfed.config import SchedulesConfig
from wfed.daemon.loops import (
    LOOP_ERRORS,
    OUTAGE_BACKOFF_MAX,
    describe,
    query_limit,
    ridden_out,
    ride_out,
    wait_for,
)
from wfed.engine.schedule_firing import Fired, ScheduleFirer
from wfed.metrics import Metrics
from wfed.steps.registry import StepRegistry
from wfed.store.database import Database

log = structlog.get_logger("wfed.daemon")

MIN_INTERVAL = 1.0
"""Seconds between polls at least, whatever `[daemon] poll_interval` says."""
RECHECK = 15.0
"""Seconds between polls at most: a schedule added, resumed or changed by another
process is seen within this (its first tick, if sooner, fires that much late)."""


class Scheduler:
    """Fires due schedules when their ticks come (polling at least every `interval`
    seconds, at most every RECHECK) until stopped."""

    def __init__(
        self,
        db: Database,
        registry: StepRegistry,
        config: SchedulesConfig,
        *,
        daemon_id: str,
        interval: float,
        lease: float,
        metrics: Metrics,
        clock: Clock = utc_now,
    ) -> None:
        self.db = db
        self.clock = clock
        # Ticks are whole seconds: polling more often finds nothing new, and costs a query
        # (on SQLite, a turn of the write lock) each time.
        self.interval = max(interval, MIN_INTERVAL)
        self.lease = lease
        self.metrics = metrics
        self.log = log.bind(daemon=daemon_id)
        self.firer = ScheduleFirer(
            db,
            registry,
            actor=daemon_id,
            catchup=config.catchup,
            grace=timedelta(seconds=config.grace),
            clock=clock,
        )

    def wait_after(self, fired: Fired) -> float:
        """Seconds until the next poll: until the next tick the last poll saw, at least
        `interval` and at most RECHECK. An idle fleet then costs its database a query per
        daemon every RECHECK seconds, not one per poll interval."""
        if fired.next_due is None:
            return RECHECK
        until = (fired.next_due - self.clock()).total_seconds()
        return min(RECHECK, max(until, self.interval))

    async def run_once(self) -> Fired:
        """One poll: fire every due tick this daemon wins. Database errors propagate."""
        limit = query_limit(self.db, self.lease)
        async with asyncio.timeout(limit):
            return await self.firer.fire_due()

    async def run(self, stopping: asyncio.Event) -> None:
        """Poll until `stopping`, when the next tick is due (`wait_after`; the first
        poll, one interval after start-up, catches up a tick missed while no daemon ran);
        an outage is waited out with backoff, and any other database error is logged and
        tried again later."""
        # Not at once: a daemon's first moments are its registration and first claims,
        # and on SQLite every poll takes a turn of the one write lock.
        delay = self.interval
        await wait_for(stopping, self.interval)
        while not stopping.is_set():
            try:
                fired = await self.run_once()
            except LOOP_ERRORS as exc:
                if ridden_out(exc):
                    delay = await ride_out(
                        self.log, self.metrics, "schedules", exc, delay, stopping
                    )
                    continue
                # A table or a privilege missing (an account without the schedules' grants):
                # schedules are never a reason to stop running workflows. Said loudly, and
                # tried again now and then.
                self.log.error("schedules_failed", error=describe(exc), retry_in=OUTAGE_BACKOFF_MAX)
                self.metrics.database_errors.labels(type(exc).__name__).inc()
                await wait_for(stopping, OUTAGE_BACKOFF_MAX)
                continue
            delay = self.interval
            await wait_for(stopping, self.wait_after(fired))
