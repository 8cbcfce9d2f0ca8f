"""Workflow and step states, and the one table of which operation moves a workflow where.

Everything here is pure. Every guarded write of the store takes an `Operation` and reads
its source states (`WHERE state IN …`) and its target state from this table, so what the
operators, the claims and the runner may do is written down once.
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


class EventKind(StrEnum):
    """Every kind of row in `workflow_events`; the stored strings are contract
    (`wfectl history --json`)."""

    CREATED = "created"
    CLAIMED = "claimed"
    COMPLETED = "completed"
    ERROR = "error"
    INVALID = "invalid"
    PAUSED = "paused"
    STOPPED = "stopped"
    RELEASED = "released"
    STEP_RETRY = "step_retry"
    STEP_INTERRUPTED = "step_interrupted"
    PAUSE_REQUESTED = "pause_requested"
    STOP_REQUESTED = "stop_requested"
    RESUMED = "resumed"
    RETRIED = "retried"
    SKIPPED = "skipped"
    RESTARTED = "restarted"
    DELETED = "deleted"
    CONTEXT_SET = "context_set"
    PURGED = "purged"
    LOCK_RELEASED = "lock_released"
    """An operator freed a slot of a concurrency key the workflow held."""
    WINDOW_WAIT = "window_wait"
    """Claimed outside its maintenance windows: handed back until the next opening."""
    WINDOWS_SET = "windows_set"
    """An operator replaced (or cleared) the workflow's own maintenance windows."""


class Operation(StrEnum):
    """Everything that writes a workflow's row under a state guard, by an operator or by
    its owner (a daemon, or `Engine.run`)."""

    # operator operations (wfectl, Engine)
    CREATE = "create"
    """A new workflow (a plain SQL INSERT gets the same state by the column default)."""
    PAUSE = "pause"
    STOP = "stop"
    RESUME = "resume"
    RETRY = "retry"
    SKIP = "skip"
    RESTART = "restart"
    DELETE = "delete"
    SET_CONTEXT = "set_context"
    REQUEST_PAUSE = "request_pause"
    """Pause of a running workflow: a request its owner honours after the step."""
    REQUEST_STOP = "request_stop"
    """Stop of a running workflow: a request its owner honours at once."""
    # owner operations (daemon, Engine.run)
    CLAIM = "claim"
    """Take a pending, due workflow."""
    RESCUE = "rescue"
    """Take a running workflow whose owner's lease expired."""
    RENEW = "renew"
    """Extend the owner's lease."""
    START = "start"
    """Start a step (the first of a turn, or a retry at once)."""
    ADVANCE = "advance"
    """Step N completed and step N+1 started, in one write."""
    COMPLETE = "complete"
    FAIL = "fail"
    """A step failed for good."""
    REJECT = "reject"
    """The workflow cannot be run as its row stands (an invalid definition)."""
    INTERRUPT = "interrupt"
    """A non-idempotent step was found cut off by its owner's death."""
    HONOUR_PAUSE = "honour_pause"
    """A pause request, or a pause step's gate, halts before the next step."""
    HONOUR_STOP = "honour_stop"
    RELEASE = "release"
    """Hand the workflow back as pending: shutdown, or a retry delay."""
    WAIT_FOR_WINDOW = "wait_for_window"
    """Hand a workflow claimed outside its maintenance windows back as pending, not to
    be claimed before its next window opens."""
    SET_WINDOWS = "set_windows"
    """Replace (or clear) a workflow's own maintenance windows while it does not run."""
    KEEP_PAUSED = "keep_paused"
    """An operator's pause of a workflow a window's closing paused: it stays paused, and
    the next window opening no longer resumes it."""


S = WorkflowState
TERMINAL: frozenset[WorkflowState] = frozenset({S.STOPPED, S.COMPLETED})
NOT_RUNNING: frozenset[WorkflowState] = frozenset(set(S) - {S.RUNNING})
_RUNNING = frozenset({S.RUNNING})


