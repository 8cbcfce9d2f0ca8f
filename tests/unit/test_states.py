"""Workflow states and transitions, checked against a table written by hand from the README's
state table (and "Operating wfed" for delete, restart and ctx edits), not derived from
wfed.states."""

from __future__ import annotations

import re

import pytest

from wfed.errors import InvalidTransition, WfedError
from wfed.states import (
    TERMINAL,
    Decision,
    Request,
    StepState,
    WorkflowState,
    allowed_transitions,
    decide,
    refusal,
    sources,
    target,
)
from wfed.states import Operation as Op

S = WorkflowState


class _Unchanged:
    """Expected outcome: allowed, and the state stays as it is (delete, ctx edit)."""

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED = _Unchanged()
NON_RUNNING = (S.PENDING, S.PAUSED, S.ERROR, S.STOPPED, S.COMPLETED)

# operation -> {state it is allowed from: expected outcome}; every state not listed must be
# refused with InvalidTransition. An outcome is the new state, a Request left for the
# owner of a running workflow, or UNCHANGED.
EXPECTED: dict[Op, dict[WorkflowState, WorkflowState | Request | _Unchanged]] = {
    # a new workflow: applies to no existing one (its state is asserted below)
    Op.CREATE: {},
    # pending: pause → paused; running: a request honoured after the current step.
    Op.PAUSE: {S.PENDING: S.PAUSED, S.RUNNING: Request.PAUSE},
    # pending/paused/error: stop → stopped; running: a request that cancels the step.
    Op.STOP: {
        S.PENDING: S.STOPPED,
        S.RUNNING: Request.STOP,
        S.PAUSED: S.STOPPED,
        S.ERROR: S.STOPPED,
    },
    Op.RESUME: {S.PAUSED: S.PENDING},
    Op.RETRY: {S.ERROR: S.PENDING},
    Op.SKIP: {S.PAUSED: S.PENDING, S.ERROR: S.PENDING},
    # wfectl (README): restart --from-step K works from any non-running state.
    Op.RESTART: dict.fromkeys(NON_RUNNING, S.PENDING),
    # wfectl (README): delete refuses only a running workflow; ctx edits need a non-running one.
    Op.DELETE: dict.fromkeys(NON_RUNNING, UNCHANGED),
    Op.SET_CONTEXT: dict.fromkeys(NON_RUNNING, UNCHANGED),
    # runner operations
    Op.CLAIM: {S.PENDING: S.RUNNING},
    Op.COMPLETE: {S.RUNNING: S.COMPLETED},
    Op.FAIL: {S.RUNNING: S.ERROR},
    Op.HONOUR_PAUSE: {S.RUNNING: S.PAUSED},
    Op.HONOUR_STOP: {S.RUNNING: S.STOPPED},
    Op.RELEASE: {S.RUNNING: S.PENDING},
    Op.RESCUE: {S.RUNNING: S.RUNNING},
    Op.RENEW: {S.RUNNING: UNCHANGED},
    Op.START: {S.RUNNING: UNCHANGED},
    Op.ADVANCE: {S.RUNNING: UNCHANGED},
    Op.INTERRUPT: {S.RUNNING: S.ERROR},
    Op.REJECT: {S.RUNNING: S.ERROR},
    # what pause and stop become for a running workflow: a request, the state unchanged
    Op.REQUEST_PAUSE: {S.RUNNING: UNCHANGED},
    Op.REQUEST_STOP: {S.RUNNING: UNCHANGED},
    # maintenance windows: claimed outside them, handed back pending until they open;
    # an operator's pause of a window-paused workflow keeps it paused
    Op.WAIT_FOR_WINDOW: {S.RUNNING: S.PENDING},
    Op.KEEP_PAUSED: {S.PAUSED: UNCHANGED},
    Op.SET_WINDOWS: dict.fromkeys(NON_RUNNING, UNCHANGED),
}

OPERATOR_OPS = (
    Op.CREATE,
    Op.PAUSE,
    Op.STOP,
    Op.RESUME,
    Op.RETRY,
    Op.SKIP,
    Op.RESTART,
    Op.DELETE,
    Op.SET_CONTEXT,
    Op.REQUEST_PAUSE,
    Op.REQUEST_STOP,
    Op.KEEP_PAUSED,
    Op.SET_WINDOWS,
)
RUNNER_OPS = (
    Op.CLAIM,
    Op.RESCUE,
    Op.RENEW,
    Op.START,
    Op.ADVANCE,
    Op.COMPLETE,
    Op.FAIL,
    Op.INTERRUPT,
    Op.REJECT,
    Op.HONOUR_PAUSE,
    Op.HONOUR_STOP,
    Op.RELEASE,
    Op.WAIT_FOR_WINDOW,
)
REQUEST_OPS = {Op.PAUSE: Op.REQUEST_PAUSE, Op.STOP: Op.REQUEST_STOP}

# The README's state table, column "left by": the states each state can be left for.
LEFT_FOR: dict[WorkflowState, frozenset[WorkflowState]] = {
    S.PENDING: frozenset({S.RUNNING, S.PAUSED, S.STOPPED}),
    S.RUNNING: frozenset({S.COMPLETED, S.ERROR, S.PAUSED, S.STOPPED, S.PENDING}),
    S.PAUSED: frozenset({S.PENDING, S.STOPPED}),
    S.ERROR: frozenset({S.PENDING, S.STOPPED}),
    S.STOPPED: frozenset({S.PENDING}),
    S.COMPLETED: frozenset({S.PENDING}),
}

