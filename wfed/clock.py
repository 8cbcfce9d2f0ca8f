"""Time as wfed stores it: naive UTC datetimes, from a clock that tests can replace."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time as a naive UTC datetime (what every timestamp column holds)."""
    # Built from the aware time's fields: `replace(tzinfo=None)` costs twice as much as
    # the reading itself, and a daemon reads the clock several times per step.
    now = datetime.now(UTC)
    return datetime(now.year, now.month, now.day, now.hour, now.minute, now.second, now.microsecond)
