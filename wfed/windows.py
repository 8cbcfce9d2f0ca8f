"""Maintenance windows: when a workflow (or a queue) may run.

A window is written `DAYS HH:MM-HH:MM [ZONE]`, for example `sat 02:00-05:00 Europe/Paris`:

- DAYS: `mon` … `sun`, a comma list (`sat,sun`), a range (`mon-fri`, or wrapping round
  the week: `fri-mon`), or every day (`daily` or `*`). Case does not matter.
- HH:MM-HH:MM: the opening and the closing, in the zone's wall-clock time. A closing at
  or before the opening is on the next day (`fri 22:00-02:00` closes Saturday 02:00);
  `24:00` is the end of the day. The day names the day the window *opens*.
- ZONE: an IANA time zone (`Europe/Paris`); UTC when left out.

Days with a daylight-saving change keep the wall-clock times: a `02:00-05:00` window is
two hours long on the day clocks go forward and four on the day they go back. A wall
time that does not exist (skipped by the change) is read with the offset in force before
the change, as zoneinfo does (Paris `02:30` on the spring day is 03:30 summer time); a
wall time that happens twice is its first occurrence.

Everything here is pure: times in and out are naive UTC datetimes, as wfed stores them,
and the caller passes the time. The time zone database is loaded when a zone is first
looked up, not when this module is imported (wfectl's start-up is measured).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import cache
from typing import Any

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_SPEC_LENGTH = 100
"""A window's text is stored (`window_paused`) and quoted in messages: kept short."""
MAX_WINDOWS = 32
"""Windows per workflow or queue: enough for any weekly plan, bounded for a hostile row."""

_SPEC = re.compile(
    r"^\s*(?P<days>\S+)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})"
    r"(?:\s+(?P<zone>\S+))?\s*$"
)
_ZONE = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(?:/[A-Za-z0-9_+\-]+)*$")
# How far around a moment the occurrences of a weekly window are listed: a weekly window
# opens (and closed last) at most a week, plus a day crossing midnight, plus a zone's
# offset, away from any moment.
_DAYS_BEFORE = 8
_DAYS_AFTER = 9


class WindowSpecError(ValueError):
    """A window that cannot be read; the message names what is wrong and the grammar."""


GRAMMAR_HINT = "write it as 'DAYS HH:MM-HH:MM [ZONE]', e.g. 'sat 02:00-05:00 Europe/Paris'"


@dataclass(frozen=True)
class Window:
    """One window, as parsed from its text."""

    spec: str
    """The text as written (stripped): what messages and `window_paused` name."""
    days: frozenset[int]
    """The weekdays it opens on (Monday is 0)."""
    start: int
    """Minutes after local midnight it opens at."""
    end: int
    """Minutes after local midnight it closes at; at or before `start`: the next day."""
    zone: str

    def occurrences(self, around: datetime) -> Iterator[tuple[datetime, datetime]]:
        """The (opening, closing) of every occurrence from about eight days before
        `around` to nine days after, in order, as naive UTC."""
        tz = _zone(self.zone)
        local = around.replace(tzinfo=UTC).astimezone(tz).date()
        for offset in range(-_DAYS_BEFORE, _DAYS_AFTER + 1):
            day = local + timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            opening = _utc(day, self.start, tz)
            closing_day = day if self.end > self.start else day + timedelta(days=1)
            closing = _utc(closing_day, self.end, tz)
            if closing > opening:  # a window inside a skipped hour has no length
                yield opening, closing

    def open_at(self, moment: datetime) -> tuple[datetime, datetime] | None:
        """The occurrence open at `moment` (opening included, closing excluded)."""
        for opening, closing in self.occurrences(moment):
            if opening <= moment < closing:
                return opening, closing
        return None

    def next_opening(self, after: datetime) -> datetime | None:
        """The first opening later than `after`."""
        return next((o for o, _ in self.occurrences(after) if o > after), None)

    def last_closing(self, before: datetime) -> datetime | None:
        """The latest closing at or before `before`."""
        closings = [c for _, c in self.occurrences(before) if c <= before]
        return max(closings, default=None)


