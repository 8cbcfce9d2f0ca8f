"""The heartbeat: keeps the daemon's row and its leases fresh, and tells its runners what
the database says of their workflows.

A beat (`run_once`, every control interval) with workflows running asks one question:
which of them were asked to stop — one range of the index on (claimed_by, requested),
however many workflows the daemon runs. Once a quarter of a lease has passed (or of the
time the daemon's row may go unrefreshed) the beat renews as well, in one transaction:
refresh the daemon's row (registering it again if it was pruned while the daemon looked
dead) and renew, in one UPDATE, the leases that are a quarter spent (a workflow just
claimed waits its turn); then each of their runners hears whether it lost its
workflow, got its lease renewed, or was asked to stop. Without workflows only the row
needs refreshing, and only often enough to look alive. After every beat, failed or not,
a lease past its end on the daemon's own clock is lost: its runner must stop before
another owner starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from wfed.clock import Clock, utc_now
from wfed.config import DaemonConfig
from wfed.daemon import sdnotify
from wfed.daemon.loops import (
    LOOP_ERRORS,
    OUTAGE_BACKOFF_MAX,
    note_failure,
    query_limit,
    ridden_out,
    wait_first,
)
from wfed.metrics import Metrics
from wfed.states import Request
from wfed.store import daemons as daemon_store
from wfed.store import leases
from wfed.store.database import Database, run_retrying
from wfed.store.leases import Held
from wfed.store.rows import DaemonRow

log = structlog.get_logger("wfed.daemon")

STOP_REASON = "stop requested"


class Leased(Protocol):
    """What the heartbeat sees of a runner (`wfed.engine.runner.WorkflowRunner`)."""

    @property
    def fence(self) -> int: ...

    @property
    def lease_expires_at(self) -> datetime: ...

    def lose(self) -> None: ...

    def renewed(self, lease_expires_at: datetime, /) -> None: ...

    def stop(self, reason: str, /) -> None: ...


@dataclass(frozen=True)
class Beat:
    """What one beat did."""

    refreshed: bool = False
    """The daemon's row was written (by a heartbeat or a registration)."""
    renewed: int = 0
    lost: int = 0
    """Runners told they lost their workflow, by the database or by their lease's end."""
    stopped: int = 0
    """Runners told of a stop request (each once per request)."""


