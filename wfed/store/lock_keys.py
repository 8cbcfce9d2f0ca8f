"""What `workflows.locks` may hold: the concurrency keys a workflow needs, as a JSON list
of key names (`["cluster:db1", "pool:web"]`; NULL or `[]`: none).

Keys are case-insensitive: they are taken and shown in lower case, so that every backend
compares them alike (MariaDB's default collation ignores case; PostgreSQL's and SQLite's
do not).

A plain-SQL INSERT can put anything in the column, so the value is read here, once, by
every path that needs it — the claim (which keys to take), the start of a turn (a row it
cannot run goes to `error`), creation and the views — and an unusable value is an
`InvalidDefinition` whose message is bounded whatever the value's size.
"""

from __future__ import annotations

import json
from typing import Any

from wfed.errors import InvalidDefinition
from wfed.unreadable_json import UnreadableJson

KEY_MAX_LENGTH = 255
"""Characters of one key name (the `workflow_locks.lock_key` column)."""
KEYS_MAX = 32
"""Keys one workflow may name."""
_SHOWN = 60


def _shown(value: Any) -> str:
    """A value as a message quotes it: JSON, cut short."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def _kind(value: Any) -> str:
    names = {str: "a string", dict: "an object", bool: "a boolean"}
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


def key_name(key: str) -> str:
    """A key as it is taken, stored and shown: in lower case."""
    return key.lower()


def parse_lock_keys(value: Any) -> tuple[str, ...]:
    """The keys named by a `locks` value, in lower case, sorted and without duplicates
    (the order in which they are taken); InvalidDefinition naming the problem and the
    fix."""
    if value is None:
        return ()
    fix = (
        f"`locks` must be a JSON list of key names (strings of 1 to {KEY_MAX_LENGTH} "
        f'characters, at most {KEYS_MAX}), e.g. ["cluster:db1"]'
    )
    if isinstance(value, UnreadableJson):
        raise InvalidDefinition(f"{fix}; it is {value.reason}: {_shown(str(value))}")
    if not isinstance(value, list):
        raise InvalidDefinition(f"{fix}; it is {_kind(value)} {_shown(value)}")
    if len(value) > KEYS_MAX:
        raise InvalidDefinition(f"{fix}; it has {len(value)} elements")
    for position, key in enumerate(value):
        if not isinstance(key, str):
            raise InvalidDefinition(f"{fix}; element {position} is {_shown(key)}")
        if not key or len(key_name(key)) > KEY_MAX_LENGTH or key != key.strip():
            raise InvalidDefinition(
                f"{fix}, without surrounding spaces; element {position} is {_shown(key)} "
                f"({len(key)} characters)"
            )
    return tuple(sorted({key_name(key) for key in value}))
