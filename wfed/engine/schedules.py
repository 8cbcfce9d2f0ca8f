"""Schedules for operators: add, list, pause, resume, remove, and their next ticks
(docs/schedules.md). Firing them is the daemons' (`schedule_firing.py`).

A schedule is a cron expression in a time zone and a template: what each tick enqueues
(steps, context, queue, priority, and, for a runbook, where it came from). The template
is checked when the schedule is added, as `create` and `run` check theirs, so a tick
never enqueues what `create` would have refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from wfed.engine.json_values import iso
from wfed.engine.schedule_times import NAME_SUFFIX, CronTimes, InvalidSchedule
from wfed.errors import InvalidDefinition, WfedError
from wfed.logging import get_logger
from wfed.store import schedules as schedule_store
from wfed.store.database import Database
from wfed.store.lock_keys import parse_lock_keys
from wfed.store.schedules import ScheduleRow
from wfed.windows import WindowSpecError, parse_windows, specs

log = get_logger("wfed.engine")

Catchup = Literal["once", "skip"]
CATCHUPS: tuple[Catchup, ...] = ("once", "skip")
MAX_NAME = 255 - NAME_SUFFIX


class ScheduleExists(WfedError):
    """A schedule with this name already exists (names are unique)."""


class ScheduleNotFound(WfedError):
    """No schedule has this name."""


@dataclass(frozen=True)
class Template:
    """What each tick of a schedule enqueues: the `template` column."""

    steps: list[Any]
    context: dict[str, Any]
    queue: str = "default"
    priority: int = 0
    provenance: dict[str, Any] | None = None
    """For a runbook: its path and sha256 and the parameters, recorded in each enqueued
    workflow's `created` event."""
    locks: tuple[str, ...] = ()
    """The concurrency keys each enqueued workflow holds (docs/concurrency-keys.md)."""
    windows: tuple[str, ...] = ()
    """The maintenance windows each enqueued workflow runs in (docs/windows.md)."""

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "steps": self.steps,
            "context": self.context,
            "queue": self.queue,
            "priority": self.priority,
        }
        if self.locks:
            document["locks"] = list(self.locks)
        if self.windows:
            document["windows"] = list(self.windows)
        if self.provenance:
            document["provenance"] = self.provenance
        return document

    @classmethod
    def of(cls, raw: Any) -> Template:
        """The template column as written by `add` or by a plain-SQL INSERT; InvalidSchedule
        for one that is no template (the steps themselves are checked by the claim)."""
        if isinstance(raw, list):  # the steps alone, as a hand-written INSERT may give
            raw = {"steps": raw}
        if not isinstance(raw, dict) or "steps" not in raw:
            raise InvalidSchedule('template must be a JSON object with "steps"')
        context = raw.get("context") or {}
        queue = raw.get("queue") or "default"
        priority = raw.get("priority") or 0
        provenance = raw.get("provenance")
        if not isinstance(queue, str) or not isinstance(priority, int):
            raise InvalidSchedule("template: queue must be a string, priority an integer")
        try:
            locks = parse_lock_keys(raw.get("locks"))
            windows = tuple(specs(parse_windows(raw.get("windows"))))
        except InvalidDefinition as exc:
            raise InvalidSchedule(f"template: {exc}") from None
        except WindowSpecError as exc:
            raise InvalidSchedule(f"template: windows: {exc}") from None
        return cls(
            steps=raw["steps"],
            context=context,
            queue=queue,
            priority=priority,
            provenance=provenance if isinstance(provenance, dict) else None,
            locks=locks,
            windows=windows,
        )


@dataclass(frozen=True)
class ScheduleView:
    """A schedule as operators see it (`wfectl schedule list`)."""

    row: ScheduleRow
    catchup: Catchup
    """The policy that applies: the schedule's own, else the [schedules] setting."""

    @property
    def name(self) -> str:
        return self.row.name

    @property
    def template(self) -> Template | None:
        try:
            return Template.of(self.row.template)
        except InvalidSchedule:
            return None

    def next_local(self) -> datetime | None:
        """The next tick in the schedule's own time zone."""
        if self.row.next_fire_at is None:
            return None
        try:
            return CronTimes.of(self.row.cron, self.row.timezone).local(self.row.next_fire_at)
        except InvalidSchedule:
            return None

    def to_json(self) -> dict[str, Any]:
        """One element of `schedule list --json`."""
        row = self.row
        template = self.template
        local = self.next_local()
        provenance = (template.provenance if template else None) or {}
        return {
            "name": row.name,
            "cron": row.cron,
            "timezone": row.timezone,
            "state": row.state,
            "catchup": self.catchup,
            "next_fire_at": iso(row.next_fire_at),
            "next_fire_local": local.isoformat() if local else None,
            "last_fired_at": iso(row.last_fired_at),
            "queue": template.queue if template else None,
            "priority": template.priority if template else None,
            "steps": len(template.steps) if template and isinstance(template.steps, list) else 0,
            "locks": list(template.locks) if template else [],
            "windows": list(template.windows) if template else [],
            "runbook": provenance.get("runbook"),
            "created_by": row.created_by,
            "updated_by": row.updated_by,
            "created_at": iso(row.created_at),
            "updated_at": iso(row.updated_at),
        }


