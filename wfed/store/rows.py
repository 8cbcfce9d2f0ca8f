"""Typed, read-only views of the rows the store returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping

from wfed.states import Request, StepState, WorkflowState


@dataclass(frozen=True)
class WorkflowRow:
    """One row of `workflows`."""

    id: int
    name: str
    state: WorkflowState
    steps: Any
    context: Any
    current_step: int
    queue: str
    priority: int
    run_after: datetime | None
    requested: Request | None
    claimed_by: str | None
    lease_expires_at: datetime | None
    fence: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    windows: Any = None
    """Its own maintenance windows as stored (a JSON list of specs; read when claimed)."""
    window_paused: str | None = None
    """The window whose closing paused it (NULL for any other pause)."""
    locks: Any = None
    """The concurrency keys it names, as stored (`wfed.store.lock_keys` reads them)."""

    @classmethod
    def from_mapping(cls, row: RowMapping) -> WorkflowRow:
        requested = row["requested"]
        return cls(
            id=row["id"],
            name=row["name"],
            state=WorkflowState(row["state"]),
            steps=row["steps"],
            # A plain-SQL INSERT may leave the context out: that is an empty context.
            context={} if row["context"] is None else row["context"],
            current_step=row["current_step"],
            queue=row["queue"],
            priority=row["priority"],
            run_after=row["run_after"],
            requested=Request(requested) if requested in set(Request) else None,
            claimed_by=row["claimed_by"],
            lease_expires_at=row["lease_expires_at"],
            fence=row["fence"],
            last_error=row["last_error"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            finished_at=row["finished_at"],
            windows=row.get("windows"),
            window_paused=row.get("window_paused"),
            locks=row.get("locks"),
        )


@dataclass(frozen=True)
class StepRow:
    """One row of `workflow_steps`."""

    position: int
    step: str
    label: str | None
    args: dict[str, Any]
    state: StepState
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None

    @classmethod
    def fresh(cls, position: int, step: str, label: str | None, args: dict[str, Any]) -> StepRow:
        """A step row as `steps_insert` creates it: pending, never attempted."""
        return cls(position, step, label, args, StepState.PENDING, 0, None, None, None)

    @classmethod
    def from_mapping(cls, row: RowMapping) -> StepRow:
        return cls(
            position=row["position"],
            step=row["step"],
            label=row["label"],
            args=row["args"] or {},
            state=StepState(row["state"]),
            attempts=row["attempts"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            error=row["error"],
        )


@dataclass(frozen=True)
class EventRow:
    """One row of `workflow_events`."""

    id: int
    workflow_id: int
    workflow_name: str
    position: int | None
    kind: str
    actor: str
    at: datetime
    reason: str | None
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, row: RowMapping) -> EventRow:
        return cls(
            id=row["id"],
            workflow_id=row["workflow_id"],
            workflow_name=row["workflow_name"],
            position=row["position"],
            kind=row["kind"],
            actor=row["actor"],
            at=row["at"],
            reason=row["reason"],
            detail=row["detail"] or {},
        )


@dataclass(frozen=True)
class DaemonRow:
    """One row of `daemons`."""

    id: str
    host: str
    pid: int
    version: str
    queues: list[str]
    max_workflows: int
    lease_seconds: int
    started_at: datetime
    heartbeat_at: datetime

    @classmethod
    def from_mapping(cls, row: RowMapping) -> DaemonRow:
        return cls(**{key: row[key] for key in cls.__dataclass_fields__})
