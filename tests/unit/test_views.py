"""The views the Engine returns and their `--json` documents: the stable keys scripts use."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from wfed import EventView, Workflow, WorkflowSummary
from wfed.engine.views import (
    DaemonStatus,
    Fleet,
    Health,
    PlannedStep,
    StepInfo,
    export_json,
    purge_json,
)
from wfed.states import Request, StepState, WorkflowState
from wfed.steps.base import Context, Step, step, step_class_of
from wfed.steps.definition import parse_definition
from wfed.steps.registry import StepRegistry
from wfed.store.rows import EventRow, StepRow, WorkflowRow

AT = datetime(2026, 11, 27, 10, 15, 0, 123456)
AT_JSON = "2026-11-27T10:15:00.123Z"


def workflow_row(**changes: Any) -> WorkflowRow:
    values: dict[str, Any] = {
        "id": 7,
        "name": "maint-42",
        "state": WorkflowState.RUNNING,
        "steps": ["stop_app", {"step": "sleep", "label": "wait"}],
        "context": {"a": 1},
        "current_step": 1,
        "queue": "default",
        "priority": 3,
        "run_after": None,
        "requested": Request.PAUSE,
        "claimed_by": "host:1",
        "lease_expires_at": AT,
        "fence": 4,
        "last_error": None,
        "created_at": AT,
        "updated_at": AT,
        "finished_at": None,
    }
    values.update(changes)
    return WorkflowRow(**values)


def event_row() -> EventRow:
    return EventRow(
        id=3,
        workflow_id=7,
        workflow_name="maint-42",
        position=1,
        kind="paused",
        actor="op@host",
        at=AT,
        reason="freeze",
        detail={"x": 1},
    )


def test_show_json_has_the_contract_keys() -> None:
    """`show --json`: the documented keys, and each step's, with ISO times in UTC."""
    step_row = StepRow(0, "stop_app", None, {}, StepState.COMPLETED, 1, AT, AT, None)
    document = Workflow(workflow_row(), [step_row], halt_reason="paused by op").to_json()
    assert list(document) == [
        "name",
        "state",
        "current_step",
        "queue",
        "priority",
        "context",
        "last_error",
        "requested",
        "claimed_by",
        "halt_reason",
        "run_after",
        "created_at",
        "updated_at",
        "finished_at",
        "definition",
        "steps",
        "locks",
        "windows",
        "queue_windows",
        "window_open",
        "window_opens_at",
        "window_paused",
        "windows_invalid",
    ]
    assert (document["state"], document["requested"], document["created_at"]) == (
        "running",
        "pause",
        AT_JSON,
    )
    assert document["steps"] == [
        {
            "position": 0,
            "step": "stop_app",
            "label": None,
            "args": {},
            "state": "completed",
            "attempts": 1,
            "error": None,
            "started_at": AT_JSON,
            "finished_at": AT_JSON,
            "validated": True,
        }
    ]


def test_list_json_element_and_step_count() -> None:
    """A listed workflow carries no steps or context; its step count comes from the
    definition when that is a list, and is unknown otherwise."""
    summary = WorkflowSummary.of(workflow_row())
    assert summary.step_count == 2
    assert summary.to_json() == {
        "name": "maint-42",
        "state": "running",
        "current_step": 1,
        "queue": "default",
        "priority": 3,
        "requested": "pause",
        "claimed_by": "host:1",
        "last_error": None,
        "created_at": AT_JSON,
        "updated_at": AT_JSON,
    }
    assert WorkflowSummary.of(workflow_row(steps="not a list")).step_count is None


def test_history_json_element() -> None:
    """`history --json` gives {at, kind, position, actor, reason, detail} per event."""
    event = EventView.of(event_row())
    assert (event.id, event.workflow_name) == (3, "maint-42")
    assert event.to_json() == {
        "at": AT_JSON,
        "kind": "paused",
        "position": 1,
        "actor": "op@host",
        "reason": "freeze",
        "detail": {"x": 1},
    }


def test_export_document() -> None:
    """`export` is the workflow, its events, and when and by whom it was exported."""
    workflow = Workflow(workflow_row(), [])
    document = export_json(workflow, [EventView.of(event_row())], AT, "op@host")
    assert document == {
        "workflow": workflow.to_json(),
        "events": [EventView.of(event_row()).to_json()],
        "exported_at": "2026-11-27T10:15:00.123456Z",
        "exported_by": "op@host",
    }


def test_purge_document() -> None:
    """`purge --json` names the count, the states and the age as given and in seconds."""
    document = purge_json(
        2,
        dry_run=True,
        states=[WorkflowState.COMPLETED, WorkflowState.STOPPED],
        older_than="30d",
        older_than_seconds=2_592_000,
        events_deleted=False,
    )
    assert document == {
        "count": 2,
        "dry_run": True,
        "states": ["completed", "stopped"],
        "older_than": "30d",
        "older_than_seconds": 2_592_000,
        "events_deleted": False,
    }


