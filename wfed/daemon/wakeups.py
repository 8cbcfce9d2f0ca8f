"""PostgreSQL wake-ups: the daemon hears of new work and of pause/stop requests at once.

The `workflows` trigger (migration 0004) notifies on one channel; this service LISTENs on
a connection of its own and wakes the claimer (a workflow became pending in one of the
daemon's queues) or the heartbeat (a workflow this daemon runs was asked to pause or
stop). Waking is all it does: the claimer and the heartbeat then run the pass they run on
their poll, which reads the rows. Wake-ups coalesce (each is an event set), so a burst of
ten thousand inserts costs a few claim passes, not ten thousand.

The poll stays the fallback: a notification missed, a listening connection dropped (the
service listens again, with backoff, and wakes both once then, for what it may have
missed), a writer that bypasses the trigger — all still work at poll speed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection

from wfed.daemon.loops import OUTAGE_BACKOFF_MAX, describe, wait_any, wait_for
from wfed.logging import get_logger
from wfed.store import wakeups as wakeup_store
from wfed.store.database import Database

FIRST_RETRY = 0.5
HEALTH_CHECK = 5.0
"""Seconds between two looks at whether the listening connection is still open."""

log = get_logger("wfed.wakeups")


class Wakeups:
    """LISTEN and wake the claimer or the heartbeat (PostgreSQL only)."""

    def __init__(
        self,
        db: Database,
        queues: Collection[str],
        *,
        wake_claimer: Callable[[], None],
        wake_heartbeat: Callable[[], None],
        runs: Callable[[int], bool],
    ) -> None:
        self.db = db
        self.queues = frozenset(queues)
        self.wake_claimer = wake_claimer
        self.wake_heartbeat = wake_heartbeat
        self.runs = runs
        """Whether this daemon runs the workflow with that id."""
        self.heard = 0

    def on_message(self, payload: str) -> None:
        """One notification: wake whom it concerns. Never raises (the driver calls it)."""
        self.heard += 1
        kind, _, subject = payload.partition(" ")
        try:
            if kind == "pending" and subject in self.queues:
                self.wake_claimer()
            elif kind == "request" and subject.isdigit() and self.runs(int(subject)):
                self.wake_heartbeat()
        except Exception as exc:  # a hint lost; the poll still finds the work
            log.warning("wakeup_failed", error=describe(exc))

    async def run(self, stopping: asyncio.Event) -> None:
        """Listen until `stopping` is set, listening again whenever the session ends."""
        delay = FIRST_RETRY
        while not stopping.is_set():
            try:
                listening = await wakeup_store.listen(self.db, self.on_message)
            except Exception as exc:  # any failure to connect: the poll carries on meanwhile
                log.warning("listen_failed", error=describe(exc), retry_in=delay)
                await wait_for(stopping, delay)
                delay = min(delay * 2, OUTAGE_BACKOFF_MAX)
                continue
            delay = FIRST_RETRY
            log.info("listening", channel=wakeup_store.CHANNEL)
            # Whatever happened while nobody listened.
            self.wake_claimer()
            self.wake_heartbeat()
            try:
                while not stopping.is_set() and not listening.is_closed():
                    await wait_any(stopping, listening.dropped, HEALTH_CHECK)
            finally:
                with contextlib.suppress(Exception):  # the session is gone either way
                    await listening.close()
            if not stopping.is_set():
                log.warning("listen_dropped", channel=wakeup_store.CHANNEL)
