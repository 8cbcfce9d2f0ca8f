"""Runbook files: a workflow definition kept in git, with typed parameters.

A runbook is a TOML file (JSON is read too) that describes what `wfectl run FILE` enqueues:

```toml
name = "maint-{app}-{date}"          # the workflow's name; {param}, {date}, {time}, {random}
description = "Restart an app around a maintenance command"
queue = "default"                     # optional
priority = 0                          # optional
locks = ["cluster:{cluster}"]         # optional: concurrency keys; {param} references
windows = ["sat 02:00-05:00 Europe/Paris"]  # optional: maintenance windows (docs/windows.md)

[params.app]
type = "string"                       # string | int | float | bool | list
choices = ["billing", "search"]       # optional
[params.servers]
type = "list"
default = ["intweb1", "intweb2"]      # a parameter with a default is optional

[context]                             # the workflow's context, built from the parameters
target_servers = "{servers}"          # exactly one reference: the value with its type
app = "{app}"

[[steps]]                             # the same objects as the `steps` column; their
step = "shell"                        # references are to the context, rendered when
args = { cmd = ["systemctl", "restart", "{app}"] }   # the step runs
```

The row stays the source of truth: what was enqueued — the file's path and sha256 and
the parameters — is recorded in the workflow's first event.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wfed.errors import InvalidDefinition
from wfed.steps.template import MissingReference, references, render
from wfed.windows import WindowSpecError, parse_windows

T = TypeVar("T")
ParamType = Literal["string", "int", "float", "bool", "list"]
_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "list": (list,),
}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
BUILTIN_NAMES = ("date", "time", "random")


class InvalidRunbook(InvalidDefinition):
    """A runbook file or its parameters cannot be enqueued; the message names the file,
    the line where the parser gives one, and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Param(_Strict):
    type: ParamType = "string"
    description: str = ""
    default: Any = None
    required: bool | None = None
    choices: list[Any] | None = None


class _File(_Strict):
    name: str = Field(min_length=1, max_length=255)
    description: str = ""
    queue: str = Field(default="default", min_length=1, max_length=64)
    priority: int = Field(default=0, ge=-(2**31), le=2**31 - 1)
    params: dict[str, _Param] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    steps: list[Any] = Field(min_length=1)
    locks: list[str] = Field(default_factory=list)
    windows: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class Param:
    """One typed parameter of a runbook."""

    name: str
    type: ParamType
    description: str
    default: Any
    required: bool
    choices: list[Any] | None

    def parse(self, text: str, where: str) -> Any:
        """A value given on the command line (`--param name=text`), as this type."""
        try:
            value = _parse_as(self.type, text)
        except ValueError as exc:
            raise InvalidRunbook(f"{where}: parameter {self.name!r}: {exc}") from None
        return self.check(value, where)

    def check(self, value: Any, where: str) -> Any:
        """`value` if it has this parameter's type and is one of its choices."""
        python = _PYTHON_TYPES[self.type]
        if not isinstance(value, python) or (self.type != "bool" and isinstance(value, bool)):
            article = "an" if self.type == "int" else "a"
            raise InvalidRunbook(
                f"{where}: parameter {self.name!r} must be {article} {self.type}, "
                f"got {json.dumps(value)}"
            )
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(json.dumps(choice) for choice in self.choices)
            raise InvalidRunbook(
                f"{where}: parameter {self.name!r} must be one of {allowed}, "
                f"got {json.dumps(value)}"
            )
        return value


@dataclass(frozen=True)
class Runbook:
    """A runbook file, read and checked (its steps are checked against the registry
    when it is planned)."""

    path: str
    sha256: str
    name: str
    description: str
    queue: str
    priority: int
    params: dict[str, Param]
    context: dict[str, Any]
    steps: list[Any]
    locks: list[str] = field(default_factory=list)
    """Concurrency keys, with parameter references rendered when enqueued."""
    windows: list[str] = field(default_factory=list)
    """Maintenance windows the workflow runs in (checked when the file is read)."""


@dataclass(frozen=True)
class Enqueue:
    """What a runbook with its parameters puts in a `workflows` row."""

    name: str
    steps: list[Any]
    context: dict[str, Any]
    queue: str
    priority: int
    provenance: dict[str, Any] = field(default_factory=dict)
    """The first event's detail: the runbook's path and sha256, and the parameters."""
    locks: list[str] = field(default_factory=list)
    """The concurrency keys the workflow takes (`workflows.locks`)."""
    windows: list[str] = field(default_factory=list)
    """Its maintenance windows (`workflows.windows`)."""


def load_runbook(path: str | Path) -> Runbook:
    """Read and check a runbook file (TOML, or JSON for a `.json` file)."""
    where = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise InvalidRunbook(f"{where}: no such file") from None
    except OSError as exc:
        raise InvalidRunbook(f"{where}: cannot read it: {exc.strerror}") from None
    data = _decode(raw, where, json_file=where.endswith(".json"))
    try:
        parsed = _File.model_validate(data)
    except ValidationError as exc:
        raise InvalidRunbook(f"{where}: {_problem(exc)}") from None
    params = {name: _param(name, spec, where) for name, spec in parsed.params.items()}
    try:
        parse_windows(parsed.windows)
    except WindowSpecError as exc:
        raise InvalidRunbook(f"{where}: windows: {exc}") from None
    return Runbook(
        path=str(Path(path).resolve()),
        sha256=hashlib.sha256(raw).hexdigest(),
        name=parsed.name,
        description=parsed.description,
        queue=parsed.queue,
        priority=parsed.priority,
        params=params,
        context=parsed.context,
        steps=parsed.steps,
        locks=parsed.locks,
        windows=parsed.windows,
    )


