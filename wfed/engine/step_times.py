"""How long a step ran, as far as its rows and events tell (`wfectl show`): its own run
time, the time so far of a running one, and what is known of one that was cut off."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from wfed.states import StepState, WorkflowState
from wfed.store.rows import StepRow

if TYPE_CHECKING:
    from wfed.engine.views import Workflow


@dataclass(frozen=True)
class StepTime:
    """A step's own run time, as far as the data tells (`wfectl show`).

    A step row has the start of its current attempt (`started_at`) and the moment its
    end was committed (`finished_at`). A step cut off — its owner killed, or shut down
    past its grace — has no end of its own: its row keeps `running` until a claim finds
    it, and `finished_at` is then when it was found. Only a forced shutdown records when
    (a `released` event); otherwise the run ended at most by the time it was found."""

    seconds: float | None
    """The run time; so far, when `running`; None when nothing tells."""
    running: bool = False
    """Running now: its workflow runs, and the step row says it runs."""
    owner_silent: bool = False
    """Running as far as the rows say, but the owner's lease has expired: it may have
    died, and the step with it."""
    cut_off: bool = False
    """Its run was cut off (interrupted): `seconds` is exact only if not `at_most`."""
    at_most: bool = False
    """`seconds` is an upper bound: until the cut-off run was found."""


def step_time(workflow: Workflow, step: StepRow, now: datetime) -> StepTime:
    """See `StepTime`."""
    started, finished = step.started_at, step.finished_at
    row = workflow.row
    if started is None:
        return StepTime(None)
    if step.state is StepState.RUNNING and row.state is WorkflowState.RUNNING:
        silent = row.lease_expires_at is not None and row.lease_expires_at < now
        return StepTime((now - started).total_seconds(), running=True, owner_silent=silent)
    cut_off = _cut_off(workflow, step, started)
    if cut_off is not None:
        return cut_off
    if finished is not None and finished >= started:
        return StepTime((finished - started).total_seconds())
    return StepTime(None)


def _cut_off(workflow: Workflow, step: StepRow, started: datetime) -> StepTime | None:
    """The run time of a step that was cut off; None if it was not."""
    released = workflow.released_at
    if step.state is StepState.RUNNING or (
        step.state is StepState.STOPPED and step.finished_at is None
    ):
        # Its workflow does not run, so neither does the step: it was cut off, when a
        # forced shutdown released it if that is recorded (and stopped, with no end of
        # its own, if its workflow was stopped after that).
        if released is not None and released >= started:
            return StepTime((released - started).total_seconds(), cut_off=True)
        return StepTime(None, cut_off=True)
    found = workflow.interrupted
    if (
        step.state is not StepState.ERROR
        or found is None
        or found.position != step.position
        or found.detail.get("rerun")
        or found.at < started
    ):
        return None
    if released is not None and started <= released <= found.at:
        return StepTime((released - started).total_seconds(), cut_off=True)
    return StepTime((found.at - started).total_seconds(), cut_off=True, at_most=True)
