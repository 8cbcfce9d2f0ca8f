"""PostgreSQL timestamps that Python cannot hold, read without failing the query.

PostgreSQL keeps times from 4713 BC to 294276 AD; Python's `datetime` only years 1 to
9999. asyncpg raises OverflowError for a value outside those years while decoding a row,
so one hand-written `run_after = '4713-01-01 BC'` failed every query that read its row:
the claim of every workflow beside it, `wfectl list` of the whole table. wfed's
connections decode `timestamp` from its binary form (microseconds since 2000-01-01)
itself: a value Python cannot hold becomes an `UnreadableTimestamp`, which sends its
workflow to error naming the column, as on SQLite. `infinity` reads as `datetime.max`, as
asyncpg reads it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from wfed.unreadable_json import UnreadableTimestamp

_EPOCH = datetime(2000, 1, 1)
_MICROSECOND = timedelta(microseconds=1)
_INFINITY = 2**63 - 1
_MINUS_INFINITY = -(2**63)
_MICROSECONDS_A_YEAR = 365.2425 * 86400 * 1_000_000


def decode(value: tuple[int]) -> datetime:
    (microseconds,) = value
    if microseconds == _INFINITY:
        return datetime.max
    if microseconds == _MINUS_INFINITY:
        return datetime.min
    try:
        return _EPOCH + microseconds * _MICROSECOND
    except OverflowError:
        year = 2000 + int(microseconds // _MICROSECONDS_A_YEAR)
        era = f"{1 - year} BC" if year < 1 else f"{year}"
        return UnreadableTimestamp.of(f"a time in the year {era}, which wfed cannot read")


def encode(value: datetime) -> tuple[int]:
    if value.tzinfo is not None:  # a naive UTC time is what the columns hold
        value = value.astimezone(UTC).replace(tzinfo=None)
    if value == datetime.max:
        return (_INFINITY,)
    if value == datetime.min:
        return (_MINUS_INFINITY,)
    return ((value - _EPOCH) // _MICROSECOND,)


def install(dbapi_connection: Any) -> None:
    """Decode and encode `timestamp` on this (SQLAlchemy-adapted asyncpg) connection."""
    dbapi_connection.run_async(
        lambda connection: connection.set_type_codec(
            "timestamp", schema="pg_catalog", encoder=encode, decoder=decode, format="tuple"
        )
    )