@dataclass(frozen=True)
class Rule:
    """One row of the table: where an operation may start, where it leads, what it
    records."""

    sources: frozenset[WorkflowState]
    target: WorkflowState | None
    """None: the state is unchanged (or the row is deleted)."""
    event: EventKind | None
    """The event the operation records (None: it records none of its own)."""


# The one table. Every guarded write in wfed.store takes its states from here, and the
# runner, the claims, delete and the operators' commands name an Operation rather than
# states of their own.
_TABLE: dict[Operation, Rule] = {
    Operation.CREATE: Rule(frozenset(), S.PENDING, EventKind.CREATED),
    Operation.PAUSE: Rule(frozenset({S.PENDING}), S.PAUSED, EventKind.PAUSED),
    Operation.STOP: Rule(frozenset({S.PENDING, S.PAUSED, S.ERROR}), S.STOPPED, EventKind.STOPPED),
    Operation.RESUME: Rule(frozenset({S.PAUSED}), S.PENDING, EventKind.RESUMED),
    Operation.RETRY: Rule(frozenset({S.ERROR}), S.PENDING, EventKind.RETRIED),
    Operation.SKIP: Rule(frozenset({S.ERROR, S.PAUSED}), S.PENDING, EventKind.SKIPPED),
    Operation.RESTART: Rule(NOT_RUNNING, S.PENDING, EventKind.RESTARTED),
    Operation.DELETE: Rule(NOT_RUNNING, None, EventKind.DELETED),
    Operation.SET_CONTEXT: Rule(NOT_RUNNING, None, EventKind.CONTEXT_SET),
    Operation.REQUEST_PAUSE: Rule(_RUNNING, None, EventKind.PAUSE_REQUESTED),
    Operation.REQUEST_STOP: Rule(_RUNNING, None, EventKind.STOP_REQUESTED),
    Operation.CLAIM: Rule(frozenset({S.PENDING}), S.RUNNING, None),
    Operation.RESCUE: Rule(_RUNNING, S.RUNNING, None),
    Operation.RENEW: Rule(_RUNNING, None, None),
    Operation.START: Rule(_RUNNING, None, EventKind.CLAIMED),
    Operation.ADVANCE: Rule(_RUNNING, None, None),
    Operation.COMPLETE: Rule(_RUNNING, S.COMPLETED, EventKind.COMPLETED),
    Operation.FAIL: Rule(_RUNNING, S.ERROR, EventKind.ERROR),
    Operation.REJECT: Rule(_RUNNING, S.ERROR, EventKind.INVALID),
    Operation.INTERRUPT: Rule(_RUNNING, S.ERROR, EventKind.ERROR),
    Operation.HONOUR_PAUSE: Rule(_RUNNING, S.PAUSED, EventKind.PAUSED),
    Operation.HONOUR_STOP: Rule(_RUNNING, S.STOPPED, EventKind.STOPPED),
    Operation.RELEASE: Rule(_RUNNING, S.PENDING, EventKind.RELEASED),
    Operation.WAIT_FOR_WINDOW: Rule(_RUNNING, S.PENDING, EventKind.WINDOW_WAIT),
    Operation.KEEP_PAUSED: Rule(frozenset({S.PAUSED}), None, EventKind.PAUSED),
    Operation.SET_WINDOWS: Rule(NOT_RUNNING, None, EventKind.WINDOWS_SET),
}

# Pause and stop of a running workflow cannot change its state directly: they leave a
# request that its owner honours (pause after the current step, stop at once).
_REQUESTED_WHEN_RUNNING: dict[Operation, tuple[Operation, Request]] = {
    Operation.PAUSE: (Operation.REQUEST_PAUSE, Request.PAUSE),
    Operation.STOP: (Operation.REQUEST_STOP, Request.STOP),
}
# What an owner does with a request it finds (between steps, or when a step ends).
HONOURED: dict[Request, Operation] = {
    Request.PAUSE: Operation.HONOUR_PAUSE,
    Request.STOP: Operation.HONOUR_STOP,
}
# The request an operator's command leaves, and the event that records it.
REQUEST_OF: dict[Operation, Request] = {
    Operation.REQUEST_PAUSE: Request.PAUSE,
    Operation.REQUEST_STOP: Request.STOP,
}