def _utc(day: date, minutes: int, tz: tzinfo) -> datetime:
    if minutes == 24 * 60:  # 24:00 is the next day's midnight
        day, minutes = day + timedelta(days=1), 0
    local = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=tz)
    return local.astimezone(UTC).replace(tzinfo=None)


@cache
def _zone(name: str) -> tzinfo:
    if name.upper() == "UTC":
        return UTC
    # Imported here: loading the zone machinery is left to the processes that need it.
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # noqa: PLC0415

    if not _ZONE.match(name) or ".." in name:
        raise WindowSpecError(f"unknown time zone {name!r} (an IANA name, e.g. Europe/Paris)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise WindowSpecError(
            f"unknown time zone {name!r} (an IANA name, e.g. Europe/Paris)"
        ) from None


def parse_window(text: Any) -> Window:
    """Read one window, or raise WindowSpecError naming the problem."""
    if not isinstance(text, str):
        raise WindowSpecError(f"a window is a string, not {_shown(text)}; {GRAMMAR_HINT}")
    spec = text.strip()
    if len(spec) > MAX_SPEC_LENGTH:
        raise WindowSpecError(
            f"window {_shown(spec)} is longer than {MAX_SPEC_LENGTH} characters; {GRAMMAR_HINT}"
        )
    found = _SPEC.match(spec)
    if found is None:
        raise WindowSpecError(f"cannot read window {spec!r}; {GRAMMAR_HINT}")
    days = _days(found["days"], spec)
    start = _minutes(found["start"], spec, closing=False)
    end = _minutes(found["end"], spec, closing=True)
    if start == end:
        raise WindowSpecError(
            f"window {spec!r} opens and closes at the same time (a whole day is 00:00-24:00)"
        )
    zone = found["zone"] or "UTC"
    try:
        _zone(zone)
    except WindowSpecError as exc:
        raise WindowSpecError(f"window {spec!r}: {exc}") from None
    return Window(spec=spec, days=days, start=start, end=end, zone=zone)


def _days(text: str, spec: str) -> frozenset[int]:
    lowered = text.lower()
    if lowered in {"daily", "*"}:
        return frozenset(range(7))
    days: set[int] = set()
    for part in lowered.split(","):
        first, _, last = part.partition("-")
        if first not in DAY_NAMES or (last and last not in DAY_NAMES):
            raise WindowSpecError(
                f"window {spec!r}: {part!r} is not a day (mon, tue, wed, thu, fri, sat, sun, "
                "a list such as sat,sun, a range such as mon-fri, or daily)"
            )
        begin = DAY_NAMES.index(first)
        stop = DAY_NAMES.index(last) if last else begin
        days.update((begin + i) % 7 for i in range((stop - begin) % 7 + 1))
    return frozenset(days)


def _minutes(text: str, spec: str, *, closing: bool) -> int:
    hours, _, minutes = text.partition(":")
    value = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or value > 24 * 60 or (value == 24 * 60 and not closing):
        raise WindowSpecError(f"window {spec!r}: {text!r} is not a time of day (00:00 to 23:59)")
    return value


def parse_windows(value: Any) -> tuple[Window, ...]:
    """Read a list of windows (a `windows` column, a config entry, `--window` options);
    None is no windows. WindowSpecError names the first problem."""
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise WindowSpecError(
            f"windows must be a list of strings such as ['sat 02:00-05:00 Europe/Paris'], "
            f"not {_shown(value)}"
        )
    if len(value) > MAX_WINDOWS:
        raise WindowSpecError(f"{len(value)} windows given; at most {MAX_WINDOWS} are allowed")
    return tuple(parse_window(item) for item in value)


def _shown(value: Any) -> str:
    """A hostile value, bounded, for a message."""
    text = repr(value)
    shown = text if len(text) <= 60 else text[:57] + "..."
    return f"{type(value).__name__} {shown}"


