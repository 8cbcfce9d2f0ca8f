"""Creating a workflow: validated before anything is written, then one transaction that
inserts its row, its step rows and its `created` event."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from wfed.engine.control import Operator, written
from wfed.engine.window_reads import checked as checked_windows
from wfed.errors import InvalidDefinition
from wfed.logging import get_logger
from wfed.states import EventKind
from wfed.steps.definition import parse_definition, storable_context
from wfed.steps.registry import StepRegistry
from wfed.store import events as event_store
from wfed.store import steps as step_store
from wfed.store import workflows as workflow_store
from wfed.store.events import Event
from wfed.store.lock_keys import parse_lock_keys
from wfed.store.schema import workflows

log = get_logger("wfed.engine")


def check_name(name: str) -> None:
    """A workflow name is 1 to 255 characters without surrounding spaces."""
    if not name or len(name) > 255 or name != name.strip():
        raise InvalidDefinition(
            f"workflow name {name!r} must be 1 to 255 characters without surrounding spaces"
        )


PRIORITY_LIMIT = 2**31 - 1
"""A priority is a 32-bit integer whose negation is one too (the claim orders by it)."""
QUEUE_MAX: int = workflows.c.queue.type.length  # type: ignore[attr-defined]
"""The queue column's length (a String's)."""


def check_placement(queue: str, priority: int) -> None:
    """A queue name is 1 to 64 characters without surrounding spaces; a priority is an
    integer from -PRIORITY_LIMIT to PRIORITY_LIMIT. Checked here so that every backend
    refuses the same values with the same message (SQLite would store any)."""
    if not queue or len(queue) > QUEUE_MAX or queue != queue.strip():
        raise InvalidDefinition(
            f"queue {queue!r} must be 1 to {QUEUE_MAX} characters without surrounding spaces"
        )
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidDefinition(f"priority must be an integer, not {priority!r}")
    if not -PRIORITY_LIMIT <= priority <= PRIORITY_LIMIT:
        raise InvalidDefinition(
            f"priority {priority} is out of range: from {-PRIORITY_LIMIT} to {PRIORITY_LIMIT}"
        )


async def create(
    operator: Operator,
    registry: StepRegistry,
    name: str,
    context: dict[str, Any] | None,
    steps: Sequence[Any],
    *,
    queue: str,
    priority: int,
    run_after: datetime | None,
    provenance: dict[str, Any] | None,
    locks: Sequence[str] | None = None,
    windows: Sequence[str] | None = None,
) -> None:
    """Create a pending workflow (see `Engine.create_workflow`)."""
    check_name(name)
    check_placement(queue, priority)
    if run_after is not None and run_after.tzinfo is not None:
        # Stored as naive UTC, as every timestamp: 16:00+02:00 is 14:00.
        run_after = run_after.astimezone(UTC).replace(tzinfo=None)
    own_windows = checked_windows(windows)
    keys = parse_lock_keys(list(locks) if isinstance(locks, tuple) else locks)
    definition = list(steps) if isinstance(steps, list | tuple) else steps
    context = storable_context(context)
    plans = parse_definition(definition, registry)
    async with written(operator, name) as conn:
        now = operator.clock()  # not before the write began: see `written`
        workflow_id = await workflow_store.workflow_insert(
            conn,
            name=name,
            steps=definition,
            context=context,
            queue=queue,
            priority=priority,
            run_after=run_after,
            now=now,
            locks=keys,
            windows=own_windows,
        )
        await step_store.steps_insert(conn, workflow_id, [(p.name, p.label, p.args) for p in plans])
        created = Event(
            workflow_id,
            name,
            EventKind.CREATED,
            operator.actor,
            now,
            detail={"steps": len(plans), **(provenance or {})},
        )
        await event_store.events_insert(conn, created)
    log.info("workflow_created", workflow=name, steps=len(plans))
