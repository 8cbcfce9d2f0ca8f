"""What the Engine returns, and every `--json` document of wfectl (README, "Operating wfed").

The views are read-only snapshots made from the store's rows and the step registry; their
`to_json()` (and `export_json`, `purge_json`) give the stable keys scripts rely on. No
other module builds a `--json` document.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from wfed.engine.json_values import iso, jsonable
from wfed.engine.step_times import StepTime, step_time
from wfed.errors import InvalidDefinition
from wfed.states import Request, WorkflowState
from wfed.store.lock_keys import parse_lock_keys
from wfed.store.rows import EventRow, WorkflowRow
from wfed.store.rows import StepRow as StepRow  # noqa: PLC0414 - re-exported: Workflow.steps
from wfed.windows import WindowSpecError, parse_windows, specs

if TYPE_CHECKING:
    from wfed.steps.base import Step
    from wfed.steps.definition import StepPlan


# -- workflows ------------------------------------------------------------------------


@dataclass(frozen=True)
class Workflow:
    """A workflow as operators see it: its row, its steps, and why it halted."""

    row: WorkflowRow
    steps: list[StepRow]
    halt_reason: str | None = None
    """Why a paused/stopped/error workflow halted, and who halted it."""
    released_at: datetime | None = None
    """When its owner last handed it back with a step cut off (a forced shutdown: the
    latest `released` event with `interrupted`), if ever."""
    interrupted: EventRow | None = None
    """Its latest `step_interrupted` event (a claim found a step its previous owner was
    cut off in), if any."""
    keys: WorkflowKeys | None = None
    """Its concurrency keys: named, held, waited for (None: not read)."""
    window: WindowStatus | None = None
    """Its maintenance windows, open or when they open next (None: not worked out)."""

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

    def step_time(self, step: StepRow, now: datetime) -> StepTime:
        """How long `step` ran (or runs), as far as its row and the events tell."""
        return step_time(self, step, now)

    def submitted_steps(self) -> list[tuple[str, str | None, Any]]:
        """(step, label, args) of each element of the definition as submitted: all there
        is to tell of a workflow enqueued with plain SQL that no daemon has validated yet
        (nothing, when the definition is not a list)."""
        steps = self.row.steps
        if isinstance(steps, str):
            try:
                steps = json.loads(steps)
            except ValueError:
                return []
        if not isinstance(steps, list):
            return []
        found: list[tuple[str, str | None, Any]] = []
        for element in steps:
            if isinstance(element, dict):
                label = element.get("label")
                label = label if isinstance(label, str) else None
                found.append((str(element.get("step")), label, element.get("args", {})))
            else:
                found.append((str(element), None, {}))
        return found

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
            "steps": [_workflow_step_json(step) for step in self.steps]
            or [
                _submitted_step_json(position, step, label, args)
                for position, (step, label, args) in enumerate(self.submitted_steps())
            ],
            "locks": (self.keys or WorkflowKeys.unknown(self.row)).to_json(),
            **(self.window or WindowStatus.unknown(self.row)).to_json(self.row),
        }


def _workflow_step_json(step: StepRow) -> dict[str, Any]:
    """One element of `steps` in `show --json`."""
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
        "validated": True,
    }


def _submitted_step_json(position: int, step: str, label: str | None, args: Any) -> dict[str, Any]:
    """An element of `steps` in `show --json` before a daemon validated the definition
    (enqueued with plain SQL): pending, never attempted, `validated` false."""
    return {
        "position": position,
        "step": step,
        "label": label,
        "args": args,
        "state": "pending",
        "attempts": 0,
        "error": None,
        "started_at": None,
        "finished_at": None,
        "validated": False,
    }


@dataclass(frozen=True)
class WorkflowSummary:
    """One workflow of a listing: its state and where it is, without steps or context."""

    name: str
    state: WorkflowState
    current_step: int
    step_count: int | None
    """Elements of its definition; None if that is not a list (invalid, or not JSON)."""
    queue: str
    priority: int
    requested: Request | None
    claimed_by: str | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: WorkflowRow) -> WorkflowSummary:
        count = len(row.steps) if isinstance(row.steps, list) else None
        fields = {
            name: getattr(row, name) for name in cls.__dataclass_fields__ if name != "step_count"
        }
        return cls(step_count=count, **fields)

    def to_json(self) -> dict[str, Any]:
        """One element of `list --json`."""
        return {
            "name": self.name,
            "state": self.state.value,
            "current_step": self.current_step,
            "queue": self.queue,
            "priority": self.priority,
            "requested": self.requested.value if self.requested else None,
            "claimed_by": self.claimed_by,
            "last_error": self.last_error,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


@dataclass(frozen=True)
class EventView:
    """One event of a workflow's history (kept after the workflow is deleted)."""

    id: int
    workflow_name: str
    position: int | None
    kind: str
    actor: str
    at: datetime
    reason: str | None
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, row: EventRow) -> EventView:
        return cls(**{name: getattr(row, name) for name in cls.__dataclass_fields__})

    def to_json(self) -> dict[str, Any]:
        """The stable `history --json` element: {at, kind, position, actor, reason, detail}."""
        return {
            "at": iso(self.at),
            "kind": self.kind,
            "position": self.position,
            "actor": self.actor,
            "reason": self.reason,
            "detail": self.detail,
        }


