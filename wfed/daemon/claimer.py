"""The claimer: takes workflows into the daemon's free slots, expired leases first.

One pass (`run_once`) first takes over the workflows whose owner's lease expired (the
orphans of a dead or stuck daemon), then claims pending work into the slots left, so a
rescued workflow never waits behind a pending backlog: an orphan is running again within
its lease plus a poll of some daemon with a free slot.

The loop starts a pass every `poll_interval` however long the last one took, at once
when the last one filled every free slot (there may be more), and early when a slot
frees up. Outages are ridden out with a backoff.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from wfed.clock import Clock, utc_now
from wfed.config import DaemonConfig, LocksConfig
from wfed.daemon.loops import (
    LOOP_ERRORS,
    describe,
    query_limit,
    ridden_out,
    ride_out,
    wait_any,
    wait_first,
)
from wfed.metrics import Metrics
from wfed.store import claims
from wfed.store.claims import workflows_claimable_any
from wfed.store.database import DATABASE_ERRORS, Database, run_retrying
from wfed.store.faults import Fault, classify
from wfed.store.rows import WorkflowRow
from wfed.windows import QueueWindows

log = structlog.get_logger("wfed.daemon")


class Slots(Protocol):
    """What the claimer sees of the daemon's workflow slots (`wfed.daemon.runners`)."""

    freed: asyncio.Event
    """Set when a runner ends and its slot is free again."""

    def free(self) -> int: ...

    def held(self) -> Collection[int]:
        """The workflows this daemon's runners hold."""
        ...


REFUSED_FOR = 600.0
"""Seconds a row whose claim the database refused for its data is left alone: long
enough not to fill the log, short enough that a row an operator repaired runs soon."""


class Refused:
    """The workflows whose claim the database refused, each until `seconds` after."""

    LIMIT = 10_000

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._since: dict[int, float] = {}

    def add(self, workflow_id: int, now: float) -> None:
        if len(self._since) >= self.LIMIT:  # forget the oldest first
            del self._since[next(iter(self._since))]
        self._since[workflow_id] = now

    def ids(self, now: float) -> list[int]:
        if self._since:
            self._since = {i: t for i, t in self._since.items() if now - t < self.seconds}
        return list(self._since)


@dataclass(frozen=True)
class Claimed:
    """What one pass claimed."""

    expired: list[WorkflowRow] = field(default_factory=list)
    pending: list[WorkflowRow] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.expired) + len(self.pending)


