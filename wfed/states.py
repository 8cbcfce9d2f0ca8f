"""Workflow and step states, and the one table of which operation moves a workflow where.

Everything here is pure: the store guards the same transitions in SQL (`WHERE state IN …`),
using `sources(operation)` so the two can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from wfed.errors import InvalidTransition


class WorkflowState(StrEnum):
    """The state of a workflow; each member says who moves a workflow out of it."""

    PENDING = "pending"
    """Runnable once `run_after` passed. Left by a claim (→ running), pause, stop."""
    RUNNING = "running"
    """Leased by one owner. Left by its runner: completed, error, paused, stopped, pending."""
    PAUSED = "paused"
    """Halted by an operator or a pause step. Left by resume, skip, restart, stop."""
    ERROR = "error"
    """A step failed for good, the definition is invalid, or a step was interrupted.
    Left by retry, skip, restart, stop, delete."""
    STOPPED = "stopped"
    """Force-stopped; terminal. Left by restart, delete."""
    COMPLETED = "completed"
    """Every step completed or skipped; terminal. Left by restart, delete."""


class StepState(StrEnum):
    """The state of one step of a workflow."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    ERROR = "error"
    SKIPPED = "skipped"
    STOPPED = "stopped"


class Request(StrEnum):
    """A control request left in `workflows.requested` for the owner of a running workflow."""

    PAUSE = "pause"
    STOP = "stop"


class Operation(StrEnum):
    """Everything that changes a workflow's state, by an operator or by its runner."""

    # operator operations (wfectl, Engine)
    PAUSE = "pause"
    STOP = "stop"
    RESUME = "resume"
    RETRY = "retry"
    SKIP = "skip"
    RESTART = "restart"
    DELETE = "delete"
    SET_CONTEXT = "set_context"
    # runner operations (daemon, Engine.run)
    CLAIM = "claim"
    COMPLETE = "complete"
    FAIL = "fail"
    HONOUR_PAUSE = "honour_pause"
    HONOUR_STOP = "honour_stop"
    RELEASE = "release"


S = WorkflowState
TERMINAL: frozenset[WorkflowState] = frozenset({S.STOPPED, S.COMPLETED})
NOT_RUNNING: frozenset[WorkflowState] = frozenset(set(S) - {S.RUNNING})

# operation -> (states it may start from, state it leads to; None = the state is unchanged)
_TABLE: dict[Operation, tuple[frozenset[WorkflowState], WorkflowState | None]] = {
    Operation.PAUSE: (frozenset({S.PENDING}), S.PAUSED),
    Operation.STOP: (frozenset({S.PENDING, S.PAUSED, S.ERROR}), S.STOPPED),
    Operation.RESUME: (frozenset({S.PAUSED}), S.PENDING),
    Operation.RETRY: (frozenset({S.ERROR}), S.PENDING),
    Operation.SKIP: (frozenset({S.ERROR, S.PAUSED}), S.PENDING),
    Operation.RESTART: (NOT_RUNNING, S.PENDING),
    Operation.DELETE: (NOT_RUNNING, None),
    Operation.SET_CONTEXT: (NOT_RUNNING, None),
    Operation.CLAIM: (frozenset({S.PENDING}), S.RUNNING),
    Operation.COMPLETE: (frozenset({S.RUNNING}), S.COMPLETED),
    Operation.FAIL: (frozenset({S.RUNNING}), S.ERROR),
    Operation.HONOUR_PAUSE: (frozenset({S.RUNNING}), S.PAUSED),
    Operation.HONOUR_STOP: (frozenset({S.RUNNING}), S.STOPPED),
    Operation.RELEASE: (frozenset({S.RUNNING}), S.PENDING),
}

# Pause and stop of a running workflow cannot change its state directly: they leave a
# request that its owner honours (pause after the current step, stop at once).
_REQUESTED_WHEN_RUNNING: dict[Operation, Request] = {
    Operation.PAUSE: Request.PAUSE,
    Operation.STOP: Request.STOP,
}


@dataclass(frozen=True)
class Decision:
    """What an operation does to a workflow in a given state."""

    target: WorkflowState | None = None
    """The new state, or None when the state does not change."""
    request: Request | None = None
    """Set instead of `target` when the owner of a running workflow must act."""


def sources(operation: Operation) -> frozenset[WorkflowState]:
    """The states an operation may be applied to directly."""
    return _TABLE[operation][0]


def target(operation: Operation) -> WorkflowState | None:
    """The state an operation leads to (None: unchanged)."""
    return _TABLE[operation][1]


def decide(operation: Operation, state: WorkflowState, name: str = "") -> Decision:
    """Decide what `operation` does to a workflow in `state`, or raise InvalidTransition."""
    allowed, to = _TABLE[operation]
    if state in allowed:
        return Decision(target=to)
    if state is S.RUNNING and operation in _REQUESTED_WHEN_RUNNING:
        return Decision(request=_REQUESTED_WHEN_RUNNING[operation])
    raise InvalidTransition(refusal(operation, state, name))


def refusal(operation: Operation, state: WorkflowState, name: str = "") -> str:
    """The one-line message for an operation refused in a state, naming what would work."""
    who = f"workflow {name!r}" if name else "the workflow"
    allowed = sorted(sources(operation))
    if operation in _REQUESTED_WHEN_RUNNING:
        allowed = sorted({*allowed, S.RUNNING})
    verb = operation.value.replace("_", " ")
    return f"cannot {verb} {who}: it is {state.value} (allowed from: {', '.join(allowed)})"


def allowed_transitions() -> dict[WorkflowState, frozenset[WorkflowState]]:
    """Every state and the states it can move to, derived from the operations table."""
    moves: dict[WorkflowState, set[WorkflowState]] = {s: set() for s in S}
    for allowed, to in _TABLE.values():
        if to is None:
            continue
        for source in allowed:
            if source is not to:
                moves[source].add(to)
    return {s: frozenset(t) for s, t in moves.items()}
