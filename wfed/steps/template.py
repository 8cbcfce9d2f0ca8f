"""Context references in step arguments: `"{app}"`, `"{servers[0]}"`, `"{db.host}"`.

An argument that is exactly one reference takes the referenced value with its JSON type (a
list stays a list); a reference inside a longer string is replaced by the value's text: a
string as it is, anything else as its JSON (`true`, `null`, `[1, 2]`). `{{` and `}}` are
literal braces. Only keys and list indexes are followed: no attributes, calls or
expressions, so a context can never make a step run code.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from wfed.errors import InvalidDefinition

_PATH = r"[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_][A-Za-z0-9_-]*|\[\d+\])*"
_REFERENCE = re.compile(r"\{\{|\}\}|\{(" + _PATH + r")\}")
_WHOLE = re.compile(r"\{(" + _PATH + r")\}")
_PART = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]")


class MissingReference(InvalidDefinition):
    """A template references a context key that does not exist."""


def is_reference(value: Any) -> bool:
    """Whether `value` is a string that is exactly one context reference."""
    return isinstance(value, str) and _WHOLE.fullmatch(value) is not None


def references(value: Any) -> list[str]:
    """Every context path referenced in `value` (strings, lists and objects, recursively)."""
    if isinstance(value, str):
        return [m.group(1) for m in _REFERENCE.finditer(value) if m.group(1)]
    if isinstance(value, list):
        return [path for item in value for path in references(item)]
    if isinstance(value, dict):
        return [path for item in value.values() for path in references(item)]
    return []


def lookup(context: dict[str, Any], path: str) -> Any:
    """The value at `path` in the context; MissingReference names what is missing."""
    current: Any = context
    walked = ""
    for key, index in _PART.findall(path):
        if key:
            walked = f"{walked}.{key}" if walked else key
            if not isinstance(current, dict) or key not in current:
                raise MissingReference(f"context has no key {walked!r} (referenced as {{{path}}})")
            current = current[key]
        else:
            position = int(index)
            if not isinstance(current, list) or position >= len(current):
                raise MissingReference(
                    f"context {walked!r} has no item [{position}] (referenced as {{{path}}})"
                )
            current = current[position]
            walked = f"{walked}[{position}]"
    return current


def render(value: Any, context: dict[str, Any]) -> Any:
    """`value` with every context reference replaced (see the module docstring)."""
    if isinstance(value, str):
        whole = _WHOLE.fullmatch(value)
        if whole:
            # A copy: a step changing its argument must not change the context behind it.
            return copy.deepcopy(lookup(context, whole.group(1)))

        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "{{":
                return "{"
            if match.group(0) == "}}":
                return "}"
            found = lookup(context, match.group(1))
            return found if isinstance(found, str) else json.dumps(found)

        return _REFERENCE.sub(substitute, value)
    if isinstance(value, list):
        return [render(item, context) for item in value]
    if isinstance(value, dict):
        return {key: render(item, context) for key, item in value.items()}
    return value
