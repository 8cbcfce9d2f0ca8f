"""When a schedule fires: its cron expression read in its time zone, as naive UTC instants.

The cron arithmetic is cronsim's, run on aware datetimes in the schedule's zone; what goes
in and out is naive UTC, as every timestamp column holds. cronsim follows Debian cron
across daylight-saving changes for a job at a fixed time of day (a minute and an hour
that are not `*` or `*/n`):

- spring forward: a time that does not exist that day (02:30 in Europe/Paris on the last
  Sunday of March) fires at the first minute that does (03:00 CEST);
- fall back: a time that happens twice (01:30 on the last Sunday of October) fires once,
  at its first occurrence (01:30 CEST).

A job every n minutes or hours runs on real elapsed time instead: an hourly job fires at
both 02:00 of a fall-back night, and at no 02:00 of a spring-forward one.

Every function here is pure: the current time is an argument, never read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from wfed.errors import InvalidDefinition

# An expression that matches nothing for this long is refused (cronsim gives up at 50).
_ONE_SECOND = timedelta(seconds=1)
# Bounds the ticks one call enumerates, whatever the expression and the interval.
MAX_TICKS = 1000


class InvalidSchedule(InvalidDefinition):
    """A cron expression or a time zone that cannot be used; the message says which."""


@dataclass(frozen=True)
class CronTimes:
    """A cron expression in a time zone: the instants it matches, as naive UTC."""

    cron: str
    zone: ZoneInfo

    @classmethod
    def of(cls, cron: str, timezone: str) -> CronTimes:
        """Check `cron` (5 fields, or 6 with seconds first) and `timezone` (an IANA name
        such as Europe/Paris); InvalidSchedule naming the problem."""
        zone = _zone(timezone)
        expression = " ".join(cron.split())
        if len(expression.split()) not in {5, 6}:
            raise InvalidSchedule(
                f"cron expression {cron!r} must have 5 fields (minute hour day-of-month "
                "month day-of-week), or 6 with seconds first"
            )
        try:
            first = next(CronSim(expression, datetime(2000, 1, 1, tzinfo=zone)), None)
        except CronSimError as exc:
            raise InvalidSchedule(f"cron expression {cron!r}: {exc}") from None
        if first is None:
            raise InvalidSchedule(f"cron expression {cron!r} never matches a date")
        return cls(expression, zone)

    @property
    def has_seconds(self) -> bool:
        """Whether the expression has a seconds field (6 fields)."""
        return len(self.cron.split()) == 6

    @property
    def _cronsim_form(self) -> tuple[str, timedelta]:
        """The expression cronsim is given, and the seconds added to its ticks.

        cronsim applies Debian cron's daylight-saving rules to 5-field expressions only.
        A 6-field one at a fixed second, minute and hour is the 5-field one shifted by its
        second, so that it fires once on those days too."""
        fields = self.cron.split()
        fixed_time = not fields[1].startswith("*") and not fields[2].startswith("*")
        if len(fields) == 6 and fields[0].isdigit() and fixed_time:
            return " ".join(fields[1:]), timedelta(seconds=int(fields[0]))
        return self.cron, timedelta(0)

    def local(self, instant: datetime) -> datetime:
        """A naive UTC instant as an aware datetime in the schedule's zone."""
        return instant.replace(tzinfo=UTC).astimezone(self.zone)

    def after(self, instant: datetime) -> datetime | None:
        """The first tick strictly after `instant`; None if there is none (an expression
        such as Feb 30 that cronsim gives up on)."""
        return next(self.iterate(instant), None)

    def iterate(self, instant: datetime) -> Iterator[datetime]:
        """The ticks strictly after `instant`, in order, without end."""
        expression, offset = self._cronsim_form
        ticks = CronSim(expression, self.local(instant - offset))
        last = instant
        while True:
            try:
                tick = _utc(next(ticks)) + offset
            except StopIteration:
                return
            # On a fall-back night cronsim may hand back the first occurrence of an hour
            # that the reference already passed the second time (it reckons in wall time):
            # never go back in real time.
            if tick > last:
                last = tick
                yield tick

    def upcoming(self, instant: datetime, count: int) -> list[datetime]:
        """The next `count` ticks strictly after `instant`."""
        found: list[datetime] = []
        for tick in self.iterate(instant):
            found.append(tick)
            if len(found) >= count:
                break
        return found

    def latest(self, instant: datetime) -> datetime | None:
        """The last tick at or before `instant`; None if none in cronsim's 50 years."""
        # Reverse iteration starts strictly before its start: begin a second later.
        expression, offset = self._cronsim_form
        start = instant.replace(microsecond=0) + _ONE_SECOND - offset
        try:
            tick = next(CronSim(expression, self.local(start), reverse=True))
        except StopIteration:
            return None
        # Reverse iteration reckons in wall time, so on a fall-back night it can miss a
        # tick of the repeated hour; forward iteration from its answer is the reference
        # (the same ticks `after` gives), and finds any tick it missed.
        best: datetime | None = None
        for count, later in enumerate(self.iterate(_utc(tick) + offset - _ONE_SECOND)):
            if later > instant or count >= MAX_TICKS:
                break
            best = later
        return best

    def due(self, next_fire_at: datetime, now: datetime, grace: timedelta) -> Due:
        """What is due at `now` for a schedule whose next tick is `next_fire_at`.

        Ticks no older than `grace` are on time: each fires. Older ones were missed (no
        daemon ran, or none could reach the database); of those only the latest is
        told, for the catch-up policy to fire or skip.
        """
        horizon = now - grace
        if next_fire_at > now:
            return Due(missed=None, on_time=[], next_fire_at=next_fire_at)
        missed: datetime | None = None
        on_time: list[datetime] = []
        if next_fire_at >= horizon:
            on_time.append(next_fire_at)
            start = next_fire_at
        else:
            missed = self.latest(horizon)
            if missed is None or missed < next_fire_at:
                missed = next_fire_at
            start = horizon
        following: datetime | None = None
        for tick in self.iterate(start):
            if tick > now or len(on_time) >= MAX_TICKS:
                following = tick
                break
            on_time.append(tick)
        return Due(missed=missed, on_time=on_time, next_fire_at=following)


@dataclass(frozen=True)
class Due:
    """A schedule's ticks due at one moment."""

    missed: datetime | None
    """The latest tick older than the grace, if any (earlier missed ones are never fired)."""
    on_time: list[datetime]
    """The ticks within the grace, oldest first."""
    next_fire_at: datetime | None
    """The first tick after them all: where the schedule goes next (None: no more)."""


def _zone(name: str) -> ZoneInfo:
    if not name or name != name.strip():
        raise InvalidSchedule(f"time zone {name!r}: give an IANA name such as Europe/Paris")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidSchedule(
            f"unknown time zone {name!r}: give an IANA name such as Europe/Paris or UTC"
        ) from None


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def workflow_name(schedule: str, tick: datetime, *, seconds: bool) -> str:
    """The name of the workflow a tick enqueues: the schedule's name and the tick in UTC,
    e.g. `nightly-backup-20261130T0200Z` (with seconds for a 6-field expression)."""
    return f"{schedule}-{tick.strftime('%Y%m%dT%H%M%S' if seconds else '%Y%m%dT%H%M')}Z"


# What `workflow_name` adds to a schedule's name: 255 for the workflow's name in all.
NAME_SUFFIX = len("-20261130T020000Z")
