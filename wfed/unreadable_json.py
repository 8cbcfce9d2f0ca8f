"""A value read from a JSON column that cannot be decoded.

SQLite lets any text into a JSON column (a row inserted by hand), and every backend lets
in JSON nested deeper than a decoder can follow (PostgreSQL accepts thousands of levels).
The store hands such a value over as this type instead of raising, and definition
parsing turns it into a clear error for that workflow alone: one row must never break
every reader, let alone the claim of the rows beside it. It lives apart from the store
and the steps so that neither depends on the other.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any


class UnreadableJson(str):
    """A JSON column's text that does not decode."""

    __slots__ = ()

    reason: str = "text that is not valid JSON"


class TooDeepJson(UnreadableJson):
    """JSON nested deeper than the decoder follows."""

    __slots__ = ()

    reason = "JSON nested too deeply to read"


def read_json(text: str | bytes) -> Any:
    """Decode a JSON column's text; what does not decode comes back as UnreadableJson."""
    try:
        return json.loads(text)
    except RecursionError:
        return TooDeepJson(_as_text(text)[:200])
    except (TypeError, ValueError):
        return UnreadableJson(_as_text(text)[:200])


def _as_text(text: str | bytes) -> str:
    return text.decode(errors="replace") if isinstance(text, bytes) else text


class UnreadableTimestamp(datetime):
    """A timestamp column's value that is no timestamp (SQLite stores anything in one).
    It reads as the earliest time, so that nothing comparing it fails; `text` keeps what
    the column held, and the row's workflow goes to error naming it."""

    text: str = ""

    @classmethod
    def of(cls, value: Any) -> UnreadableTimestamp:
        stamp = cls(1, 1, 1)
        stamp.text = str(value)[:80]
        return stamp
