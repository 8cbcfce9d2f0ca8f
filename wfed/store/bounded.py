"""Texts wfed writes from a row's content, cut to a bounded length.

A message quoting a row (an unknown step name, a step's error, an operator's reason) may
be as long as anything an INSERT put in: stored whole it would fail a column's limit
(MariaDB's TEXT holds 64 KiB) or grow the table without end. Every store write of such a
text goes through `bounded`.
"""

from __future__ import annotations

TEXT_MAX = 4000
"""Characters kept of a message (`last_error`, a step's `error`, an event's `reason`)."""

_CUT = " … [cut]"


def bounded(text: str | None, limit: int = TEXT_MAX) -> str | None:
    """`text`, at most `limit` characters, marked where it was cut."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - len(_CUT)] + _CUT
