"""What the Engine returns: a workflow with its steps, and its JSON form for wfectl."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from wfed.states import WorkflowState
from wfed.store.rows import EventRow, StepRow, WorkflowRow


def iso(moment: datetime | None) -> str | None:
    """A stored (naive UTC) timestamp as ISO-8601 with its zone."""
    return None if moment is None else moment.isoformat(timespec="milliseconds") + "Z"


@dataclass(frozen=True)
class Workflow:
    """A workflow as operators see it: its row, its steps, and why it halted."""

    row: WorkflowRow
    steps: list[StepRow]
    halt_reason: str | None = None
    """Why a paused/stopped/error workflow halted, and who halted it."""

    @property
    def name(self) -> str:
        return self.row.name

    @property
    def state(self) -> WorkflowState:
        return self.row.state

    @property
    def context(self) -> dict[str, Any]:
        context: dict[str, Any] = self.row.context
        return context

    @property
    def current_step(self) -> int:
        return self.row.current_step

    @property
    def last_error(self) -> str | None:
        return self.row.last_error

    def to_json(self) -> dict[str, Any]:
        """The stable `show --json` document."""
        row = self.row
        return {
            "name": row.name,
            "state": row.state.value,
            "current_step": row.current_step,
            "queue": row.queue,
            "priority": row.priority,
            "context": row.context,
            "last_error": row.last_error,
            "requested": row.requested.value if row.requested else None,
            "claimed_by": row.claimed_by,
            "halt_reason": self.halt_reason,
            "run_after": iso(row.run_after),
            "created_at": iso(row.created_at),
            "updated_at": iso(row.updated_at),
            "finished_at": iso(row.finished_at),
            "definition": row.steps,
            "steps": [step_json(step) for step in self.steps],
        }


def step_json(step: StepRow) -> dict[str, Any]:
    return {
        "position": step.position,
        "step": step.step,
        "label": step.label,
        "args": step.args,
        "state": step.state.value,
        "attempts": step.attempts,
        "error": step.error,
        "started_at": iso(step.started_at),
        "finished_at": iso(step.finished_at),
    }


def event_json(event: EventRow) -> dict[str, Any]:
    """The stable `history --json` element: {at, kind, position, actor, reason, detail}."""
    return {
        "at": iso(event.at),
        "kind": event.kind,
        "position": event.position,
        "actor": event.actor,
        "reason": event.reason,
        "detail": event.detail,
    }


def summary_json(row: WorkflowRow) -> dict[str, Any]:
    """One element of `list --json`."""
    return {
        "name": row.name,
        "state": row.state.value,
        "current_step": row.current_step,
        "queue": row.queue,
        "priority": row.priority,
        "requested": row.requested.value if row.requested else None,
        "claimed_by": row.claimed_by,
        "last_error": row.last_error,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }
