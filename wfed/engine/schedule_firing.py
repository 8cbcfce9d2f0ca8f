"""Firing schedules: every daemon may, and each (schedule, tick) enqueues exactly once.

One indexed query finds the active schedules whose next tick has come. Each tick is then
one transaction: the schedule's row is locked and moved past the tick, the tick is
recorded in `schedule_fires` (whose primary key refuses a second daemon), the workflow
is inserted with its `created` event naming the schedule. A daemon that loses the race
finds the tick taken and moves on: an expected outcome, not an error.

Which ticks fire (docs/schedules.md): those no older than the grace each fire. Older ones
were missed, while no daemon ran; of them, the `catchup` policy `once` fires the latest
one, `skip` fires none. Either way the schedule goes on from the next tick to come.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from wfed.engine.schedule_times import CronTimes, InvalidSchedule, workflow_name
from wfed.engine.schedules import Catchup, Template, check_catchup_or
from wfed.errors import InvalidDefinition, WorkflowExists
from wfed.logging import get_logger
from wfed.states import EventKind
from wfed.steps.definition import parse_definition
from wfed.steps.registry import StepRegistry
from wfed.store import events as event_store
from wfed.store import schedules as schedule_store
from wfed.store import steps as step_store
from wfed.store import workflows as workflow_store
from wfed.store.database import Database, run_retrying
from wfed.store.events import Event
from wfed.store.faults import Fault, classify
from wfed.store.schedules import ScheduleGone, ScheduleRow, TickTaken
from wfed.unreadable_json import UnreadableTimestamp

log = get_logger("wfed.schedules")

DUE_LIMIT = 100
"""Schedules handled per poll; more wait for the next one."""


@dataclass
class Fired:
    """What one pass did."""

    enqueued: list[str] = field(default_factory=list)
    """The workflows this daemon enqueued."""
    taken: int = 0
    """Ticks another daemon had fired already."""
    skipped: int = 0
    """Missed ticks not fired (`catchup = "skip"`), or ticks whose workflow name was taken."""
    next_due: datetime | None = None
    """When the next tick is, as far as this pass saw: now when it fired or moved a
    schedule (look again at once), None when no schedule is active."""


class ScheduleFirer:
    """Fires the due schedules of one database, as one daemon (`actor`)."""

    def __init__(
        self,
        db: Database,
        registry: StepRegistry,
        *,
        actor: str,
        catchup: Catchup,
        grace: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        self.db = db
        self.registry = registry
        self.actor = actor
        self.catchup = catchup
        self.grace = grace
        self.clock = clock
        self.log = log.bind(daemon=actor)

    async def fire_due(self, limit: int = DUE_LIMIT) -> Fired:
        """Fire what is due now, and say when the next tick is. Database outages
        propagate (the caller rides them out)."""
        fired = Fired()
        now = self.clock()
        async with self.db.autocommit() as conn:
            upcoming = await schedule_store.schedules_upcoming(conn, limit + 1)
        due = [row for row in upcoming if row.next_fire_at is None or row.next_fire_at <= now]
        later = [row.next_fire_at for row in upcoming[len(due) :] if row.next_fire_at]
        if due:
            # Moved on by this pass (or more waiting beyond the limit): read them again.
            fired.next_due = now
        elif later:
            fired.next_due = min(later)
        for row in due[:limit]:
            await self._fire_schedule(row, now, fired)
        return fired

    async def _fire_schedule(self, row: ScheduleRow, now: datetime, fired: Fired) -> None:
        try:
            times = CronTimes.of(row.cron, row.timezone)
            template = Template.of(row.template)
        except InvalidSchedule as exc:
            await self._pause_unusable(row, str(exc), now)
            return
        if isinstance(row.next_fire_at, UnreadableTimestamp):
            # SQLite keeps whatever an UPDATE wrote; `schedule resume` computes it anew.
            problem = f"next_fire_at holds no timestamp ({row.next_fire_at.text!r})"
            await self._pause_unusable(row, problem, now)
            return
        if row.next_fire_at is None:
            # Inserted by plain SQL: it starts with the next tick to come.
            await self._advance(row, times.after(now), now)
            return
        due = times.due(row.next_fire_at, now, self.grace)
        ticks = list(due.on_time)
        if due.missed is not None:
            if check_catchup_or(row.catchup, self.catchup) == "once":
                ticks.insert(0, due.missed)
            else:
                fired.skipped += 1
                self.log.info(
                    "schedule_tick_missed", schedule=row.name, tick=due.missed.isoformat()
                )
                await self._advance(row, ticks[0] if ticks else due.next_fire_at, now)
        for index, tick in enumerate(ticks):
            following = ticks[index + 1] if index + 1 < len(ticks) else due.next_fire_at
            if not await self._fire(row, times, template, tick, following, now, fired):
                return

    async def _fire(
        self,
        row: ScheduleRow,
        times: CronTimes,
        template: Template,
        tick: datetime,
        following: datetime | None,
        now: datetime,
        fired: Fired,
    ) -> bool:
        """Fire one tick; False when the schedule is paused or gone (stop there)."""
        name = workflow_name(row.name, tick, seconds=times.has_seconds)
        try:
            plans = parse_definition(template.steps, self.registry)
        except InvalidDefinition:
            # Enqueued anyway, as a plain-SQL INSERT would be: the claim puts it in
            # error with the reason, where operators look for it.
            plans = []
        detail = {
            "steps": len(plans),
            **(template.provenance or {}),
            "schedule": row.name,
            "tick_at": tick.isoformat() + "Z",
        }

        async def body() -> None:
            async with self.db.transaction() as conn:
                await schedule_store.schedule_fire_begin(
                    conn,
                    row.id,
                    tick_at=tick,
                    next_fire_at=following,
                    workflow_name=name,
                    fired_by=self.actor,
                    now=now,
                )
                workflow_id = await workflow_store.workflow_insert(
                    conn,
                    name=name,
                    steps=template.steps,
                    context=template.context,
                    queue=template.queue,
                    priority=template.priority,
                    run_after=None,
                    now=now,
                    locks=template.locks,
                    windows=template.windows,
                )
                if plans:
                    await step_store.steps_insert(
                        conn, workflow_id, [(p.name, p.label, p.args) for p in plans]
                    )
                created = Event(
                    workflow_id, name, EventKind.CREATED, self.actor, now, detail=detail
                )
                await event_store.events_insert(conn, created)

        try:
            await run_retrying(body)
        except TickTaken:
            fired.taken += 1
            self.log.debug("schedule_tick_taken", schedule=row.name, tick=tick.isoformat())
            return True
        except ScheduleGone:
            return False
        except WorkflowExists:
            fired.skipped += 1
            self.log.warning(
                "schedule_tick_skipped",
                schedule=row.name,
                tick=tick.isoformat(),
                reason=f"a workflow named {name!r} exists already",
            )
            await self._advance(row, following, now)
            return True
        except Exception as exc:
            if classify(exc) is not Fault.DATA:
                raise
            # The database refuses this workflow (too large a context, say): it would
            # refuse it at every poll. The tick is passed over, loudly.
            fired.skipped += 1
            self.log.error(
                "schedule_tick_refused", schedule=row.name, tick=tick.isoformat(), error=str(exc)
            )
            await self._advance(row, following, now)
            return True
        fired.enqueued.append(name)
        self.log.info("schedule_fired", schedule=row.name, tick=tick.isoformat(), workflow=name)
        return True

    async def _advance(self, row: ScheduleRow, following: datetime | None, now: datetime) -> None:
        if following is None:
            await self._pause_unusable(row, "its cron expression matches no later date", now)
            return
        async with self.db.transaction() as conn:
            await schedule_store.schedule_advance(
                conn, row.id, next_fire_at=following, fired_at=None, now=now
            )

    async def _pause_unusable(self, row: ScheduleRow, problem: str, now: datetime) -> None:
        """A schedule no daemon can fire (a row written by hand) is paused, said once."""
        async with self.db.transaction() as conn:
            await schedule_store.schedule_set_state(
                conn,
                row.name,
                state=schedule_store.PAUSED,
                next_fire_at=row.next_fire_at,
                actor=self.actor,
                now=now,
            )
        self.log.error("schedule_paused_unusable", schedule=row.name, problem=problem)