# -- sets of windows -------------------------------------------------------------------


Windows = Sequence[Window]
"""Several windows: open when any of them is (empty: no restriction)."""


def open_window(windows: Windows, moment: datetime) -> tuple[Window, datetime] | None:
    """The window of `windows` open at `moment` that closes last, and its closing; None
    when all are closed."""
    found: tuple[Window, datetime] | None = None
    for window in windows:
        occurrence = window.open_at(moment)
        if occurrence is not None and (found is None or occurrence[1] > found[1]):
            found = (window, occurrence[1])
    return found


def is_open(windows: Windows, moment: datetime) -> bool:
    """Whether a workflow bound by `windows` may run at `moment` (no windows: always)."""
    return not windows or open_window(windows, moment) is not None


def next_opening(windows: Windows, after: datetime) -> tuple[Window, datetime] | None:
    """The window of `windows` that opens first after `after`, and when."""
    found: tuple[Window, datetime] | None = None
    for window in windows:
        opening = window.next_opening(after)
        if opening is not None and (found is None or opening < found[1]):
            found = (window, opening)
    return found


def last_closed(windows: Windows, moment: datetime) -> Window | None:
    """The window of `windows` that closed last at or before `moment`: the one whose
    closing a workflow that may not run at `moment` is halted by."""
    found: tuple[Window, datetime] | None = None
    for window in windows:
        closing = window.last_closing(moment)
        if closing is not None and (found is None or closing > found[1]):
            found = (window, closing)
    return None if found is None else found[0]


def specs(windows: Iterable[Window]) -> list[str]:
    """The windows' texts, as stored."""
    return [window.spec for window in windows]


# -- a queue's windows and a workflow's own, together ------------------------------------


@dataclass(frozen=True)
class Closed:
    """Why a workflow may not run at a moment: the window that closed (None when it has
    not opened since the windows were set), and when it may run next."""

    window: Window | None
    opens_at: datetime | None
    """The next moment both its queue's and its own windows are open (None: not within
    the next week, e.g. windows that never overlap)."""


@dataclass(frozen=True)
class WindowGate:
    """The windows a workflow runs in: its queue's (config) and its own (its row). It may
    run while one of each (of those that are set) is open."""

    queue: Windows = ()
    own: Windows = ()

    def __bool__(self) -> bool:
        return bool(self.queue or self.own)

    def closed(self, moment: datetime) -> Closed | None:
        """None when the workflow may run at `moment`, else why not and until when."""
        shut = [ws for ws in (self.queue, self.own) if not is_open(ws, moment)]
        if not shut:
            return None
        return Closed(last_closed(shut[0], moment), self.next_opening(moment))

    def next_opening(self, after: datetime) -> datetime | None:
        """The first moment at or after `after` that both kinds of windows are open."""
        moment = after
        for _ in range(64):  # each turn moves to a later opening; a week has few
            behind = [ws for ws in (self.queue, self.own) if not is_open(ws, moment)]
            if not behind:
                return moment
            opening = next_opening(behind[0], moment)
            if opening is None or opening[1] - after > timedelta(days=8):
                return None
            moment = opening[1]
        return None


@dataclass(frozen=True)
class QueueWindows:
    """The windows of each queue, from `[windows] queues` (already checked)."""

    by_queue: Mapping[str, tuple[Window, ...]]

    @classmethod
    def parse(cls, queues: Mapping[str, Sequence[str]]) -> QueueWindows:
        return cls({queue: parse_windows(list(specs)) for queue, specs in queues.items()})

    def of(self, queue: str) -> tuple[Window, ...]:
        return self.by_queue.get(queue, ())

    def open_queues(self, queues: Sequence[str], moment: datetime) -> list[str]:
        """The queues of `queues` a claim may take from at `moment`."""
        return [queue for queue in queues if is_open(self.of(queue), moment)]
