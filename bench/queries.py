"""The benchmark's own SQL: bulk enqueue in one statement, and what the workloads read back.

Enqueue is plain SQL, as an operator would write it (README, "Enqueue with SQL"): only
`name`, `steps`, `context` and `queue` are given. N workflows go in with ONE
`INSERT … SELECT` over a number series: MariaDB's `seq_1_to_N` table, PostgreSQL's
`generate_series`, a recursive CTE on SQLite.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from wfed.states import WorkflowState
from wfed.store.schema import workflow_steps, workflows

W = workflows.c
S = workflow_steps.c
ALL_STATES = [state.value for state in WorkflowState]
HALTED = ("error", "stopped", "paused")

_SERIES_INSERT = {
    "mariadb": (
        "INSERT INTO workflows (name, steps, context, queue) "
        "SELECT CONCAT(:prefix, seq), :steps, '{{}}', :queue FROM seq_1_to_{count}"
    ),
    "postgresql": (
        "INSERT INTO workflows (name, steps, context, queue) "
        "SELECT CAST(:prefix AS TEXT) || g, CAST(:steps AS JSONB), '{{}}', :queue "
        "FROM generate_series(1, {count}) AS g"
    ),
    "sqlite": (
        "WITH RECURSIVE series(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM series "
        "WHERE g < {count}) "
        "INSERT INTO workflows (name, steps, context, queue) "
        "SELECT :prefix || g, :steps, '{{}}', :queue FROM series"
    ),
}

_HISTORY_INSERT = {
    "mariadb": (
        "INSERT INTO workflows (name, state, steps, context, current_step, queue, "
        "created_at, updated_at, finished_at) "
        "SELECT CONCAT('history-', seq), 'completed', '[\"noop\"]', '{{}}', 1, :queue, "
        ":at, :at, :at FROM seq_1_to_{count}"
    ),
    "postgresql": (
        "INSERT INTO workflows (name, state, steps, context, current_step, queue, "
        "created_at, updated_at, finished_at) "
        "SELECT 'history-' || g, 'completed', '[\"noop\"]', '{{}}', 1, :queue, "
        ":at, :at, :at FROM generate_series(1, {count}) AS g"
    ),
    "sqlite": (
        "WITH RECURSIVE series(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM series "
        "WHERE g < {count}) "
        "INSERT INTO workflows (name, state, steps, context, current_step, queue, "
        "created_at, updated_at, finished_at) "
        "SELECT 'history-' || g, 'completed', '[\"noop\"]', '{{}}', 1, :queue, "
        ":at, :at, :at FROM series"
    ),
}


def steps_json(steps: list[Any]) -> str:
    return json.dumps(steps, separators=(",", ":"))


async def enqueue_series(
    conn: AsyncConnection, backend: str, *, prefix: str, count: int, steps: list[Any], queue: str
) -> None:
    """Insert `count` pending workflows named `<prefix>1…<prefix>count` in ONE statement."""
    statement = _SERIES_INSERT[backend].format(count=int(count))
    await conn.execute(
        text(statement), {"prefix": prefix, "steps": steps_json(steps), "queue": queue}
    )


async def enqueue_one(conn: AsyncConnection, *, name: str, steps: list[Any], queue: str) -> None:
    """The README's plain-SQL enqueue of one workflow."""
    await conn.execute(
        text("INSERT INTO workflows (name, steps, context, queue) VALUES (:n, :s, '{}', :q)"),
        {"n": name, "s": steps_json(steps), "q": queue},
    )


async def insert_history(
    conn: AsyncConnection, backend: str, *, count: int, queue: str, at: datetime
) -> None:
    """Insert `count` completed workflows in ONE statement (a table with history)."""
    statement = _HISTORY_INSERT[backend].format(count=int(count))
    await conn.execute(text(statement), {"queue": queue, "at": at})


@dataclass(frozen=True)
class QueueProgress:
    total: int
    completed: int
    failed: int
    """error, stopped or paused: a throughput run that has these is broken."""

    @property
    def done(self) -> bool:
        return self.completed + self.failed >= self.total


def in_queue(queue: str) -> Any:
    """`queue = :queue`, spelled so that the claim index (state, queue, …) serves it: the
    benchmark's own reads must not scan a table of a million rows while it measures."""
    return and_(W.state.in_(ALL_STATES), W.queue == queue)


async def queue_progress(conn: AsyncConnection, queue: str) -> QueueProgress:
    rows = await conn.execute(
        select(W.state, func.count()).where(in_queue(queue)).group_by(W.state)
    )
    counts = {state: int(count) for state, count in rows.tuples()}
    return QueueProgress(
        total=sum(counts.values()),
        completed=counts.get("completed", 0),
        failed=sum(counts.get(state, 0) for state in HALTED),
    )


async def wait_queue_done(
    engine: AsyncEngine, queue: str, limit: float, interval: float = 0.25
) -> QueueProgress:
    """Wait until every workflow of `queue` has ended; TimeoutError after `limit` s."""
    deadline = time.perf_counter() + limit
    while True:
        async with engine.connect() as conn:
            progress = await queue_progress(conn, queue)
        if progress.done:
            return progress
        if time.perf_counter() > deadline:
            raise TimeoutError(
                f"queue {queue}: {progress.completed}/{progress.total} completed after {limit:g} s"
            )
        await asyncio.sleep(interval)


@dataclass(frozen=True)
class RunWindow:
    """A queue's run as the database recorded it."""

    first_start: datetime
    """MIN(workflow_steps.started_at): the first claim's first step."""
    last_finish: datetime
    """MAX(workflows.finished_at): the last completion."""
    steps_completed: int

    @property
    def seconds(self) -> float:
        return (self.last_finish - self.first_start).total_seconds()

    @property
    def steps_per_s(self) -> float:
        return self.steps_completed / self.seconds if self.seconds > 0 else 0.0


async def run_window(conn: AsyncConnection, queue: str) -> RunWindow:
    first, completed = (
        await conn.execute(
            select(
                func.min(S.started_at),
                func.coalesce(func.sum(case((S.state == "completed", 1), else_=0)), 0),
            )
            .select_from(workflow_steps.join(workflows, W.id == S.workflow_id))
            .where(in_queue(queue))
        )
    ).one()
    last = await conn.scalar(select(func.max(W.finished_at)).where(in_queue(queue)))
    if first is None or last is None:
        raise RuntimeError(f"queue {queue}: no step ever started or no workflow finished")
    return RunWindow(first, last, int(completed))