def export_json(
    workflow: Workflow, events: Iterable[EventView], exported_at: datetime, exported_by: str
) -> dict[str, Any]:
    """The `export` document: the workflow, its steps and its events."""
    return {
        "workflow": workflow.to_json(),
        "events": [event.to_json() for event in events],
        "exported_at": exported_at.isoformat() + "Z",
        "exported_by": exported_by,
    }


def purge_json(
    count: int,
    *,
    dry_run: bool,
    states: Iterable[WorkflowState],
    older_than: str,
    older_than_seconds: int,
    events_deleted: bool,
) -> dict[str, Any]:
    """The `purge --json` document."""
    return {
        "count": count,
        "dry_run": dry_run,
        "states": [state.value for state in states],
        "older_than": older_than,
        "older_than_seconds": older_than_seconds,
        "events_deleted": events_deleted,
    }


# -- maintenance windows --------------------------------------------------------------


@dataclass(frozen=True)
class WindowStatus:
    """A workflow's maintenance windows as `show` tells them, at one moment."""

    own: list[str] = field(default_factory=list)
    """Its own windows (`workflows.windows`)."""
    queue: list[str] = field(default_factory=list)
    """Its queue's windows, as this process's config has them."""
    opens_at: datetime | None = None
    """When they are closed: when it may run next (None: open, or never within a week)."""
    closed: bool = False
    invalid: str | None = None
    """Why its `windows` value cannot be read (it goes to error when claimed)."""
    known: bool = True
    """False when only the row was read (no clock, no config): open or not is unknown."""

    @classmethod
    def unknown(cls, row: WorkflowRow) -> WindowStatus:
        """What the row alone tells: its own windows as stored, nothing worked out."""
        try:
            own = specs(parse_windows(row.windows))
        except WindowSpecError as exc:
            return cls(invalid=f"windows: {exc}", known=False)
        return cls(own=own, known=False)

    @property
    def any(self) -> bool:
        """Whether there is anything to tell: windows, or a value that cannot be read."""
        return bool(self.own or self.queue or self.invalid)

    def to_json(self, row: WorkflowRow) -> dict[str, Any]:
        """The `show --json` keys about windows (`window_open` null: not worked out)."""
        return {
            "windows": self.own,
            "queue_windows": self.queue if self.known else None,
            "window_open": not self.closed if self.known else None,
            "window_opens_at": iso(self.opens_at),
            "window_paused": row.window_paused,
            "windows_invalid": self.invalid,
        }


# -- concurrency keys -----------------------------------------------------------------


@dataclass(frozen=True)
class KeyHolder:
    """One held slot of a concurrency key, and the workflow holding it."""

    key: str
    slot: int
    workflow: str
    state: WorkflowState
    claimed_by: str | None
    acquired_at: datetime

    def to_json(self) -> dict[str, Any]:
        """One holder in `locks --json` and `show --json`."""
        return {
            "key": self.key,
            "slot": self.slot,
            "workflow": self.workflow,
            "state": self.state.value,
            "claimed_by": self.claimed_by,
            "acquired_at": iso(self.acquired_at),
        }


@dataclass(frozen=True)
class KeyWait:
    """A key a pending workflow waits for: at its limit, held by others."""

    key: str
    limit: int
    holders: list[KeyHolder]

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "limit": self.limit,
            "holders": [holder.to_json() for holder in self.holders],
        }


