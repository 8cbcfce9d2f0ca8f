"""Validation of a workflow definition (`workflows.steps`) and context against a registry.

Messages name the element (`steps[2]`), the problem and the fix, because they end up in
`last_error` of a row someone inserted by hand.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
from dataclasses import dataclass
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PydanticSchemaGenerationError,
    TypeAdapter,
    ValidationError,
)

from wfed.errors import InvalidDefinition
from wfed.steps.base import Step
from wfed.steps.registry import StepRegistry
from wfed.steps.template import is_reference
from wfed.unreadable_json import UnreadableJson

# Bounds on what a row may ask for. A row is written by anyone with an INSERT: a number
# past these is refused with a message rather than overflowing a timer or a timestamp.
MAX_RETRIES = 1000
MAX_DELAY = 7 * 24 * 3600.0
"""The longest retry delay and step timeout, in seconds (a week)."""
MAX_BACKOFF = 100.0
MAX_DEPTH = 64
"""How deeply the context and the step arguments may nest."""
MAX_INTEGER = 2**63 - 1


@dataclass(frozen=True)
class StepPlan:
    """One validated element of a definition: which step, its arguments and its policy."""

    position: int
    name: str
    step_class: type[Step]
    args: dict[str, Any]
    label: str | None
    retries: int
    retry_delay: float
    backoff: float
    timeout: float | None
    idempotent: bool

    def delay_before(self, attempt: int) -> float:
        """The wait before attempt `attempt + 1`, after attempt `attempt` failed: the
        retry delay grown by the backoff, at most MAX_DELAY."""
        try:
            delay = self.retry_delay * self.backoff ** (attempt - 1)
        except OverflowError:
            return MAX_DELAY
        return min(delay, MAX_DELAY)

    @property
    def title(self) -> str:
        """How messages name this step: `step 2 'run_cmd'`, with its label if it has one."""
        label = f" ({self.label})" if self.label else ""
        return f"step {self.position} {self.name!r}{label}"


class _Element(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    step: str = Field(min_length=1, max_length=255)
    args: dict[str, Any] = Field(default_factory=dict)
    label: str | None = Field(default=None, max_length=255)
    retries: int | None = Field(default=None, ge=0, le=MAX_RETRIES)
    retry_delay: float | None = Field(default=None, ge=0, le=MAX_DELAY, allow_inf_nan=False)
    backoff: float | None = Field(default=None, ge=1, le=MAX_BACKOFF, allow_inf_nan=False)
    timeout: float | None = Field(default=None, gt=0, le=MAX_DELAY, allow_inf_nan=False)
    idempotent: bool | None = None


_ELEMENT_FORM = (
    'each element is a step name or an object like {"step": "shell", "args": {...}, '
    '"label": "...", "retries": 2, "retry_delay": 5, "timeout": 600}'
)


def _pydantic_problem(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"{where}: unknown key"
    if first["type"] == "missing":
        return f"{where}: missing"
    return f"{where}: {first['msg'].lower()}" if where else first["msg"].lower()


def parse_element(position: int, raw: Any, registry: StepRegistry) -> StepPlan:
    """Validate one element of a definition."""
    where = f"steps[{position}]"
    if isinstance(raw, str):
        raw = {"step": raw}
    if not isinstance(raw, dict):
        raise InvalidDefinition(f"{where}: {type(raw).__name__} is not a step ({_ELEMENT_FORM})")
    try:
        element = _Element.model_validate(raw)
    except ValidationError as exc:
        raise InvalidDefinition(f"{where}.{_pydantic_problem(exc)} ({_ELEMENT_FORM})") from None
    step_class = registry.get(element.step)
    if step_class is None:
        known = ", ".join(registry.names()) or "none"
        raise InvalidDefinition(
            f"{where}: unknown step {element.step!r}; registered steps: {known} "
            "(steps come from the modules in the config's [steps] modules)"
        )
    check_args(step_class, element.args, f"{where} ({element.step})")
    return StepPlan(
        position=position,
        name=element.step,
        step_class=step_class,
        args=element.args,
        label=element.label,
        retries=step_class.retries if element.retries is None else element.retries,
        retry_delay=(
            step_class.retry_delay if element.retry_delay is None else element.retry_delay
        ),
        backoff=step_class.backoff if element.backoff is None else element.backoff,
        timeout=step_class.timeout if element.timeout is None else element.timeout,
        idempotent=(
            step_class.is_idempotent(element.args)
            if element.idempotent is None
            else element.idempotent
        ),
    )


def parse_definition(steps: Any, registry: StepRegistry) -> list[StepPlan]:
    """Validate a whole definition; InvalidDefinition names the first problem."""
    if not isinstance(steps, list):
        raise InvalidDefinition(
            f"steps must be a non-empty JSON list of steps, got {_json_type(steps)} "
            f"({_ELEMENT_FORM})"
        )
    if not steps:
        raise InvalidDefinition("steps is an empty list: a workflow needs at least one step")
    check_json_bounds(steps, "steps")
    return [parse_element(position, raw, registry) for position, raw in enumerate(steps)]


CACHED_DEFINITION_CHARS = 16 * 1024
"""The longest definition (as JSON text) whose plans `parse_row_definition` keeps."""


def parse_row_definition(steps: Any, registry: StepRegistry) -> list[StepPlan]:
    """`parse_definition` of a row's steps. Rows are mostly made from a few templates, and
    validating a definition costs more than running a no-op step: the plans of recent
    definitions are kept, by their JSON text, for the next row that has the same. Plans
    are never changed once made (a step gets rendered copies of their arguments), so
    rows can share them. Only valid definitions are kept; what is not JSON, or too big,
    is validated each time."""
    if not isinstance(steps, list):
        return parse_definition(steps, registry)  # refused: by the message it deserves
    try:
        text = json.dumps(steps, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return parse_definition(steps, registry)
    if len(text) > CACHED_DEFINITION_CHARS:
        return parse_definition(steps, registry)
    return list(_parsed(text, registry))


@functools.lru_cache(maxsize=256)
def _parsed(text: str, registry: StepRegistry) -> tuple[StepPlan, ...]:
    return tuple(parse_definition(json.loads(text), registry))


def parse_context(context: Any) -> dict[str, Any]:
    """Validate a context: a JSON object (NULL counts as empty)."""
    if context is None:
        return {}
    if not isinstance(context, dict):
        raise InvalidDefinition(
            f'context must be a JSON object like {{"key": "value"}}, got {_json_type(context)}'
        )
    check_json_bounds(context, "context")
    return context


def storable_context(context: Any) -> dict[str, Any]:
    """A context given by a caller (a create, a context edit) rather than read from a
    row: what `parse_context` accepts, and JSON every backend stores as written (no NaN
    or infinity, no value json cannot write)."""
    try:
        json.dumps(context, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidDefinition(f"context is not JSON: {exc}") from None
    except RecursionError:
        raise InvalidDefinition(
            f"context nests deeper than {MAX_DEPTH} levels: flatten it"
        ) from None
    return parse_context(context)


def check_json_bounds(value: Any, where: str) -> None:
    """Refuse JSON that wfed could read but not safely work with: nested deeper than
    MAX_DEPTH, or numbers that are not finite or do not fit 64 bits. Walked without
    recursion, so that the check itself cannot overflow the stack."""
    pending: list[tuple[Any, str, int]] = [(value, where, 0)]
    while pending:
        item, path, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise InvalidDefinition(
                f"{where} nests deeper than {MAX_DEPTH} levels (at {path[:120]}): flatten it"
            )
        if isinstance(item, dict):
            for key in item:
                if not isinstance(key, str):
                    # json.dumps would turn it into a string, and 1 and "1" into one key.
                    raise InvalidDefinition(
                        f"{path[:120]}: key {key!r} is not a string (JSON object keys are)"
                    )
            pending.extend((v, f"{path}.{str(k)[:40]}", depth + 1) for k, v in item.items())
        elif isinstance(item, list):
            pending.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(item))
        elif isinstance(item, float) and not math.isfinite(item):
            raise InvalidDefinition(
                f"{path[:120]}: {item} is not a finite number (JSON numbers must fit a double)"
            )
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) > MAX_INTEGER:
            raise InvalidDefinition(f"{path[:120]}: an integer that does not fit 64 bits")


def _json_type(value: Any) -> str:
    if isinstance(value, UnreadableJson):
        return f"{value.reason} ({str(value)[:40]!r})"
    names = {str: "a string", list: "a list", dict: "an object", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


@dataclass(frozen=True)
class _Signature:
    """What argument checking needs of a step class, worked out once per class."""

    named: dict[str, inspect.Parameter]
    open_ended: bool
    adapters: dict[str, TypeAdapter[Any]]


_SIGNATURES: dict[type[Step], _Signature] = {}


def _signature(step_class: type[Step]) -> _Signature:
    # Resolving type hints and building validators costs far more than a no-op step
    # itself; the runner checks arguments on every attempt, so this is cached.
    known = _SIGNATURES.get(step_class)
    if known is None:
        known = _SIGNATURES[step_class] = _inspect_signature(step_class)
    return known


def _inspect_signature(step_class: type[Step]) -> _Signature:
    params = step_class.parameters()
    named = {
        name: p
        for name, p in params.items()
        if p.kind in {inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD}
    }
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    adapters: dict[str, TypeAdapter[Any]] = {}
    for name, hint in step_class.annotations().items():
        if name == "return":
            continue
        try:
            adapters[name] = TypeAdapter(hint)
        except PydanticSchemaGenerationError:
            # A type pydantic cannot validate (a plain class) is not checked rather than
            # refused, as in _resolved_hints; raising would escape as a traceback.
            continue
    return _Signature(named, open_ended, adapters)


def check_args(
    step_class: type[Step], args: dict[str, Any], where: str, *, rendered: bool = False
) -> dict[str, Any]:
    """Check arguments against the step's signature: no unknown names, every required one,
    the right types. Unrendered context references are checked once rendered."""
    signature = _signature(step_class)
    named, open_ended = signature.named, signature.open_ended
    for name in args:
        if name not in named and not open_ended:
            accepted = ", ".join(named) or "none"
            raise InvalidDefinition(f"{where}: unknown argument {name!r} (accepted: {accepted})")
    for name, param in named.items():
        if param.default is inspect.Parameter.empty and name not in args:
            raise InvalidDefinition(f"{where}: missing argument {name!r}")
    checked = dict(args)
    for name, value in args.items():
        adapter = signature.adapters.get(name)
        if adapter is None or (not rendered and _has_reference(value)):
            continue
        try:
            checked[name] = adapter.validate_python(value)
        except ValidationError as exc:
            problem = exc.errors()[0]["msg"].lower()
            raise InvalidDefinition(
                f"{where}: argument {name!r}: {problem} (got {json.dumps(value)[:80]})"
            ) from None
    try:
        step_class.check_arguments(checked)
    except ValueError as exc:
        raise InvalidDefinition(f"{where}: {exc}") from None
    return checked


def _has_reference(value: Any) -> bool:
    if is_reference(value):
        return True
    if isinstance(value, str):
        return "{" in value
    if isinstance(value, list):
        return any(_has_reference(item) for item in value)
    if isinstance(value, dict):
        return any(_has_reference(item) for item in value.values())
    return False
