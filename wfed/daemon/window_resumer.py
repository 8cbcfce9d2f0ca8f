"""The chore that resumes the workflows a maintenance window's closing paused, once their
windows (their queue's and their own) are open again.

One pass (`run_once`) reads the window-paused workflows of the daemon's queues (one
query, through the index on `window_paused`) and resumes those whose windows are open,
each by a guarded update that only matches while the row is still window-paused: an
operator who paused, resumed, stopped or restarted it meanwhile took it out of the
chore's hands. Every daemon runs the chore; of several resuming one workflow, one does.

The loop looks again at the earliest opening it knows of, and at least every
`interval` for workflows paused since (by other daemons too).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from wfed.clock import Clock, utc_now
from wfed.daemon.loops import describe, wait_for
from wfed.states import EventKind
from wfed.store import events as event_store
from wfed.store import windows as window_store
from wfed.store.database import OUTAGE_ERRORS, Database
from wfed.store.events import Event
from wfed.store.windows import WindowPaused
from wfed.windows import QueueWindows, WindowGate, WindowSpecError, parse_windows

log = structlog.get_logger("wfed.daemon")

LOOK_INTERVAL = 30.0
"""Seconds between looks for workflows paused since the last one."""


@dataclass(frozen=True)
class Resumed:
    """What one pass did."""

    resumed: list[str] = field(default_factory=list)
    """The names of the workflows it resumed."""
    next_opening: datetime | None = None
    """The earliest opening of the windows of those still paused, if any."""


class WindowResumer:
    """Resumes window-paused workflows of `queues` when their windows open."""

    def __init__(
        self,
        db: Database,
        queues: list[str],
        queue_windows: QueueWindows,
        *,
        daemon_id: str,
        clock: Clock = utc_now,
        interval: float = LOOK_INTERVAL,
    ) -> None:
        self.db = db
        self.queues = queues
        self.queue_windows = queue_windows
        self.daemon_id = daemon_id
        self.clock = clock
        self.interval = interval
        self.log = log.bind(daemon=daemon_id)

    async def run_once(self) -> Resumed:
        """One pass; raises what the database raised."""
        now = self.clock()
        async with self.db.autocommit() as conn:
            paused = await window_store.workflows_window_paused(conn, self.queues)
        resumed: list[str] = []
        openings: list[datetime] = []
        for row in paused:
            try:
                gate = WindowGate(self.queue_windows.of(row.queue), parse_windows(row.windows))
            except WindowSpecError as exc:
                # Edited by hand since it paused: left to the operator (resume it, and
                # its next claim puts it in error naming the problem).
                self.log.warning("window_paused_unreadable", workflow=row.name, error=str(exc))
                continue
            closed = gate.closed(now)
            if closed is None:
                if await self._resume(row, now):
                    resumed.append(row.name)
            elif closed.opens_at is not None:
                openings.append(closed.opens_at)
        return Resumed(resumed, min(openings, default=None))

    async def _resume(self, row: WindowPaused, now: datetime) -> bool:
        reason = f"its maintenance windows are open again (paused by {row.window_paused!r})"
        async with self.db.transaction() as conn:
            if not await window_store.workflow_window_resume(conn, row.id, row.window_paused, now):
                return False
            event = Event(
                workflow_id=row.id,
                workflow_name=row.name,
                kind=EventKind.RESUMED,
                actor=self.daemon_id,
                at=now,
                position=row.current_step,
                reason=reason,
                detail={"window": row.window_paused},
            )
            await event_store.events_insert(conn, event)
        self.log.info("workflow_window_resumed", workflow=row.name, window=row.window_paused)
        return True

    async def run(self, stopping: asyncio.Event) -> None:
        """Resume until `stopping` is set; an outage is logged and looked at again later."""
        delay = 0.0
        while not await wait_for(stopping, delay):
            delay = self.interval
            try:
                done = await self.run_once()
            except OUTAGE_ERRORS as exc:
                self.log.warning("window_resume_failed", error=describe(exc))
                continue
            except Exception:
                # A chore, never a reason to stop running workflows: logged with its
                # traceback, and tried again at the next look.
                self.log.exception("window_resume_failed")
                continue
            if done.next_opening is not None:
                until = (done.next_opening - self.clock()).total_seconds()
                delay = min(delay, max(until, 0.0))
