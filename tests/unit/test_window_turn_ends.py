"""What maintenance windows make of a turn's end, and what `show` says of them (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest

from wfed.engine import window_reads, windows
from wfed.engine.views import Workflow
from wfed.errors import InvalidDefinition
from wfed.states import Operation, StepState, WorkflowState
from wfed.steps.definition import parse_definition
from wfed.steps.registry import StepRegistry
from wfed.store.rows import WorkflowRow
from wfed.windows import QueueWindows, WindowGate, parse_windows

SPEC = "sat 02:00-05:00 Europe/Paris"
AFTER_CLOSING = datetime(2026, 12, 5, 4, 0, 1)
NEXT_OPENING = datetime(2026, 12, 12, 1, 0)


def row(**changes: object) -> WorkflowRow:
    at = datetime(2026, 12, 1)
    base = WorkflowRow(
        id=1,
        name="maint-42",
        state=WorkflowState.PENDING,
        steps=["noop"],
        context={},
        current_step=0,
        queue="default",
        priority=0,
        run_after=None,
        requested=None,
        claimed_by=None,
        lease_expires_at=None,
        fence=0,
        last_error=None,
        created_at=at,
        updated_at=at,
        finished_at=None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_a_closing_pauses_before_the_next_step_naming_the_window() -> None:
    """The end after a step when the window closed: honour a pause at the next step,
    `window_paused` set, the reason naming the window and the next opening, and yielding
    to an operator's request."""
    [plan, _] = parse_definition(["sleep", "sleep"], StepRegistry.from_modules([]))
    closed = WindowGate(own=parse_windows([SPEC])).closed(AFTER_CLOSING)
    assert closed is not None

    end = windows.window_closed(plan, {"a": 1}, closed)

    assert end.operation is Operation.HONOUR_PAUSE
    assert end.values == {"context": {"a": 1}, "current_step": 1, "window_paused": SPEC}
    assert end.step is not None
    assert end.step.state is StepState.COMPLETED
    assert end.reason == (
        f"maintenance window {SPEC!r} closed; it resumes by itself when its next window "
        "opens (2026-12-12 01:00 UTC)"
    )
    assert end.detail == {"window": SPEC, "opens_at": "2026-12-12T01:00:00.000Z"}
    assert (end.on_request, end.yields_to_request) == (False, True)


def test_outside_the_windows_the_claim_hands_back_until_the_opening() -> None:
    """The end of a claim outside the windows: pending with run_after at the opening;
    a step to be re-run goes back to pending."""
    closed = WindowGate(own=parse_windows([SPEC])).closed(AFTER_CLOSING)
    assert closed is not None

    end = windows.outside_windows(2, {}, closed, NEXT_OPENING, rerun=True)

    assert end.operation is Operation.WAIT_FOR_WINDOW
    assert end.values["run_after"] == NEXT_OPENING
    assert end.step is not None
    assert (end.step.position, end.step.state) == (2, None)
    assert windows.outside_windows(2, {}, closed, NEXT_OPENING, rerun=False).step is None


def test_checked_windows_are_stored_as_given_or_refused() -> None:
    """Creation keeps readable specs as written and refuses the rest as InvalidDefinition."""
    assert window_reads.checked(None) == []
    assert window_reads.checked((SPEC,)) == [SPEC]
    with pytest.raises(InvalidDefinition, match=r"windows: .*must be a list"):
        window_reads.checked(SPEC)


def test_status_says_when_the_windows_open() -> None:
    """`show`'s window status: none without windows, open or the next opening, and a
    value that cannot be read named."""
    queues = QueueWindows.parse({"maint": ["daily 03:00-04:00"]})
    nothing = window_reads.status(queues, row(), AFTER_CLOSING)
    assert (nothing.any, nothing.closed) == (False, False)

    own = window_reads.status(queues, row(windows=[SPEC]), AFTER_CLOSING)
    assert own is not None
    assert (own.own, own.queue, own.closed, own.opens_at) == ([SPEC], [], True, NEXT_OPENING)

    both = window_reads.status(queues, row(queue="maint", windows=[SPEC]), AFTER_CLOSING)
    assert both is not None
    # Saturday 01:00-04:00 UTC and daily 03:00-04:00 UTC meet at 03:00 on Saturdays.
    assert both.opens_at == datetime(2026, 12, 12, 3, 0)
    apart = QueueWindows.parse({"maint": ["daily 10:00-11:00"]})
    never = window_reads.status(apart, row(queue="maint", windows=[SPEC]), AFTER_CLOSING)
    assert never is not None
    assert (never.closed, never.opens_at) == (True, None)

    queue_only = window_reads.status(queues, row(queue="maint"), datetime(2026, 12, 5, 3, 30))
    assert queue_only is not None
    assert (queue_only.closed, queue_only.opens_at) == (False, None)

    bad = window_reads.status(queues, row(windows="sat"), AFTER_CLOSING)
    assert bad is not None
    assert bad.invalid is not None
    assert bad.invalid.startswith("windows: windows must be a list")

    document = Workflow(row(windows=[SPEC], window_paused=SPEC), [], window=own).to_json()
    assert {key: document[key] for key in ("windows", "window_open", "window_opens_at")} == {
        "windows": [SPEC],
        "window_open": False,
        "window_opens_at": "2026-12-12T01:00:00.000Z",
    }
    assert document["window_paused"] == SPEC

    # Read from the row alone (no clock, no config): the windows, open or not unknown.
    unknown = Workflow(row(windows=[SPEC]), []).to_json()
    assert (unknown["windows"], unknown["window_open"], unknown["queue_windows"]) == (
        [SPEC],
        None,
        None,
    )