class Configure(Step):
    """Configure the servers.

    More text that is not shown."""

    name = "configure_view_test"
    idempotent = True
    retries = 2
    retry_delay = 1.5
    timeout = 60.0

    async def run(self, ctx: Context, target: str, mode: Any = object, level: int = 3) -> None:
        """Not called."""


@step("notify_view_test")
async def notify(ctx: Context, message: str = "hi") -> None:
    """Say something."""


def test_steps_json_of_a_class_and_a_function_step() -> None:
    """`steps --json`: kind, module, policy, arguments (a default that is not JSON as its
    repr) and the first line of the docstring."""
    function_step = step_class_of(notify)
    assert function_step is not None
    registry = StepRegistry({"configure": Configure, "notify": function_step})
    by_name = {
        info.name: info.to_json()
        for info in (StepInfo.of(name, cls) for name, cls in registry.items())
    }
    assert by_name["configure_view_test"] == {
        "name": "configure_view_test",
        "kind": "class",
        "module": __name__,
        "idempotent": True,
        "retries": 2,
        "retry_delay": 1.5,
        "backoff": 1.0,
        "timeout": 60.0,
        "args": [
            {"name": "target", "required": True, "default": None},
            {"name": "mode", "required": False, "default": repr(object)},
            {"name": "level", "required": False, "default": 3},
        ],
        "description": "Configure the servers.",
    }
    assert by_name["notify_view_test"]["kind"] == "function"
    assert by_name["notify_view_test"]["description"] == "Say something."
    assert by_name["notify_view_test"]["args"] == [
        {"name": "message", "required": False, "default": "hi"}
    ]


@step("undocumented_view_test")
async def undocumented(ctx: Context) -> None:
    pass


class Undocumented(Step):
    name = "undocumented_class_view_test"

    async def run(self, ctx: Context) -> None:  # type: ignore[override]
        pass


def test_a_step_without_a_docstring_has_no_description() -> None:
    """Not the docstring of wfed's `Step` base class, which both inherit."""
    function_step = step_class_of(undocumented)
    assert function_step is not None
    assert StepInfo.of("f", function_step).description == ""
    assert StepInfo.of("c", Undocumented).description == ""


def test_planned_step_carries_the_policy() -> None:
    """A dry run's step has the arguments and policy the definition gives it."""
    registry = StepRegistry({"configure": Configure})
    (plan,) = parse_definition(
        [{"step": "configure_view_test", "args": {"target": "a"}, "retries": 5, "label": "x"}],
        registry,
    )
    planned = PlannedStep.of(plan)
    assert (planned.position, planned.name, planned.label) == (0, "configure_view_test", "x")
    assert (planned.args, planned.retries, planned.timeout) == ({"target": "a"}, 5, 60.0)
    assert planned.idempotent is True


def daemon(daemon_id: str, *, alive: bool, queues: list[str]) -> DaemonStatus:
    return DaemonStatus(
        id=daemon_id,
        host="h",
        pid=1,
        version="1.0",
        queues=queues,
        max_workflows=8,
        lease_seconds=30,
        started_at=AT,
        heartbeat_at=AT,
        heartbeat_age=1.23456,
        alive=alive,
        running=2,
    )


def test_daemons_json() -> None:
    """`daemons --json`: each daemon with its heartbeat age and running workflows, and the
    running workflows awaiting recovery."""
    fleet = Fleet([daemon("d1", alive=True, queues=["default"])], awaiting_recovery=1)
    assert fleet.to_json() == {
        "daemons": [
            {
                "id": "d1",
                "host": "h",
                "pid": 1,
                "version": "1.0",
                "queues": ["default"],
                "max_workflows": 8,
                "lease_seconds": 30,
                "started_at": AT_JSON,
                "heartbeat_at": AT_JSON,
                "heartbeat_age_seconds": 1.235,
                "alive": True,
                "running_workflows": 2,
            }
        ],
        "awaiting_recovery": 1,
    }


def test_health_json_with_and_without_a_fleet() -> None:
    """`health --json`: the fleet's part is null when the database could not be read."""
    fleet = Fleet(
        [daemon("d1", alive=True, queues=["b", "a"]), daemon("d2", alive=False, queues=["c"])],
        awaiting_recovery=0,
    )
    report = Health(problems=[], fleet=fleet, runnable={"a": 1}, queues=[])
    assert report.to_json("sqlite+aiosqlite:///x.db") == {
        "healthy": True,
        "problems": [],
        "database": "sqlite+aiosqlite:///x.db",
        "queues": None,
        "live_daemons": ["d1"],
        "queues_served": ["a", "b"],
        "runnable": {"a": 1},
        "awaiting_recovery": 0,
    }
    failed = Health(problems=["database x unreachable: pw"], queues=["a"])
    assert failed.to_json(None, ["database x unreachable: ***"]) == {
        "healthy": False,
        "problems": ["database x unreachable: ***"],
        "database": None,
        "queues": ["a"],
        "live_daemons": None,
        "queues_served": None,
        "runnable": None,
        "awaiting_recovery": None,
    }