@dataclass(frozen=True)
class Tick:
    """One upcoming run of a schedule, in UTC and in the schedule's zone."""

    utc: datetime
    local: datetime

    def to_json(self) -> dict[str, Any]:
        return {"utc": iso(self.utc), "local": self.local.isoformat()}


def check_name(name: str) -> None:
    """A schedule's name leaves room for the tick in its workflows' names."""
    if not name or len(name) > MAX_NAME or name != name.strip():
        raise InvalidSchedule(
            f"schedule name {name!r} must be 1 to {MAX_NAME} characters without surrounding spaces"
        )


def check_catchup(catchup: str | None) -> Catchup | None:
    if catchup is None:
        return None
    for known in CATCHUPS:
        if catchup == known:
            return known
    raise InvalidSchedule(f"catchup {catchup!r} must be one of {', '.join(CATCHUPS)}")


class Schedules:
    """The operators' schedule operations on one database, as `actor`."""

    def __init__(
        self, db: Database, actor: str, clock: Callable[[], datetime], default_catchup: Catchup
    ) -> None:
        self.db = db
        self.actor = actor
        self.clock = clock
        self.default_catchup = default_catchup

    def view(self, row: ScheduleRow) -> ScheduleView:
        return ScheduleView(row, check_catchup_or(row.catchup, self.default_catchup))

    async def add(
        self,
        name: str,
        times: CronTimes,
        template: Template,
        *,
        catchup: Catchup | None,
    ) -> ScheduleView:
        """Store an active schedule whose first tick is the next one after now."""
        check_name(name)
        now = self.clock()
        first = times.after(now)
        if first is None:
            raise InvalidSchedule(f"cron expression {times.cron!r} never fires after now")
        async with self.db.transaction() as conn:
            added = await schedule_store.schedule_insert(
                conn,
                name=name,
                cron=times.cron,
                timezone=times.zone.key,
                template=template.to_json(),
                catchup=catchup,
                next_fire_at=first,
                created_by=self.actor,
                now=now,
            )
            if not added:
                raise ScheduleExists(f"a schedule named {name!r} already exists")
            row = await schedule_store.schedule_get(conn, name)
        if row is None:
            raise AssertionError("the schedule just added is not there")
        log.info("schedule_added", schedule=name, cron=times.cron, timezone=times.zone.key)
        return self.view(row)

    async def get(self, name: str) -> ScheduleView:
        async with self.db.transaction() as conn:
            row = await schedule_store.schedule_get(conn, name)
        if row is None:
            raise ScheduleNotFound(f"no schedule named {name!r}")
        return self.view(row)

    async def list(self) -> list[ScheduleView]:
        async with self.db.transaction() as conn:
            rows = await schedule_store.schedule_list(conn)
        return [self.view(row) for row in rows]

    async def pause(self, name: str) -> ScheduleView:
        """Fire no more ticks until resumed (a tick already enqueued runs)."""
        return await self._set_state(name, schedule_store.PAUSED)

    async def resume(self, name: str) -> ScheduleView:
        """Fire again from the next tick after now: the ticks of the pause are not fired."""
        return await self._set_state(name, schedule_store.ACTIVE)

    async def _set_state(self, name: str, state: str) -> ScheduleView:
        now = self.clock()
        async with self.db.transaction() as conn:
            row = await schedule_store.schedule_get(conn, name)
            if row is None:
                raise ScheduleNotFound(f"no schedule named {name!r}")
            following = row.next_fire_at
            if state == schedule_store.ACTIVE and row.state != schedule_store.ACTIVE:
                following = CronTimes.of(row.cron, row.timezone).after(now)
            await schedule_store.schedule_set_state(
                conn, name, state=state, next_fire_at=following, actor=self.actor, now=now
            )
            changed = await schedule_store.schedule_get(conn, name)
        if changed is None:
            raise ScheduleNotFound(f"no schedule named {name!r}")
        event = "schedule_paused" if state == schedule_store.PAUSED else "schedule_resumed"
        log.info(event, schedule=name, actor=self.actor)
        return self.view(changed)

    async def remove(self, name: str) -> None:
        """Delete a schedule; the workflows it enqueued stay."""
        async with self.db.transaction() as conn:
            removed = await schedule_store.schedule_delete(conn, name)
        if not removed:
            raise ScheduleNotFound(f"no schedule named {name!r}")
        log.info("schedule_removed", schedule=name, actor=self.actor)

    async def upcoming(self, name: str, count: int) -> Sequence[Tick]:
        """The next `count` ticks after now (whether or not it is paused)."""
        view = await self.get(name)
        times = CronTimes.of(view.row.cron, view.row.timezone)
        return [Tick(tick, times.local(tick)) for tick in times.upcoming(self.clock(), count)]


def check_catchup_or(catchup: str | None, default: Catchup) -> Catchup:
    """The policy a schedule row names, else `default` (also for a value no policy has)."""
    try:
        return check_catchup(catchup) or default
    except InvalidSchedule:
        return default