@dataclass(frozen=True)
class Decision:
    """What an operation does to a workflow in a given state."""

    operation: Operation
    """The operation to apply: the one asked for, or the request it becomes."""
    target: WorkflowState | None = None
    """The new state, or None when the state does not change."""
    request: Request | None = None
    """Set instead of `target` when the owner of a running workflow must act."""


def sources(operation: Operation) -> frozenset[WorkflowState]:
    """The states an operation may be applied to directly."""
    return _TABLE[operation].sources


def target(operation: Operation) -> WorkflowState | None:
    """The state an operation leads to (None: unchanged)."""
    return _TABLE[operation].target


def event_kind(operation: Operation) -> EventKind | None:
    """The event an operation records."""
    return _TABLE[operation].event


def finishes(operation: Operation) -> bool:
    """Whether the operation ends a workflow for good (it sets `finished_at`)."""
    return _TABLE[operation].target in TERMINAL


def releases_keys(operation: Operation) -> bool:
    """Whether the operation gives up the workflow's concurrency keys, in its own
    transaction. A workflow holds its keys from its claim until it ends for good
    (completed, stopped, or deleted, whose slot rows go by the foreign key): pending
    again mid-run, paused and in error, it keeps them, so that another workflow on the
    same keys never starts beside a half-done one."""
    return finishes(operation)


def decide(operation: Operation, state: WorkflowState, name: str = "") -> Decision:
    """Decide what `operation` does to a workflow in `state`, or raise InvalidTransition."""
    rule = _TABLE[operation]
    if state in rule.sources:
        return Decision(operation, target=rule.target)
    if operation in _REQUESTED_WHEN_RUNNING:
        asked, request = _REQUESTED_WHEN_RUNNING[operation]
        if state in _TABLE[asked].sources:
            return Decision(asked, request=request)
    raise InvalidTransition(refusal(operation, state, name))


def refusal(operation: Operation, state: WorkflowState, name: str = "") -> str:
    """The one-line message for an operation refused in a state, naming what would work."""
    who = f"workflow {name!r}" if name else "the workflow"
    allowed = sorted(sources(operation))
    if operation in _REQUESTED_WHEN_RUNNING:
        asked, _ = _REQUESTED_WHEN_RUNNING[operation]
        allowed = sorted({*allowed, *sources(asked)})
    action = _PHRASES.get(operation, "{verb} {who}").format(
        verb=operation.value.replace("_", " "), who=who
    )
    return f"cannot {action}: it is {state_phrase(state)} (allowed from: {', '.join(allowed)})"


def state_phrase(state: WorkflowState) -> str:
    """A state as a sentence says it: `paused`, `running`, but `in error`."""
    return "in error" if state is WorkflowState.ERROR else state.value


# How a refusal names an operation whose name is not a verb taking the workflow.
_PHRASES: dict[Operation, str] = {
    Operation.SET_CONTEXT: "edit the context of {who}",
    Operation.SET_WINDOWS: "set the windows of {who}",
    Operation.REQUEST_PAUSE: "ask {who} to pause",
    Operation.REQUEST_STOP: "ask {who} to stop",
    Operation.HONOUR_PAUSE: "pause {who}",
    Operation.HONOUR_STOP: "stop {who}",
}


def allowed_transitions() -> dict[WorkflowState, frozenset[WorkflowState]]:
    """Every state and the states it can move to, derived from the operations table."""
    moves: dict[WorkflowState, set[WorkflowState]] = {s: set() for s in S}
    for rule in _TABLE.values():
        if rule.target is None:
            continue
        for source in rule.sources:
            if source is not rule.target:
                moves[source].add(rule.target)
    return {s: frozenset(t) for s, t in moves.items()}