_STATE_NAMES = {state.value for state in S}


def test_expected_table_covers_every_operation() -> None:
    """The hand-written table has a row for every Operation (a new one must be added here)."""
    assert set(EXPECTED) == set(Op)
    assert set(OPERATOR_OPS) | set(RUNNER_OPS) == set(Op)
    assert not set(OPERATOR_OPS) & set(RUNNER_OPS)


@pytest.mark.parametrize("state", list(S), ids=str)
@pytest.mark.parametrize("operation", list(Op), ids=str)
def test_decide(operation: Op, state: WorkflowState) -> None:
    """decide() gives the documented target, request or refusal for this operation and state."""
    expected = EXPECTED[operation].get(state)
    if expected is None:
        with pytest.raises(InvalidTransition) as excinfo:
            decide(operation, state)
        message = str(excinfo.value)
        current, _, allowed_part = message.partition("allowed")
        assert re.search(rf"\b{state.value}\b", current), message
        named = set(re.findall(r"[a-z]+", allowed_part)) & _STATE_NAMES
        assert named == {s.value for s in EXPECTED[operation]}, message
    elif isinstance(expected, Request):
        asked = REQUEST_OPS[operation]
        assert decide(operation, state) == Decision(asked, target=None, request=expected)
    elif isinstance(expected, _Unchanged):
        assert decide(operation, state) == Decision(operation, target=None, request=None)
    else:
        assert decide(operation, state) == Decision(operation, target=expected, request=None)


def test_refusal_names_the_workflow() -> None:
    """A refusal names the workflow when decide() is given its name."""
    with pytest.raises(InvalidTransition, match="'maint-42'") as excinfo:
        decide(Op.RESUME, S.RUNNING, "maint-42")
    assert isinstance(excinfo.value, WfedError)
    assert "\n" not in str(excinfo.value)


@pytest.mark.parametrize("operation", list(Op), ids=str)
def test_sources_and_target(operation: Op) -> None:
    """sources() is the set of states applied directly (not by request); target() the result."""
    direct = {s for s, outcome in EXPECTED[operation].items() if not isinstance(outcome, Request)}
    assert sources(operation) == direct
    outcomes = {
        None if isinstance(outcome, _Unchanged) else outcome
        for outcome in EXPECTED[operation].values()
        if not isinstance(outcome, Request)
    }
    if operation is Op.CREATE:
        assert target(operation) is S.PENDING  # a new workflow is pending
    else:
        assert outcomes == {target(operation)}


@pytest.mark.parametrize("operation", OPERATOR_OPS, ids=str)
def test_operator_ops_never_apply_directly_to_running(operation: Op) -> None:
    """No operator operation moves a running workflow itself; pause/stop leave a request."""
    if operation in set(REQUEST_OPS.values()):
        assert target(operation) is None
        return
    assert S.RUNNING not in sources(operation)
    if operation in {Op.PAUSE, Op.STOP}:
        assert decide(operation, S.RUNNING).target is None
        assert decide(operation, S.RUNNING).request is not None
    else:
        with pytest.raises(InvalidTransition):
            decide(operation, S.RUNNING)


@pytest.mark.parametrize("operation", RUNNER_OPS, ids=str)
def test_runner_ops_sources(operation: Op) -> None:
    """A claim starts from pending; every other owner operation only from running."""
    expected = {S.PENDING} if operation is Op.CLAIM else {S.RUNNING}
    assert sources(operation) == expected


def test_allowed_transitions_match_left_by_column() -> None:
    """allowed_transitions() equals the "left by" column of the README's state table."""
    assert allowed_transitions() == LEFT_FOR


def test_terminal_states() -> None:
    """Stopped and completed are terminal: only restart (→ pending) leaves them."""
    assert frozenset({S.STOPPED, S.COMPLETED}) == TERMINAL
    for state in TERMINAL:
        assert allowed_transitions()[state] == {S.PENDING}
        leaving = {op for op in Op if state in sources(op) and target(op) not in {None, state}}
        assert leaving == {Op.RESTART}


def test_state_spellings_are_the_contract() -> None:
    """State and request names are the strings stored in the database."""
    assert [s.value for s in WorkflowState] == [
        "pending",
        "running",
        "paused",
        "error",
        "stopped",
        "completed",
    ]
    assert {s.value for s in StepState} == {
        "pending",
        "running",
        "completed",
        "error",
        "skipped",
        "stopped",
    }
    assert {r.value for r in Request} == {"pause", "stop"}


def test_a_refused_context_edit_reads_as_english() -> None:
    """The refusal of a context edit says what was refused in plain words."""
    with pytest.raises(InvalidTransition) as caught:
        decide(Op.SET_CONTEXT, S.RUNNING, "maint-42")
    assert str(caught.value).startswith("cannot edit the context of workflow 'maint-42':")


def test_a_refusal_reads_as_a_sentence() -> None:
    """A refusal names the operation as a verb and the state as a sentence says it."""
    assert refusal(Op.PAUSE, WorkflowState.ERROR, "m1").startswith(
        "cannot pause workflow 'm1': it is in error (allowed from: "
    )
    assert refusal(Op.SET_WINDOWS, WorkflowState.RUNNING, "m2").startswith(
        "cannot set the windows of workflow 'm2': it is running (allowed from: "
    )
