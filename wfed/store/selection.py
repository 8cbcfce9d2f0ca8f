"""Selecting workflows by a filter: what a bulk command of wfectl (`pause --queue dc2`, …)
acts on, one workflow at a time afterwards."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from wfed.states import WorkflowState
from wfed.store.schema import workflows

W = workflows.c


@dataclass(frozen=True)
class Selected:
    """A workflow a filter matched, as it was then."""

    id: int
    name: str
    state: WorkflowState
    queue: str
    updated_at: datetime


async def workflows_matching(
    conn: AsyncConnection,
    *,
    states: Collection[WorkflowState],
    queue: str | None = None,
    name_like: str | None = None,
    updated_before: datetime | None = None,
) -> list[Selected]:
    """The workflows in one of `states` (and of `queue`, with a name LIKE `name_like` —
    whose escape character is `/` —, last changed before `updated_before`, where given),
    oldest first. LIKE's case sensitivity is the database's: callers that need one rule
    filter again."""
    query = (
        select(W.id, W.name, W.state, W.queue, W.updated_at)
        .where(W.state.in_(sorted(state.value for state in states)))
        .order_by(W.id)
    )
    if queue is not None:
        query = query.where(W.queue == queue)
    if name_like is not None:
        query = query.where(W.name.like(name_like, escape="/"))
    if updated_before is not None:
        query = query.where(W.updated_at < updated_before)
    rows = await conn.execute(query)
    return [
        Selected(row.id, row.name, WorkflowState(row.state), row.queue, row.updated_at)
        for row in rows
    ]
