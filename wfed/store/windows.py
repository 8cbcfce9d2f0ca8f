"""Maintenance windows in the database: the workflows a window's closing paused (found
through their own index), and their resumption when their windows open again."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from wfed.states import Operation, target
from wfed.store.guards import state_in
from wfed.store.schema import workflows

W = workflows.c


@dataclass(frozen=True)
class WindowPaused:
    """A workflow that a window's closing paused."""

    id: int
    name: str
    queue: str
    windows: Any
    """Its own windows, as stored."""
    window_paused: str
    current_step: int


async def workflows_window_paused(
    conn: AsyncConnection, queues: Sequence[str], *, limit: int = 1000
) -> list[WindowPaused]:
    """The workflows of `queues` paused by a window's closing (through the index on
    `window_paused`: NULL for every other workflow)."""
    query = (
        select(W.id, W.name, W.queue, W.windows, W.window_paused, W.current_step)
        .where(W.window_paused.is_not(None), state_in(Operation.RESUME), W.queue.in_(queues))
        .order_by(W.id)
        .limit(limit)
    )
    rows = (await conn.execute(query)).mappings().all()
    return [WindowPaused(**row) for row in rows]


async def workflow_window_resume(
    conn: AsyncConnection, workflow_id: int, window: str, now: datetime
) -> bool:
    """Resume a workflow that the closing of `window` paused, if it still is (an operator
    acting on it meanwhile clears `window_paused`, and then it is left alone). Returns
    whether it did; of several daemons resuming at once, one does."""
    result = await conn.execute(
        update(workflows)
        .where(
            W.id == workflow_id,
            state_in(Operation.RESUME),
            W.window_paused == window,
        )
        .values(
            state=target(Operation.RESUME),
            window_paused=None,
            requested=None,
            run_after=None,
            updated_at=now,
        )
    )
    return result.rowcount == 1