@dataclass(frozen=True)
class WorkflowKeys:
    """A workflow's concurrency keys, as `show` tells them."""

    named: list[str] = field(default_factory=list)
    """The keys its `locks` column names (sorted)."""
    held: list[KeyHolder] = field(default_factory=list)
    """The slots it holds."""
    waiting_for: list[KeyWait] = field(default_factory=list)
    """Pending: the keys it needs that are at their limit, and who holds them."""
    invalid: str | None = None
    """Why its `locks` value cannot be used (it goes to error when claimed)."""
    known: bool = True
    """False when only the row was read: what it holds and waits for is unknown."""

    @classmethod
    def unknown(cls, row: WorkflowRow) -> WorkflowKeys:
        """What the row alone tells: the keys it names, nothing of their slots."""
        try:
            named = list(parse_lock_keys(row.locks))
        except InvalidDefinition as exc:
            return cls(invalid=str(exc), known=False)
        return cls(named=named, known=False)

    def to_json(self) -> dict[str, Any]:
        """`locks` of `show --json`: {named, held: [{key, slot, acquired_at}], waiting_for:
        [{key, limit, holders: [{key, slot, workflow, state, claimed_by, acquired_at}]}],
        invalid}; `held` and `waiting_for` are null when not read (watch's snapshots)."""
        held = [
            {"key": h.key, "slot": h.slot, "acquired_at": iso(h.acquired_at)} for h in self.held
        ]
        return {
            "named": self.named,
            "held": held if self.known else None,
            "waiting_for": [w.to_json() for w in self.waiting_for] if self.known else None,
            "invalid": self.invalid,
        }


@dataclass(frozen=True)
class KeyStatus:
    """One concurrency key in `wfectl locks`: its limit, its holders, who waits for it."""

    key: str
    limit: int
    holders: list[KeyHolder]
    waiting: list[str]
    """Pending workflows naming the key without holding it, oldest first."""

    def to_json(self) -> dict[str, Any]:
        """One element of `locks --json`."""
        return {
            "key": self.key,
            "limit": self.limit,
            "held": len(self.holders),
            "holders": [holder.to_json() for holder in self.holders],
            "waiting": self.waiting,
        }