class Heartbeat:
    """The heartbeat of the daemon described by `daemon` (its row as registered)."""

    def __init__(
        self,
        db: Database,
        settings: DaemonConfig,
        daemon: DaemonRow,
        runners: Mapping[int, Leased],
        *,
        metrics: Metrics,
        clock: Clock = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.settings = settings
        self.daemon = daemon
        self.runners = runners
        self.metrics = metrics
        self.clock = clock
        self.monotonic = monotonic
        self.query_limit = query_limit(db, settings.lease)
        self.refresh_interval = max(settings.control_interval, settings.lease / 4)
        """Seconds of a lease spent before it is renewed, and between two refreshes of the
        daemon's row."""
        self.log = log.bind(daemon=daemon.id)
        self._beaten_at: float | None = None
        # The runners told of their workflow's stop request. A runner hears of it once:
        # a second stop cancels its step again, which a step may take as "kill at once"
        # (the shell step's SIGKILL), cutting its graceful stop short.
        self._told_to_stop: dict[int, Leased] = {}
        self._woken = asyncio.Event()
        self._renewing: asyncio.Task[Beat] | None = None
        """The renewal `run()` started beside its beats (None once its outcome was taken)."""

    async def register(self) -> None:
        """Write the daemon's row afresh (at start-up, and when it was found gone)."""
        async with self.db.transaction() as conn:
            await daemon_store.daemon_register(conn, self._row(self.clock()))
        self._beaten_at = self.monotonic()

    def _row(self, now: datetime) -> DaemonRow:
        return replace(self.daemon, started_at=now, heartbeat_at=now)

    async def run_once(self, *, renew_aside: bool = False) -> Beat:
        """One beat; raises what the database raised, but drops expired leases even then.

        With `renew_aside` (the daemon's loop), a renewal that is due runs in a task of its
        own while this beat reads the stop requests: renewing ten thousand leases takes
        longer than a control interval, and a stop must not wait for it. Its outcome (an
        error too) is taken by a later beat."""
        beat = Beat()
        try:
            async with asyncio.timeout(self.query_limit):
                beat = await self._beat(renew_aside)
        finally:
            expired = self._lose_expired()
        return replace(beat, lost=beat.lost + expired)

    async def _beat(self, renew_aside: bool) -> Beat:
        now = self.clock()
        # Taken first, whether or not workflows still run: a finished renewal must not
        # hold back the next one, nor keep its error unseen.
        renewed = self._renewal_outcome()
        if not self.runners:
            self._told_to_stop.clear()
            return Beat(refreshed=await self._idle_beat(now))
        due = self._leases_due(now)
        if due or self._row_refresh_due():
            if not renew_aside:
                return await self._renew(now, due)
            if self._renewing is None:
                self._renewing = asyncio.create_task(self._renew_within_limit(now, due))
        async with self.db.autocommit() as conn:
            requests = await leases.workflow_requests_owned(conn, owner=self.daemon.id)
        told = self._tell_requests(requests)
        if renewed is None:
            return told
        return replace(renewed, stopped=renewed.stopped + told.stopped)

    def _renewal_outcome(self) -> Beat | None:
        """What the renewal run aside did, once it is over. An outage or a timeout it met
        is logged, not raised: the database may be back by now, and this beat renews
        again at once instead of backing off for an error that is over."""
        if self._renewing is None or not self._renewing.done():
            return None
        task, self._renewing = self._renewing, None
        try:
            return task.result()
        except LOOP_ERRORS as exc:
            if not ridden_out(exc):
                raise
            note_failure(self.log, self.metrics, "lease_renewal", exc, retry_in=0.0)
            return None

    async def _renew_within_limit(self, now: datetime, due: list[int]) -> Beat:
        async with asyncio.timeout(self.query_limit):
            return await self._renew(now, due)

    async def stop_renewing(self) -> None:
        """Cancel a renewal under way (the daemon is stopping)."""
        if self._renewing is not None:
            self._renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError, *LOOP_ERRORS):
                await self._renewing
            self._renewing = None

    async def _renew(self, now: datetime, owned_ids: list[int]) -> Beat:
        """Refresh the daemon's row and renew the leases of `owned_ids`, in one
        transaction; tell their runners what became of their workflows."""

        async def attempt() -> tuple[dict[int, Held], set[int]]:
            async with self.db.transaction() as conn:
                if not await daemon_store.daemon_heartbeat(conn, self.daemon.id, now):
                    # Our row is gone (pruned while we looked dead): register again.
                    self.log.warning("daemon_reregistered")
                    await daemon_store.daemon_register(conn, self._row(now))
                if not owned_ids:
                    return {}, set()
                owned = await leases.workflow_renew_owned(
                    conn, owner=self.daemon.id, ids=owned_ids, now=now, lease=self.settings.lease
                )
                gone = {
                    workflow_id: runner.fence
                    for workflow_id, runner in self.runners.items()
                    if workflow_id in owned_ids
                    and (workflow_id not in owned or owned[workflow_id].fence != runner.fence)
                }
                return owned, await leases.workflows_ended_under(conn, gone)

        owned, ended = await run_retrying(attempt)
        self._beaten_at = self.monotonic()
        return self._tell(owned_ids, owned, ended, now + timedelta(seconds=self.settings.lease))

    def _leases_due(self, now: datetime) -> list[int]:
        """The workflows whose lease is a quarter spent (or more: one a renewal skipped,
        its row held by another transaction, is due again at once)."""
        threshold = now + timedelta(seconds=self.settings.lease - self.refresh_interval)
        return [
            workflow_id
            for workflow_id, runner in self.runners.items()
            if runner.lease_expires_at <= threshold
        ]

    def _row_refresh_due(self) -> bool:
        # The daemon's row must look alive however short-lived its workflows are.
        return (
            self._beaten_at is None or self.monotonic() - self._beaten_at >= self.refresh_interval
        )

    def _tell_requests(self, requests: dict[int, Held]) -> Beat:
        """Pass the stop requests on, each once to the runner holding the workflow under
        the fence the request was read with (between renewals)."""
        stopped = 0
        for workflow_id, held in requests.items():
            runner = self.runners.get(workflow_id)
            if runner is None or held.fence != runner.fence or held.request is not Request.STOP:
                continue
            stopped += self._tell_stop(workflow_id, runner)
        self._forget_gone_runners()
        return Beat(stopped=stopped)

    def _tell_stop(self, workflow_id: int, runner: Leased) -> int:
        """Tell `runner` its workflow was asked to stop, unless it was told already: a
        second stop cancels its step again, which a step may take as "kill at once" (the
        shell step's SIGKILL), cutting its graceful stop short. 1 if told now."""
        if self._told_to_stop.get(workflow_id) is runner:
            return 0
        runner.stop(STOP_REASON)
        self._told_to_stop[workflow_id] = runner
        return 1

    def _forget_gone_runners(self) -> None:
        # A runner that ended is forgotten; the next runner of its workflow is told anew.
        self._told_to_stop = {
            workflow_id: runner
            for workflow_id, runner in self._told_to_stop.items()
            if self.runners.get(workflow_id) is runner
        }

    def _tell(
        self, owned_ids: list[int], owned: dict[int, Held], ended: set[int], expires: datetime
    ) -> Beat:
        """Pass what the database said on to the runners. A workflow its runner ended
        itself (the commit landed, the runner may not know yet: its reply can be lost) is
        neither renewed nor lost: the runner learns of the end when it retries, and if it
        never does, its lease runs out on its own clock."""
        renewed = lost = stopped = 0
        for workflow_id in owned_ids:
            runner = self.runners.get(workflow_id)
            if runner is None:
                continue
            held = owned.get(workflow_id)
            if workflow_id in ended:
                continue
            if held is None or held.fence != runner.fence:
                runner.lose()
                lost += 1
                continue
            if held.renewed:
                runner.renewed(expires)
                self.metrics.lease_renewals.inc()
                renewed += 1
            if held.request is Request.STOP:
                stopped += self._tell_stop(workflow_id, runner)
        self._forget_gone_runners()
        return Beat(refreshed=True, renewed=renewed, lost=lost, stopped=stopped)

    async def _idle_beat(self, now: datetime) -> bool:
        """With no workflows, only the daemon's row needs refreshing, and only often
        enough to look alive (its lease) — every lease/4, one autocommit UPDATE."""
        if not self._row_refresh_due():
            return False
        async with self.db.autocommit() as conn:
            present = await daemon_store.daemon_heartbeat(conn, self.daemon.id, now)
        if not present:
            # Our row is gone (pruned while we looked dead): register again.
            self.log.warning("daemon_reregistered")
            await self.register()
        self._beaten_at = self.monotonic()
        return True

    def _lose_expired(self) -> int:
        """Runners whose lease ran out (while the database was away) have lost it."""
        now = self.clock()
        lost = 0
        for runner in list(self.runners.values()):
            if now >= runner.lease_expires_at:
                runner.lose()
                lost += 1
        return lost

    def wake(self) -> None:
        """Beat now rather than at the next interval (a request was notified)."""
        self._woken.set()

    async def run(self, finished: asyncio.Event) -> None:
        """Beat every `control_interval` (or the watchdog's, if shorter) until `finished`."""
        interval = self.settings.control_interval
        watchdog = sdnotify.watchdog_interval()
        if watchdog is not None:
            interval = min(interval, watchdog)
        delay = interval
        failing = False
        try:
            while True:
                await wait_first((finished, self._woken), delay)
                if finished.is_set():
                    break
                self._woken.clear()
                if watchdog is not None:
                    # The watchdog guards against a wedged event loop, not a database away:
                    # outages are ridden out (see docs/operations.md).
                    sdnotify.notify("WATCHDOG=1")
                try:
                    await self.run_once(renew_aside=True)
                except LOOP_ERRORS as exc:
                    if not ridden_out(exc):
                        raise
                    # Back off, but try at least every lease/4: to renew the leases as soon
                    # as the database is back, and to drop an expired one soon after it
                    # ends (run_once does, failed or not); and at least every watchdog
                    # interval, which each try tells systemd. The wait is the one above.
                    delay = min(delay * 2, OUTAGE_BACKOFF_MAX, self.settings.lease / 4)
                    if watchdog is not None:
                        delay = min(delay, watchdog)
                    note_failure(self.log, self.metrics, "heartbeat", exc, retry_in=delay)
                    failing = True
                    continue
                if failing:
                    self.log.info("heartbeat_recovered")
                    failing = False
                delay = interval
        finally:
            await self.stop_renewing()
