"""Queries on the `workflow_events` table: the audit trail of every transition."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from wfed.store.bounded import bounded
from wfed.store.rows import EventRow
from wfed.store.schema import workflow_events

E = workflow_events.c


@dataclass(frozen=True)
class Event:
    """An event to record: what happened to which workflow, by whom."""

    workflow_id: int
    workflow_name: str
    kind: str
    actor: str
    at: datetime
    position: int | None = None
    reason: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


# Built once: every workflow run records a few events.
_INSERT = workflow_events.insert()


async def events_insert(conn: AsyncConnection, *events: Event) -> None:
    """Record events (one INSERT for all of them)."""
    if not events:
        return
    rows = [
        {
            "workflow_id": e.workflow_id,
            "workflow_name": e.workflow_name,
            "position": e.position,
            "kind": e.kind,
            "actor": e.actor,
            "at": e.at,
            "reason": bounded(e.reason),
            "detail": e.detail or None,
        }
        for e in events
    ]
    # One event (the usual case) is a plain INSERT, not the batch form.
    await conn.execute(_INSERT, rows[0] if len(rows) == 1 else rows)


async def events_for_workflow(
    conn: AsyncConnection, *, workflow_id: int | None = None, workflow_name: str | None = None
) -> list[EventRow]:
    """A workflow's events, oldest first, by id (live) or by name (also deleted ones)."""
    query = select(workflow_events).order_by(E.id)
    if workflow_id is not None:
        query = query.where(E.workflow_id == workflow_id)
    if workflow_name is not None:
        query = query.where(E.workflow_name == workflow_name)
    rows = await conn.execute(query)
    return [EventRow.from_mapping(row) for row in rows.mappings()]


async def event_latest(
    conn: AsyncConnection, workflow_id: int, kinds: list[str]
) -> EventRow | None:
    """The newest event of one of `kinds` for a workflow (why it halted, for `show`)."""
    row = (
        (
            await conn.execute(
                select(workflow_events)
                .where(E.workflow_id == workflow_id, E.kind.in_(kinds))
                .order_by(E.id.desc())
                .limit(1)
            )
        )
        .mappings()
        .first()
    )
    return EventRow.from_mapping(row) if row else None


async def event_recorded_since(
    conn: AsyncConnection, workflow_name: str, actor: str, since: datetime
) -> bool:
    """Whether `actor` recorded an event about the workflow named `workflow_name` at
    `since` or later (whether a write of theirs whose reply was lost landed)."""
    found = await conn.scalar(
        select(E.id)
        .where(E.workflow_name == workflow_name, E.actor == actor, E.at >= since)
        .limit(1)
    )
    return found is not None


async def events_delete_for(conn: AsyncConnection, workflow_ids: list[int]) -> int:
    """Delete the events of purged workflows (only when asked to: they are the audit)."""
    if not workflow_ids:
        return 0
    result = await conn.execute(workflow_events.delete().where(E.workflow_id.in_(workflow_ids)))
    return int(result.rowcount)