def enqueue(
    runbook: Runbook,
    given: dict[str, str],
    *,
    now: datetime,
    name: str | None = None,
    queue: str | None = None,
) -> Enqueue:
    """The row a runbook makes with the parameters given as text (`--param k=v`):
    every required parameter given, every value of its type, names resolved."""
    where = runbook.path
    unknown = sorted(set(given) - set(runbook.params))
    if unknown:
        known = ", ".join(sorted(runbook.params)) or "none"
        raise InvalidRunbook(f"{where}: unknown parameter {unknown[0]!r} (parameters: {known})")
    values: dict[str, Any] = {}
    for param in runbook.params.values():
        if param.name in given:
            values[param.name] = param.parse(given[param.name], where)
        elif param.required:
            raise InvalidRunbook(
                f"{where}: missing parameter {param.name!r} ({param.type}"
                + (f": {param.description}" if param.description else "")
                + f"); give it with --param {param.name}=VALUE"
            )
        else:
            values[param.name] = param.default
    builtins = {
        "date": now.strftime("%Y%m%d"),
        "time": now.strftime("%H%M%S"),
        "random": secrets.token_hex(3),
    }
    scope = {**builtins, **values}
    try:
        context = render(runbook.context, scope)
        workflow_name = name or render(runbook.name, scope)
        locks = [render(key, scope) for key in runbook.locks]
    except MissingReference as exc:
        raise InvalidRunbook(f"{where}: {exc} (parameters and date, time, random)") from None
    if not isinstance(workflow_name, str):
        raise InvalidRunbook(f"{where}: name: must render to a string")
    if not all(isinstance(key, str) for key in locks):
        raise InvalidRunbook(f"{where}: locks: every key must render to a string")
    provenance = {"runbook": where, "sha256": runbook.sha256, "params": values}
    return Enqueue(
        name=workflow_name,
        steps=runbook.steps,
        context=context,
        queue=queue or runbook.queue,
        priority=runbook.priority,
        provenance=provenance,
        locks=locks,
        windows=runbook.windows,
    )


def checked(path: str, plan: Callable[[], T]) -> T:
    """`plan()`, its InvalidDefinition named with the runbook file."""
    try:
        return plan()
    except InvalidRunbook:
        raise
    except InvalidDefinition as exc:
        raise InvalidRunbook(f"{path}: {exc}") from None


def lint(directory: str, plan: Callable[[Any], Any]) -> list[str]:
    """Every problem of the runbook files (*.toml, *.json) under `directory`, one line
    each; an empty list when all are good. `plan` validates a definition's steps."""
    files = sorted(p for p in Path(directory).rglob("*") if p.suffix in {".toml", ".json"})
    if not files:
        return [f"{directory}: no runbook files (*.toml, *.json)"]
    problems: list[str] = []
    for file in files:
        try:
            runbook = load_runbook(file)
            check_references(runbook, str(file))
            checked(str(file), lambda: plan(runbook.steps))  # noqa: B023 - called at once
        except InvalidDefinition as exc:
            problems.append(str(exc))
    return problems


def check_references(runbook: Runbook, where: str) -> None:
    """InvalidRunbook for a reference in the name or the context to neither a parameter
    nor date, time or random: what enqueuing would refuse, found without parameters.
    (The steps' references are to the context as it will be when they run: not checked.)"""
    known = set(runbook.params) | set(BUILTIN_NAMES)
    fields = [("name", runbook.name)]
    fields += [(f"context.{key}", value) for key, value in runbook.context.items()]
    for at, value in fields:
        for path in references(value):
            root = re.split(r"[.\[]", path, maxsplit=1)[0]
            if root not in known:
                params = ", ".join(sorted(runbook.params)) or "none"
                raise InvalidRunbook(
                    f"{where}: {at}: {{{path}}} is neither a parameter nor "
                    f"{', '.join(BUILTIN_NAMES)} (parameters: {params})"
                )


def _decode(raw: bytes, where: str, *, json_file: bool) -> Any:
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        raise InvalidRunbook(f"{where}: not UTF-8 text (byte {exc.start})") from None
    if json_file:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidRunbook(f"{where}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"at line (\d+)", str(exc))
        at = f":{line.group(1)}" if line else ""
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise InvalidRunbook(f"{where}{at}: not valid TOML: {message}") from None


def _problem(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"{where}: unknown key"
    if first["type"] == "missing":
        return f"{where}: missing"
    return f"{where}: {first['msg'].lower()}"


def _param(name: str, spec: _Param, where: str) -> Param:
    at = f"{where}: params.{name}"
    if not _NAME.match(name) or name in BUILTIN_NAMES:
        raise InvalidRunbook(
            f"{at}: a parameter name is letters, digits and _, and not one of "
            f"{', '.join(BUILTIN_NAMES)}"
        )
    required = spec.default is None if spec.required is None else spec.required
    param = Param(name, spec.type, spec.description, spec.default, required, spec.choices)
    untyped = Param(name, spec.type, spec.description, None, required, None)
    for choice in spec.choices or []:
        untyped.check(choice, f"{at}.choices")
    if spec.default is not None:
        param.check(spec.default, f"{at}.default")
    return param


def _parse_as(kind: ParamType, text: str) -> Any:
    if kind == "string":
        return text
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not an int") from None
    if kind == "float":
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
    if kind == "bool":
        lowered = text.strip().lower()
        if lowered in _TRUE | _FALSE:
            return lowered in _TRUE
        raise ValueError(f"{text!r} is not a bool (true or false)")
    # list: a JSON list, or items separated by commas
    if text.strip().startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise ValueError(f"{text!r} starts like a JSON list but does not parse") from None
        if not isinstance(value, list):
            raise ValueError(f"{text!r} is not a list")
        return value
    return [item.strip() for item in text.split(",") if item.strip()]
