"""The argument forms of wfectl: `KEY=VALUE`, `--step` values, `--run-after WHEN` and
choices such as `--state`.

A malformed argument is a usage error (`typer.BadParameter`, exit code 2), raised before
anything touches the database. A VALUE that looks like JSON but is not is refused with
one line and exit code 1 (`BrokenJson`): it would otherwise be stored as a string.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

import typer

from wfed.errors import WfedError

Choice = TypeVar("Choice", bound=StrEnum)

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RELATIVE = re.compile(r"\+(?:\d+[smhd])+")
_RELATIVE_PART = re.compile(r"(\d+)([smhd])")


def _no_constants(name: str) -> Any:
    # NaN and Infinity are not JSON (PostgreSQL's jsonb refuses them): keep them as text.
    raise ValueError(name)


_SHOWN = 80
"""Characters of an argument a message repeats: enough to recognise it."""


def _shortened(raw: str) -> str:
    return raw if len(raw) <= _SHOWN else f"{raw[:_SHOWN]}… ({len(raw):,} characters)"


def _loads(raw: str) -> Any:
    """`raw` as JSON, NaN and Infinity refused. A nesting too deep for the parser is a
    ValueError like any other bad JSON, not a RecursionError."""
    try:
        return json.loads(raw, parse_constant=_no_constants)
    except RecursionError:
        raise ValueError("it nests too deeply to be read: flatten it") from None


class BrokenJson(WfedError):
    """A KEY=VALUE whose VALUE starts like a JSON object or array but does not parse."""


def choices(kind: type[StrEnum]) -> str:
    """`kind`'s values as help text shows them: `a, b or c`."""
    values = [member.value for member in kind]
    return f"{', '.join(values[:-1])} or {values[-1]}" if len(values) > 1 else values[0]


def one_of(kind: type[Choice], what: str) -> Callable[[str], Choice]:
    """A parser of a choice among `kind`'s values; anything else is a usage error naming
    them (typer's own message for an enum starts with pydantic's "Value error,")."""

    def parse(raw: str | Choice) -> Choice:
        if isinstance(raw, kind):  # a default, already parsed
            return raw
        try:
            return kind(raw)
        except ValueError:
            raise typer.BadParameter(f"{raw!r} is not {what}: use {choices(kind)}") from None

    return parse


def parse_value(raw: str) -> Any:
    """VALUE of KEY=VALUE: JSON where it parses (`5`, `true`, `["a"]`), else the string.
    A VALUE starting with `{` or `[` must be JSON (ValueError saying why)."""
    try:
        return _loads(raw)
    except ValueError as exc:
        if raw.lstrip().startswith(("{", "[")):
            raise ValueError(str(exc)) from None
        return raw


def parse_assignments(items: Sequence[str], option: str) -> dict[str, Any]:
    """`KEY=VALUE` arguments as a mapping (a later KEY wins)."""
    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(
                f"{item!r} is not KEY=VALUE (e.g. cmd='[\"true\"]' or servers=web1)",
                param_hint=option,
            )
        try:
            values[key] = parse_value(raw)
        except ValueError as exc:
            if len(raw) > _SHOWN:
                raise BrokenJson(
                    f"{key}={_shortened(raw)}: the value starts like JSON but is not JSON "
                    f"({exc}); fix it, or give the text as a JSON string"
                ) from None
            text = json.dumps(raw, ensure_ascii=False)
            raise BrokenJson(
                f"{key}={raw}: the value starts like JSON but is not JSON ({exc}); fix it, "
                f"or to store the text give it as a JSON string: {key}='{text}'"
            ) from None
    return values


def parse_json_object(raw: str, option: str) -> dict[str, Any]:
    """A JSON object argument such as `--ctx-json '{"a": 1}'`."""
    try:
        value = _loads(raw)
    except ValueError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}", param_hint=option) from None
    if not isinstance(value, dict):
        raise typer.BadParameter(
            f'must be a JSON object like {{"key": "value"}}, got {type(value).__name__}',
            param_hint=option,
        )
    return value


def parse_step(raw: str) -> Any:
    """A `--step` value: a step name, or a JSON object like {"step": "sleep", "args": {…}}."""
    if not raw.lstrip().startswith("{"):
        return raw
    try:
        return _loads(raw)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{_shortened(raw)!r} is not valid JSON ({exc}); give a step name or an object like "
            '\'{"step": "sleep", "args": {"seconds": 1}}\'',
            param_hint="--step",
        ) from None


def parse_when(raw: str, now: datetime) -> datetime:
    """`--run-after WHEN` as a naive UTC datetime (what the database stores).

    WHEN is ISO-8601 (naive means UTC; an offset is converted to UTC) or relative to `now`:
    `+30s`, `+10m`, `+2h`, `+1d`, or combined like `+1h30m`.
    """
    text = raw.strip()
    if _RELATIVE.fullmatch(text):
        seconds = sum(
            int(amount) * _UNIT_SECONDS[unit] for amount, unit in _RELATIVE_PART.findall(text)
        )
        try:
            return now + timedelta(seconds=seconds)
        except OverflowError:
            raise typer.BadParameter(
                f"{raw!r} is past the year 9999", param_hint="--run-after"
            ) from None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{raw!r} is neither ISO-8601 (2026-11-27T22:00, UTC unless it has an offset) "
            "nor relative (+30s, +10m, +2h, +1d)",
            param_hint="--run-after",
        ) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment
