"""PostgreSQL's binary timestamps as wfed's connections decode them (the out-of-range
rows themselves: tests/chaos/test_hostile_rows.py, on a real server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from wfed.store.pg_timestamps import decode, encode
from wfed.unreadable_json import UnreadableTimestamp


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 11, 30, 19, 47, 3, 123456),
        datetime(2000, 1, 1),
        datetime(1999, 12, 31, 23, 59, 59, 999999),
        datetime(1, 1, 1),
        datetime(9999, 12, 31, 23, 59, 59, 999998),
        datetime.max,
        datetime.min,
    ],
)
def test_a_time_python_holds_reads_back_as_itself(value: datetime) -> None:
    assert decode(encode(value)) == value


def test_infinities_read_as_the_ends_of_time() -> None:
    assert decode((2**63 - 1,)) == datetime.max
    assert decode((-(2**63),)) == datetime.min


def test_an_aware_time_is_stored_as_utc() -> None:
    paris = datetime(2026, 6, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert decode(encode(paris)) == datetime(2026, 6, 1, 12, 0)
    assert encode(paris) == encode(datetime(2026, 6, 1, 12, 0, tzinfo=UTC))


@pytest.mark.parametrize(
    ("microseconds", "year"),
    # As PostgreSQL 15 sends them: '4713-01-01 BC' and '200000-01-01'.
    [(-211_810_204_800_000_000, "4713 BC"), (6_248_276_496_000_000_000, "200000")],
)
def test_a_time_python_cannot_hold_is_unreadable_naming_its_year(
    microseconds: int, year: str
) -> None:
    value = decode((microseconds,))
    assert isinstance(value, UnreadableTimestamp)
    assert f"the year {year}," in value.text
