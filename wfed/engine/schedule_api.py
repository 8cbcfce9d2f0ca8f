"""The Engine's schedules: add, list, pause, resume, remove, and the next ticks (part of
`wfed.Engine`; docs/schedules.md). The daemons fire them (`wfed.daemon.scheduler`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from wfed.clock import Clock

if TYPE_CHECKING:
    from wfed.engine.schedules import Catchup, Schedules, ScheduleView, Tick
    from wfed.steps.definition import StepPlan
    from wfed.store.database import Database


class ScheduleApi:
    """`Engine.add_schedule`, `schedules`, `schedule`, `pause_schedule`,
    `resume_schedule`, `remove_schedule` and `next_ticks`."""

    db: Database
    actor: str
    clock: Clock
    schedule_catchup: Catchup = "once"
    """The [schedules] catchup setting: the policy of a schedule that names none."""

    def plan(self, steps: Any, context: Any = None, name: str | None = None) -> list[StepPlan]:
        raise NotImplementedError  # the Engine's

    @property
    def _schedules(self) -> Schedules:
        # The cron and time-zone machinery loads when a schedule is used, not before.
        from wfed.engine.schedules import Schedules  # noqa: PLC0415

        return Schedules(self.db, self.actor, self.clock, self.schedule_catchup)

    async def add_schedule(
        self,
        name: str,
        cron: str,
        timezone: str = "UTC",
        *,
        steps: Sequence[Any] | None = None,
        context: dict[str, Any] | None = None,
        queue: str | None = None,
        priority: int | None = None,
        runbook: str | None = None,
        params: dict[str, str] | None = None,
        catchup: str | None = None,
        locks: Sequence[str] | None = None,
        windows: Sequence[str] | None = None,
    ) -> ScheduleView:
        """Add an active schedule: at each tick of `cron` (5 fields, or 6 with seconds
        first) in `timezone`, enqueue `steps` with `context` — or the runbook file
        `runbook` with `params`, rendered now, its path and sha256 recorded. Everything is
        checked as `create_workflow` and `run_runbook` check it (InvalidDefinition) before
        anything is written; ScheduleExists on a duplicate name. `locks` and `windows`
        (or the runbook's) are the concurrency keys each enqueued workflow holds and the
        maintenance windows it runs in."""
        from wfed.engine import runbooks  # noqa: PLC0415
        from wfed.engine.schedule_times import CronTimes, InvalidSchedule  # noqa: PLC0415
        from wfed.engine.schedules import Template, check_catchup, check_name  # noqa: PLC0415
        from wfed.engine.window_reads import checked as checked_windows  # noqa: PLC0415
        from wfed.store.lock_keys import parse_lock_keys  # noqa: PLC0415

        check_name(name)
        times = CronTimes.of(cron, timezone)
        policy = check_catchup(catchup)
        if (runbook is None) == (steps is None):
            raise InvalidSchedule("give either steps or a runbook file, not both or neither")
        if runbook is not None:
            if context:
                raise InvalidSchedule("a runbook makes its own context: give --param instead")
            row = runbooks.enqueue(
                runbooks.load_runbook(runbook), params or {}, now=self.clock(), name=name
            )
            runbooks.checked(runbook, lambda: self.plan(row.steps, row.context))
            template = Template(
                steps=row.steps,
                context=row.context,
                queue=queue or row.queue,
                priority=row.priority if priority is None else priority,
                provenance=row.provenance,
                locks=parse_lock_keys(list(locks) if locks else row.locks),
                windows=tuple(checked_windows(list(windows) if windows else row.windows)),
            )
        else:
            definition = list(steps or [])
            self.plan(definition, context)
            template = Template(
                steps=definition,
                context=dict(context or {}),
                queue=queue or "default",
                priority=priority or 0,
                locks=parse_lock_keys(list(locks) if locks else None),
                windows=tuple(checked_windows(list(windows) if windows else None)),
            )
        return await self._schedules.add(name, times, template, catchup=policy)

    async def schedules(self) -> list[ScheduleView]:
        """Every schedule, by name."""
        return await self._schedules.list()

    async def schedule(self, name: str) -> ScheduleView:
        """One schedule (ScheduleNotFound if none has `name`)."""
        return await self._schedules.get(name)

    async def pause_schedule(self, name: str) -> ScheduleView:
        """Fire no more ticks until resumed."""
        return await self._schedules.pause(name)

    async def resume_schedule(self, name: str) -> ScheduleView:
        """Fire again, from the next tick after now."""
        return await self._schedules.resume(name)

    async def remove_schedule(self, name: str) -> None:
        """Delete a schedule; the workflows it enqueued stay."""
        await self._schedules.remove(name)

    async def next_ticks(self, name: str, count: int = 5) -> list[Tick]:
        """The next `count` ticks after now, in UTC and in the schedule's zone."""
        return list(await self._schedules.upcoming(name, count))