# -- steps ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedStep:
    """One validated element of a definition (`create --dry-run`): step, args, policy."""

    position: int
    name: str
    label: str | None
    args: dict[str, Any]
    retries: int
    retry_delay: float
    backoff: float
    timeout: float | None
    idempotent: bool

    @classmethod
    def of(cls, plan: StepPlan) -> PlannedStep:
        return cls(**{name: getattr(plan, name) for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class StepArgument:
    """An argument a registered step takes."""

    name: str
    required: bool
    default: Any
    """The default (its repr when not JSON); None when required."""


@dataclass(frozen=True)
class StepInfo:
    """A registered step, as `wfectl steps` lists it."""

    name: str
    kind: str
    """"function" (`@step`) or "class" (a Step subclass)."""
    module: str
    idempotent: bool
    retries: int
    retry_delay: float
    backoff: float
    timeout: float | None
    args: list[StepArgument]
    description: str

    @classmethod
    def of(cls, name: str, step_class: type[Step]) -> StepInfo:
        args = [
            StepArgument(
                name=param.name,
                required=param.default is inspect.Parameter.empty,
                default=None
                if param.default is inspect.Parameter.empty
                else jsonable(param.default),
            )
            for param in step_class.parameters().values()
            if param.kind not in {inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL}
        ]
        return cls(
            name=name,
            kind=step_class.kind,
            module=step_class.__module__,
            idempotent=step_class.idempotent,
            retries=step_class.retries,
            retry_delay=step_class.retry_delay,
            backoff=step_class.backoff,
            timeout=step_class.timeout,
            args=args,
            description=step_class.description or _own_doc(step_class),
        )

    def to_json(self) -> dict[str, Any]:
        """One element of `steps --json`: the fields above, in their order, are its keys
        (`args`: {name, required, default} each)."""
        return asdict(self)


# -- the fleet ------------------------------------------------------------------------


@dataclass(frozen=True)
class DaemonStatus:
    """One registered daemon, as seen at one moment."""

    id: str
    host: str
    pid: int
    version: str
    queues: list[str]
    max_workflows: int
    lease_seconds: int
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age: float
    alive: bool
    running: int
    """Running workflows it owns (`claimed_by` = its id)."""

    def to_json(self) -> dict[str, Any]:
        """One element of `daemons` in `daemons --json`."""
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "version": self.version,
            "queues": self.queues,
            "max_workflows": self.max_workflows,
            "lease_seconds": self.lease_seconds,
            "started_at": iso(self.started_at),
            "heartbeat_at": iso(self.heartbeat_at),
            "heartbeat_age_seconds": round(self.heartbeat_age, 3),
            "alive": self.alive,
            "running_workflows": self.running,
        }


@dataclass(frozen=True)
class Fleet:
    """The registered daemons, and how many running workflows await recovery."""

    daemons: list[DaemonStatus]
    awaiting_recovery: int
    """Running workflows whose owner is not a live daemon (dead, or no daemon row), or
    whose lease has expired: a daemon serving their queue takes them over once the lease
    has expired."""

    @property
    def live(self) -> list[DaemonStatus]:
        return [daemon for daemon in self.daemons if daemon.alive]

    def served(self) -> set[str]:
        """The queues some live daemon serves."""
        return {str(queue) for daemon in self.live for queue in daemon.queues}

    def dead_serving(self, queue: str) -> list[str]:
        """Ids of dead daemons that list `queue` (what used to serve it)."""
        return [d.id for d in self.daemons if not d.alive and queue in d.queues]

    def to_json(self) -> dict[str, Any]:
        """`daemons --json`: the daemons, and the running workflows awaiting recovery."""
        return {
            "daemons": [daemon.to_json() for daemon in self.daemons],
            "awaiting_recovery": self.awaiting_recovery,
        }


@dataclass(frozen=True)
class Health:
    """The outcome of a health check: healthy when `problems` is empty."""

    problems: list[str]
    fleet: Fleet | None = None
    """None when the database could not be read."""
    runnable: dict[str, int] | None = None
    """Runnable workflows per queue (with --queue: every queue asked about)."""
    queues: list[str] = field(default_factory=list)
    """The queues checked; empty: every queue."""

    @property
    def healthy(self) -> bool:
        return not self.problems

    def unserved(self) -> list[str]:
        """Queues asked about (or with runnable workflows) that no live daemon serves."""
        if self.fleet is None or self.runnable is None:
            return []
        served = self.fleet.served()
        return sorted(queue for queue in self.runnable if queue not in served)

    def to_json(
        self, database: str | None, problems: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """`health --json`, with the database's URL (without password) and the problems
        as they may be printed (default: as found)."""
        fleet = self.fleet
        return {
            "healthy": self.healthy,
            "problems": list(self.problems if problems is None else problems),
            "database": database,
            "queues": self.queues or None,
            "live_daemons": None if fleet is None else [d.id for d in fleet.live],
            "queues_served": None if fleet is None else sorted(fleet.served()),
            "runnable": self.runnable,
            "awaiting_recovery": None if fleet is None else fleet.awaiting_recovery,
        }


# -- notifications --------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryView:
    """One delivery of an event to a webhook (`wfectl notifications`)."""

    id: int
    webhook: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    claimed_by: str | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    event_id: int
    workflow: str | None
    """The event's workflow, kind and time; None once the event was purged."""
    kind: str | None
    at: datetime | None

    def to_json(self) -> dict[str, Any]:
        """The stable `notifications --json` element."""
        return {
            "id": self.id,
            "webhook": self.webhook,
            "state": self.state,
            "attempts": self.attempts,
            "next_attempt_at": iso(self.next_attempt_at),
            "claimed_by": self.claimed_by,
            "last_error": self.last_error,
            "created_at": iso(self.created_at),
            "sent_at": iso(self.sent_at),
            "event_id": self.event_id,
            "workflow": self.workflow,
            "kind": self.kind,
            "at": iso(self.at),
        }


def _own_doc(step_class: type) -> str:
    """The first line of the class's own docstring: not one it inherits (a step class
    without a docstring is not described as wfed's `Step` base class)."""
    doc = step_class.__dict__.get("__doc__")
    return inspect.cleandoc(doc).split("\n")[0] if isinstance(doc, str) else ""
