"""Time as wfed stores it: naive UTC datetimes, from a clock that tests can replace."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time as a naive UTC datetime (what every timestamp column holds)."""
    return datetime.now(UTC).replace(tzinfo=None)
