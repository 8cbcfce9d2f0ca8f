"""A value read from a JSON column whose text does not parse.

Only SQLite lets such text in (a row inserted by hand); the store hands it over as this
type instead of raising, and definition parsing turns it into a clear error for that
workflow alone. It lives apart from both so that neither depends on the other.
"""

from __future__ import annotations


class UnreadableJson(str):
    """A JSON column's text that does not parse (only SQLite lets such text in)."""

    __slots__ = ()
