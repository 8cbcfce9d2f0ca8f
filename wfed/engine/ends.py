"""The ways a turn ends after a step has run, as `TurnEnd`s for `TurnWriter.end`."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from wfed.engine.turn import StepEnd, TurnEnd
from wfed.states import HONOURED, EventKind, Operation, StepState
from wfed.steps.definition import StepPlan


def after_step(plan: StepPlan, operation: Operation, context: dict[str, Any]) -> TurnEnd:
    """The turn ends after `plan` completed, before the next step: the workflow is
    complete, or honours a request, or is released."""
    nxt = plan.position + 1
    return TurnEnd(
        operation,
        values={"context": context, "current_step": nxt},
        step=StepEnd(plan.position, StepState.COMPLETED),
        position=None if operation is Operation.COMPLETE else nxt,
        on_request=operation in HONOURED.values(),
    )


def at_gate(plan: StepPlan, context: dict[str, Any], prompt: str) -> TurnEnd:
    """A pause step completed: the workflow pauses before the next step."""
    end = after_step(plan, Operation.HONOUR_PAUSE, context)
    return replace(end, reason=prompt, message=prompt, detail={"gate": plan.name}, on_request=False)


def stopped(plan: StepPlan, reason: str) -> TurnEnd:
    """A stop request cancelled the step: step and workflow become stopped."""
    return TurnEnd(
        Operation.HONOUR_STOP,
        step=StepEnd(plan.position, StepState.STOPPED, reason),
        position=plan.position,
        reason=reason,
        message=reason,
        on_request=True,
    )


def failed(plan: StepPlan, attempts: int, error: str) -> TurnEnd:
    """The step failed for good: the workflow goes to error at that step."""
    tries = f"after {attempts} attempts" if attempts > 1 else ""
    message = " ".join(filter(None, [f"{plan.title} failed", tries])) + f": {error}"
    return TurnEnd(
        Operation.FAIL,
        values={"last_error": message},
        step=StepEnd(plan.position, StepState.ERROR, error),
        position=plan.position,
        reason=message,
        message=message,
    )


def unrunnable(message: str) -> TurnEnd:
    """Running the workflow failed outside any step (its row held what wfed could not
    handle): the workflow goes to error as it stands."""
    return TurnEnd(Operation.FAIL, values={"last_error": message}, reason=message, message=message)


def retry_later(plan: StepPlan, run_after: datetime, detail: dict[str, Any]) -> TurnEnd:
    """The step failed and is retried after a delay: the workflow goes back to pending
    with `run_after` (waiting holds no slot) and the step keeps its error."""
    error = str(detail["error"])
    return TurnEnd(
        Operation.RELEASE,
        values={"run_after": run_after},
        step=StepEnd(plan.position, None, error),
        position=plan.position,
        message=error,
        detail=detail,
        event=EventKind.STEP_RETRY,
    )