class Claimer:
    """Claims workflows for one daemon and hands each to `start`."""

    def __init__(
        self,
        db: Database,
        settings: DaemonConfig,
        *,
        daemon_id: str,
        slots: Slots,
        start: Callable[[WorkflowRow], None],
        metrics: Metrics,
        clock: Clock = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        locks: LocksConfig | None = None,
        queue_windows: QueueWindows | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.queue_windows = queue_windows or QueueWindows({})
        self.locks = locks or LocksConfig()
        # How many pending workflows waiting for a full concurrency key the next claim
        # looks past: twice as many as the last claim passed over (up to the configured
        # bound), so that work queued behind a long line of them is reached within a few
        # passes, and a daemon without such waits never locks more rows than it claims.
        self._lookahead = 0
        self.daemon_id = daemon_id
        self.slots = slots
        self.start = start
        self.metrics = metrics
        self.clock = clock
        self.monotonic = monotonic
        self.query_limit = query_limit(db, settings.lease)
        self.log = log.bind(daemon=daemon_id)
        # Once a claim found nothing, a pass first asks whether there is anything to claim
        # (one autocommit read) instead of running the locking claim transaction: an idle
        # daemon costs its database one statement per poll.
        self._pending_idle = False
        self._expired_idle = True
        self._expired_looked_at = -math.inf
        self._woken = asyncio.Event()
        self._refused = Refused(REFUSED_FOR)

    async def run_once(self, free: int, *, woken: bool = False) -> Claimed:
        """One pass: claim into `free` slots the workflows whose lease expired, then
        pending ones; each claimed workflow is handed to `start`. A pass `woken` by a
        notification of new work looks for expired leases only if the last look is a
        whole poll old: new work waits for no round trip it does not need."""
        if free <= 0:
            return Claimed()
        # Pending work is taken only from the queues whose maintenance windows are open;
        # a rescue looks at every queue (its workflow's turn decides what to do then).
        open_queues = self.queue_windows.open_queues(self.settings.queues, self.clock())
        async with asyncio.timeout(self.query_limit):
            look_expired = self._expired_due(woken)
            pending_found, expired_found = await self._ask(
                open_queues,
                pending=self._pending_idle and bool(open_queues),
                expired=look_expired and self._expired_idle,
            )
            expired: list[WorkflowRow] = []
            if look_expired:
                if expired_found:
                    expired = await self._claim(free, expired=True)
                self._expired_idle = not expired
                # Filled every slot: there may be more, look again in the next pass.
                self._expired_looked_at = -math.inf if len(expired) == free else self.monotonic()
            pending: list[WorkflowRow] = []
            if free > len(expired) and pending_found and open_queues:
                pending = await self._claim(free - len(expired), expired=False, queues=open_queues)
                self._pending_idle = not pending
            elif not pending_found:
                # Nothing pending at all: nothing waits for a key either.
                self._lookahead = 0
                self.metrics.waiting_for_keys.set(0)
        return Claimed(expired, pending)

    def _expired_due(self, woken: bool = False) -> bool:
        # Expired leases are looked for once per poll, not on every pass a freed slot
        # starts: on a busy daemon those come by the hundred per second. Half a poll of
        # margin, so that a timed pass starting a hair early never skips its look; a
        # whole poll for a woken pass, so that the next timed pass makes the look (and
        # a stream of wake-ups still makes one per poll).
        since = self.monotonic() - self._expired_looked_at
        return since >= self.settings.poll_interval * (1 if woken else 0.5)

    async def _ask(
        self, open_queues: list[str], *, pending: bool, expired: bool
    ) -> tuple[bool, bool]:
        """Whether a claim of pending work (from `open_queues`) and a rescue would find
        anything; a kind not asked about is answered yes (claim without asking)."""
        if not (pending or expired):
            return True, True
        now = self.clock()
        async with self.db.autocommit() as conn:
            if pending and expired and open_queues == list(self.settings.queues):
                found = await workflows_claimable_any(conn, self.settings.queues, now)
                return found.pending, found.expired
            if pending and expired:
                pending_found = await claims.workflows_claimable(conn, open_queues, now)
                expired_found = await claims.workflows_claimable(
                    conn, self.settings.queues, now, expired=True
                )
                return pending_found, expired_found
            claimable = await claims.workflows_claimable(
                conn, open_queues if pending else self.settings.queues, now, expired=expired
            )
        return (claimable, True) if pending else (True, claimable)

    async def _claim(
        self, limit: int, *, expired: bool, queues: list[str] | None = None
    ) -> list[WorkflowRow]:
        with self.metrics.claim_seconds.time():
            try:
                rows: list[WorkflowRow] = await run_retrying(
                    self._attempt(limit, expired=expired, queues=queues)
                )
            except DATABASE_ERRORS as exc:
                if classify(exc) is not Fault.DATA:
                    raise
                rows = await self._claim_each(limit, expired=expired, queues=queues)
        self.metrics.claim_batch.observe(len(rows))
        for row in rows:
            self.start(row)
        if rows:
            self.log.info("workflows_claimed", count=len(rows), expired=expired)
            if expired:
                self.log.warning("workflows_recovered", count=len(rows))
        return rows

    def _attempt(
        self,
        limit: int,
        *,
        expired: bool,
        queues: list[str] | None,
        only: list[int] | None = None,
    ) -> Callable[[], Awaitable[list[WorkflowRow]]]:
        """One claim transaction, to run (and retry) as a whole."""

        async def attempt() -> list[WorkflowRow]:
            async with self.db.transaction() as conn:
                if not expired:
                    claim = await claims.workflow_claim_pending_counted(
                        conn,
                        owner=self.daemon_id,
                        queues=self.settings.queues if queues is None else queues,
                        limit=limit,
                        now=self.clock(),
                        lease=self.settings.lease,
                        limit_of=self.locks.limit_of,
                        lookahead=self._lookahead,
                        exclude=self._refused.ids(self.monotonic()),
                        only=only,
                    )
                    self._lookahead = min(2 * claim.waiting, self.locks.lookahead)
                    self.metrics.waiting_for_keys.set(claim.waiting)
                    return claim.rows
                # A rescue leaves alone the workflows this daemon's runners still hold:
                # such a runner must give its workflow up (lease expired on its own
                # clock) first.
                return await claims.workflow_claim_expired(
                    conn,
                    owner=self.daemon_id,
                    queues=self.settings.queues,
                    limit=limit,
                    now=self.clock(),
                    lease=self.settings.lease,
                    exclude=[*self.slots.held(), *self._refused.ids(self.monotonic())],
                    only=only,
                )

        return attempt

    async def _claim_each(
        self, limit: int, *, expired: bool, queues: list[str] | None
    ) -> list[WorkflowRow]:
        """The database refused a claim for its data: a row breaks a constraint of the
        table (written while the constraints were switched off) or a trigger of the
        operators'. The candidates are claimed one by one instead; each row refused is
        left alone for a while and named in the log, and the others run."""
        async with self.db.autocommit() as conn:
            candidates = await claims.workflow_claim_candidates(
                conn,
                self.settings.queues if queues is None or expired else queues,
                self.clock(),
                limit + self._lookahead,
                expired=expired,
                exclude=self._refused.ids(self.monotonic()),
            )
        claimed: list[WorkflowRow] = []
        for workflow_id in candidates:
            if len(claimed) >= limit:
                break
            one = self._attempt(1, expired=expired, queues=queues, only=[workflow_id])
            try:
                found: list[WorkflowRow] = await run_retrying(one)
            except DATABASE_ERRORS as exc:
                if classify(exc) is not Fault.DATA:
                    raise
                self._refused.add(workflow_id, self.monotonic())
                self.log.error(
                    "workflow_unclaimable",
                    workflow_id=workflow_id,
                    error=describe(exc),
                    retry_in=REFUSED_FOR,
                )
                continue
            claimed += found
        return claimed

    def wake(self) -> None:
        """Start a pass now rather than at the next poll (work was notified): a claim,
        without first asking whether there is anything to claim."""
        self._pending_idle = False
        self._woken.set()

    async def run(self, stopping: asyncio.Event) -> None:
        """Claim until `stopping` is set."""
        poll = self.settings.poll_interval
        delay = poll
        while not stopping.is_set():
            started = self.monotonic()
            woken = self._woken.is_set()
            self._woken.clear()
            free = self.slots.free()
            if free <= 0:
                # Full: the next pass is when a slot frees up.
                self.slots.freed.clear()
                await wait_any(self.slots.freed, stopping, poll)
                continue
            try:
                claimed = await self.run_once(free, woken=woken)
            except LOOP_ERRORS as exc:
                if not ridden_out(exc):
                    raise
                delay = await ride_out(self.log, self.metrics, "claim", exc, delay, stopping)
                continue
            delay = poll
            if claimed.count == free:
                continue  # there may be more: claim again at once
            self.slots.freed.clear()
            # Passes start every poll_interval, however long the last one took: a new
            # workflow waits poll_interval / 2 on average, not half of a longer cycle.
            remaining = started + poll - self.monotonic()
            await wait_first((self.slots.freed, stopping, self._woken), max(remaining, 0.0))
