"""Bulk control: selecting workflows by a filter, and what became of each.

A bulk command (`wfectl pause --queue dc2`, …) selects the workflows a `Filter` matches
among those the operation applies to (`Engine.select`), then applies the Engine's own
per-workflow operation to each, passing the workflow as it was selected
(`Selection.expected`): each change is its own guarded transition with its own event, and
a workflow that changed meanwhile is left alone and reported (`Outcome`), never forced.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from wfed.engine.control import Expected
from wfed.engine.json_values import iso
from wfed.errors import InvalidTransition
from wfed.states import Operation, WorkflowState, sources
from wfed.store import selection as selection_store
from wfed.store.database import Database

# The operations a bulk command applies, and the requests pause and stop become on a
# running workflow (whose states they apply to as well).
BULK_OPERATIONS = (
    Operation.PAUSE,
    Operation.RESUME,
    Operation.STOP,
    Operation.RETRY,
    Operation.SKIP,
    Operation.DELETE,
)
_AS_REQUEST = {Operation.PAUSE: Operation.REQUEST_PAUSE, Operation.STOP: Operation.REQUEST_STOP}


def applicable(operation: Operation) -> frozenset[WorkflowState]:
    """The states an operator's operation applies to: directly, or as a request to the
    owner of a running workflow (pause, stop)."""
    states = sources(operation)
    if operation in _AS_REQUEST:
        states |= sources(_AS_REQUEST[operation])
    return states


@dataclass(frozen=True)
class Filter:
    """Which workflows a bulk command acts on; every given part must match."""

    states: frozenset[WorkflowState] = frozenset()
    """In one of these states (none given: any the operation applies to)."""
    queue: str | None = None
    name_like: str | None = None
    """A pattern of the whole name: `*` or `%` any characters, `?` one; the rest literal,
    case-sensitive."""
    older_than: timedelta | None = None
    """Last changed (`updated_at`) longer ago than this."""

    @property
    def empty(self) -> bool:
        """Whether nothing was given (a bulk command needs at least one part)."""
        return (
            not self.states
            and self.queue is None
            and self.name_like is None
            and self.older_than is None
        )


def check_states(operation: Operation, states: Collection[WorkflowState]) -> None:
    """InvalidTransition if a state asked for is one the operation never applies to."""
    allowed = applicable(operation)
    wrong = sorted(set(states) - allowed)
    if wrong:
        raise InvalidTransition(
            f"{operation.value} does not apply to {', '.join(s.value for s in wrong)} "
            f"workflows (it applies to: {', '.join(sorted(s.value for s in allowed))})"
        )


@dataclass(frozen=True)
class Selection:
    """A workflow a filter matched, as it was then."""

    id: int
    name: str
    state: WorkflowState
    queue: str
    updated_at: datetime

    @property
    def expected(self) -> Expected:
        """What the per-workflow operation checks under its lock before it applies."""
        return Expected(self.id, self.state)


def like_pattern(pattern: str) -> str:
    """`--name-like` as SQL LIKE with `/` as its escape character."""
    escaped = re.sub(r"([/_])", r"/\1", pattern)
    return escaped.replace("*", "%").replace("?", "_")


def _name_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    for char in pattern:
        if char in "*%":
            parts.append(".*")
        elif char == "?":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL)


async def select(
    db: Database, operation: Operation, filter_: Filter, now: datetime
) -> list[Selection]:
    """The workflows `filter_` matches among those `operation` applies to, oldest first.
    InvalidTransition if the filter names a state the operation never applies to."""
    check_states(operation, filter_.states)
    states = filter_.states or applicable(operation)
    async with db.transaction() as conn:
        rows = await selection_store.workflows_matching(
            conn,
            states=states,
            queue=filter_.queue,
            name_like=None if filter_.name_like is None else like_pattern(filter_.name_like),
            updated_before=None if filter_.older_than is None else now - filter_.older_than,
        )
    # One rule on every database: LIKE ignores case on MySQL and (for ASCII) SQLite.
    exact = None if filter_.name_like is None else _name_regex(filter_.name_like)
    return [
        Selection(row.id, row.name, row.state, row.queue, row.updated_at)
        for row in rows
        if exact is None or exact.fullmatch(row.name)
    ]


@dataclass(frozen=True)
class Outcome:
    """What a bulk command did to one workflow it selected."""

    name: str
    selected_state: WorkflowState
    changed: bool
    action: str | None = None
    """The event it recorded (`paused`, `pause_requested`, `deleted`, …) if changed."""
    state: WorkflowState | None = None
    """The state it is in now; None once deleted (or gone)."""
    message: str | None = None
    """Why it was left alone."""

    def to_json(self) -> dict[str, Any]:
        """One element of `workflows` in a bulk command's `--json` document."""
        return {
            "name": self.name,
            "selected_state": self.selected_state.value,
            "changed": self.changed,
            "action": self.action,
            "state": None if self.state is None else self.state.value,
            "message": self.message,
        }


def bulk_json(
    operation: Operation,
    filter_: Filter,
    outcomes: Sequence[Outcome],
    *,
    reason: str | None,
    actor: str,
    at: datetime,
) -> dict[str, Any]:
    """A bulk command's `--json` document: the filter, the counts, each workflow."""
    return {
        "operation": operation.value,
        "filter": {
            "states": sorted(state.value for state in filter_.states),
            "queue": filter_.queue,
            "name_like": filter_.name_like,
            "older_than_seconds": None
            if filter_.older_than is None
            else int(filter_.older_than.total_seconds()),
        },
        "reason": reason,
        "actor": actor,
        "at": iso(at),
        "matched": len(outcomes),
        "changed": sum(1 for outcome in outcomes if outcome.changed),
        "skipped": sum(1 for outcome in outcomes if not outcome.changed),
        "workflows": [outcome.to_json() for outcome in outcomes],
    }


def counts(outcomes: Iterable[Outcome]) -> tuple[int, int]:
    """(changed, left alone)."""
    done = [outcome.changed for outcome in outcomes]
    return sum(done), len(done) - sum(done)
