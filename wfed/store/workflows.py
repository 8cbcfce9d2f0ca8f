"""Queries on the `workflows` table.

Every state change is a guarded `UPDATE … WHERE id = :id AND state IN (:allowed)` — plus the
fencing token for an owner's writes — and reports whether it matched, so that a caller
never mistakes a refused or lost write for a done one. The allowed states and the state
written come from the operation's row in `wfed.states`, never from the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Update, and_, bindparam, case, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import BindParameter

from wfed.errors import WorkflowExists
from wfed.states import Operation, WorkflowState, sources, target
from wfed.store.bounded import bounded
from wfed.store.guards import lease_expired, pending_due, state_in
from wfed.store.rows import WorkflowRow
from wfed.store.schema import workflows

W = workflows.c


async def workflow_insert(
    conn: AsyncConnection,
    *,
    name: str,
    steps: Any,
    context: dict[str, Any],
    queue: str,
    priority: int,
    run_after: datetime | None,
    now: datetime,
    locks: Sequence[str] = (),
    windows: Sequence[str] = (),
) -> int:
    """Insert a pending workflow (naming concurrency keys `locks`, if any);
    WorkflowExists if the name is taken."""
    # No keys leave the column NULL, as a plain-SQL INSERT that does not name it.
    optional: dict[str, Any] = {"locks": list(locks)} if locks else {}
    if windows:
        optional["windows"] = list(windows)
    try:
        result = await conn.execute(
            workflows.insert().values(
                name=name,
                steps=steps,
                context=context,
                queue=queue,
                priority=priority,
                run_after=run_after,
                state=target(Operation.CREATE),
                created_at=now,
                updated_at=now,
                **optional,
            )
        )
    except IntegrityError:
        raise WorkflowExists(f"a workflow named {name!r} already exists") from None
    key = result.inserted_primary_key
    if key is None:
        raise AssertionError("the database returned no id for the new workflow")
    return int(key[0])


async def workflow_get(
    conn: AsyncConnection, name: str, *, for_update: bool = False
) -> WorkflowRow | None:
    """The workflow named `name`, optionally row-locked for the rest of the transaction."""
    query = select(workflows).where(W.name == name)
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).mappings().first()
    return WorkflowRow.from_mapping(row) if row else None


async def workflow_name_taken(conn: AsyncConnection, name: str) -> bool:
    """Whether a workflow named `name` exists (a new one of that name would be refused)."""
    return await conn.scalar(select(W.id).where(W.name == name).limit(1)) is not None


async def workflow_get_by_id(conn: AsyncConnection, workflow_id: int) -> WorkflowRow | None:
    row = (await conn.execute(select(workflows).where(W.id == workflow_id))).mappings().first()
    return WorkflowRow.from_mapping(row) if row else None


async def workflow_list(
    conn: AsyncConnection,
    *,
    states: Iterable[WorkflowState] = (),
    queue: str | None = None,
    limit: int = 100,
) -> list[WorkflowRow]:
    """Workflows, newest first, filtered by state and queue."""
    query = select(workflows).order_by(W.id.desc()).limit(limit)
    wanted = list(states)
    if wanted:
        query = query.where(W.state.in_(wanted))
    if queue is not None:
        query = query.where(W.queue == queue)
    rows = (await conn.execute(query)).mappings().all()
    return [WorkflowRow.from_mapping(row) for row in rows]


async def workflow_update(
    conn: AsyncConnection,
    workflow_id: int,
    operation: Operation,
    *,
    fence: int | None = None,
    unrequested: bool = False,
    values: dict[str, Any],
) -> bool:
    """Guarded update for `operation`: applies `values` (plain values, bound as
    parameters), and the operation's target state, only if the row is in one of the
    operation's source states (and holds `fence`, and has no pending request when
    `unrequested`). Returns whether it matched."""
    to = target(operation)
    if to is not None:
        values = {**values, "state": to}
    if values.get("last_error") is not None:
        values = {**values, "last_error": bounded(values["last_error"])}
    statement = _guarded_update(
        tuple(sorted(sources(operation))),
        fence is not None,
        unrequested,
        tuple(sorted(values)),
    )
    params = {f"v_{column}": value for column, value in values.items()}
    params["g_id"] = workflow_id
    if fence is not None:
        params["g_fence"] = fence
    result = await conn.execute(statement, params)
    return result.rowcount == 1


@cache
def _guarded_update(
    states: tuple[WorkflowState, ...], fenced: bool, unrequested: bool, columns: tuple[str, ...]
) -> Update:
    """`workflow_update`'s statement for one shape of guard and values, built once: the
    runners of a daemon issue the same few shapes for every workflow, and building a
    statement (and its cache key) costs more CPU than running it."""
    # The states as plain bound values, not an `in_()` list: SQLAlchemy expands such a
    # list anew on every execution, and this statement runs for every workflow.
    allowed: list[BindParameter[str]] = [
        bindparam(f"g_state_{i}", state.value) for i, state in enumerate(states)
    ]
    conditions = [
        W.id == bindparam("g_id"),
        W.state == allowed[0] if len(allowed) == 1 else W.state.in_(allowed),
    ]
    if fenced:
        conditions.append(W.fence == bindparam("g_fence"))
    if unrequested:
        conditions.append(W.requested.is_(None))
    return (
        update(workflows)
        .where(*conditions)
        .values({column: bindparam(f"v_{column}", type_=W[column].type) for column in columns})
    )


@dataclass(frozen=True)
class Advance:
    """One runner's move from step `position` (just completed) to `position + 1`."""

    workflow_id: int
    fence: int
    position: int
    context: dict[str, Any]


def _moves_guard(size: int) -> tuple[list[Any], Callable[[str, Any], Any]]:
    """What a statement about `size` workflow moves selects by — each row by its id, its
    own fence and its own current step — and a maker of its per-row values: a CASE on the
    id over the parameters `NAME_0` … `NAME_{size-1}` (see `_move_params`)."""
    # Typed parameters: PostgreSQL cannot infer a type for one in a CASE.
    ids: list[BindParameter[int]] = [bindparam(f"b_id_{i}", type_=W.id.type) for i in range(size)]

    def per_row(name: str, type_: Any) -> Any:
        return case(
            *[(ids[i], bindparam(f"{name}_{i}", type_=type_)) for i in range(size)], value=W.id
        )

    guard = [
        W.id.in_(ids),
        W.fence == per_row("b_fence", W.fence.type),
        W.current_step == per_row("b_position", W.current_step.type),
    ]
    return guard, per_row


def _guard_params(moves: Sequence[Advance | Start], now: datetime) -> dict[str, Any]:
    """The parameters of `_moves_guard`'s guard for `moves`, and `b_now`."""
    params: dict[str, Any] = {"b_now": now}
    for i, move in enumerate(moves):
        params[f"b_id_{i}"] = move.workflow_id
        params[f"b_fence_{i}"] = move.fence
        params[f"b_position_{i}"] = move.position
    return params


def _move_params(moves: Sequence[Advance], now: datetime) -> dict[str, Any]:
    """The parameters of `_moves_guard`'s statements (`_advance_many`, `_complete_many`)
    for `moves`."""
    params = _guard_params(moves, now)
    for i, move in enumerate(moves):
        params[f"b_context_{i}"] = move.context
    return params


@cache
def _advance_many(size: int, renewing: bool) -> Update:
    """A step advance of `size` workflows in one statement, built once per size (a batch
    holds at most a committer's max_batch, 32): constructing a statement and its cache key
    costs more CPU than executing it. Each row is guarded by its own fence and current
    step; the id list lets every database find the rows by primary key. Plain parameters
    (no expanding IN lists) keep the per-execution work to binding values.

    Its usual form sets no indexed column: the owner's heartbeat renews the lease, so a
    step's commit maintains no secondary index (which, with a large history, would no
    longer be in the buffer pool). Only a runner whose lease is half spent (its
    heartbeat kept finding the row locked) renews it with its step (`renewing`)."""
    guard, per_row = _moves_guard(size)
    statement = (
        update(workflows)
        .where(*guard, state_in(Operation.ADVANCE), W.requested.is_(None))
        .values(
            context=per_row("b_context", W.context.type),
            current_step=W.current_step + 1,
            updated_at=bindparam("b_now"),
        )
    )
    if renewing:
        statement = statement.values(lease_expires_at=bindparam("b_lease_expires_at"))
    return statement


@dataclass(frozen=True)
class Start:
    """One runner's first write of a turn with a workflow it claimed at step `position`."""

    workflow_id: int
    fence: int
    position: int


@cache
def _start_many(size: int) -> Update:
    """The first write of `size` runners' turns in one statement, built once per size (see
    `_advance_many`): each row guarded by its fence and current step, with no request
    waiting; the lease renewed."""
    guard, _ = _moves_guard(size)
    return (
        update(workflows)
        .where(*guard, state_in(Operation.START), W.requested.is_(None))
        .values(lease_expires_at=bindparam("b_lease_expires_at"), updated_at=bindparam("b_now"))
    )


async def workflows_start_many(
    conn: AsyncConnection, starts: Sequence[Start], *, now: datetime, lease_expires_at: datetime
) -> int:
    """Renew the leases of many just-claimed workflows whose guard holds (this owner's
    fence, the claimed step, no request waiting) in one statement; returns how many
    matched (all of them, unless a request arrived or an owner changed)."""
    params = {**_guard_params(starts, now), "b_lease_expires_at": lease_expires_at}
    result = await conn.execute(_start_many(len(starts)), params)
    return int(result.rowcount)


async def workflows_advance_many(
    conn: AsyncConnection,
    moves: Sequence[Advance],
    *,
    now: datetime,
    lease_expires_at: datetime | None = None,
) -> int:
    """Move many running workflows on by one step in one statement (renewing all their leases
    to `lease_expires_at`, if given); returns how many rows matched their guard (all of
    them, unless an owner changed or a request waits)."""
    params = _move_params(moves, now)
    if lease_expires_at is not None:
        params["b_lease_expires_at"] = lease_expires_at
    result = await conn.execute(_advance_many(len(moves), lease_expires_at is not None), params)
    return int(result.rowcount)


@cache
def _complete_many(size: int) -> Update:
    """The last step of `size` workflows done: each workflow completed, in one statement
    built once per size (see _advance_many). Each row is guarded by its own fence and
    current step, like an advance; unlike an advance, a waiting pause or stop request
    does not hold it back: a workflow with nothing left to run completes, and the request
    is cleared (as a completion written alone does)."""
    guard, per_row = _moves_guard(size)
    now: BindParameter[datetime] = bindparam("b_now", type_=W.updated_at.type)
    return (
        update(workflows)
        .where(*guard, state_in(Operation.COMPLETE))
        .values(
            state=target(Operation.COMPLETE),
            context=per_row("b_context", W.context.type),
            current_step=W.current_step + 1,
            claimed_by=None,
            lease_expires_at=None,
            requested=None,
            finished_at=now,
            updated_at=now,
        )
    )


async def workflows_complete_many(
    conn: AsyncConnection, moves: Sequence[Advance], *, now: datetime
) -> int:
    """Complete many running workflows whose last step (`position`) is done, each with its
    context, in one statement; returns how many rows matched their guard (all of them,
    unless an owner changed)."""
    result = await conn.execute(_complete_many(len(moves)), _move_params(moves, now))
    return int(result.rowcount)


async def workflow_advance(
    conn: AsyncConnection,
    workflow_id: int,
    *,
    fence: int,
    context: dict[str, Any],
    current_step: int,
    now: datetime,
    lease_expires_at: datetime | None = None,
) -> bool:
    """Move a running workflow from step `current_step - 1` to `current_step`, saving the
    context (and renewing the lease, if given), unless its owner changed (fence), it is
    at another step, or a pause/stop request waits (then False)."""
    move = Advance(workflow_id, fence, current_step - 1, context)
    moved = await workflows_advance_many(conn, [move], now=now, lease_expires_at=lease_expires_at)
    return moved == 1


async def workflow_delete(conn: AsyncConnection, workflow_id: int) -> bool:
    """Delete a workflow that is not running (its steps go with it; events stay)."""
    result = await conn.execute(
        workflows.delete().where(W.id == workflow_id, state_in(Operation.DELETE))
    )
    return result.rowcount == 1


async def workflow_counts(conn: AsyncConnection) -> dict[str, int]:
    """How many workflows are in each state."""
    rows = await conn.execute(select(W.state, func.count()).group_by(W.state))
    return {row[0]: int(row[1]) for row in rows}


async def workflow_purge_candidates(
    conn: AsyncConnection,
    *,
    states: Sequence[WorkflowState],
    finished_before: datetime,
    limit: int,
) -> list[tuple[int, str]]:
    """Up to `limit` (id, name) of finished workflows older than `finished_before`,
    locked for deletion (rows another purger holds are skipped)."""
    rows = await conn.execute(
        select(W.id, W.name)
        .where(W.state.in_(list(states)), W.finished_at < finished_before)
        .order_by(W.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [(row.id, row.name) for row in rows]


async def workflow_purge_count(
    conn: AsyncConnection, *, states: Sequence[WorkflowState], finished_before: datetime
) -> int:
    """How many workflows a purge would delete (for --dry-run)."""
    count = await conn.scalar(
        select(func.count()).where(W.state.in_(list(states)), W.finished_at < finished_before)
    )
    return int(count or 0)


async def workflows_delete(conn: AsyncConnection, ids: Sequence[int]) -> int:
    """Delete workflows by id (their steps go with them); returns how many."""
    if not ids:
        return 0
    result = await conn.execute(
        workflows.delete().where(W.id.in_(list(ids)), state_in(Operation.DELETE))
    )
    return int(result.rowcount)


async def workflow_running_by_owner(
    conn: AsyncConnection, *, now: datetime
) -> dict[str | None, tuple[int, int]]:
    """Running workflows per owner (`claimed_by`), in one GROUP BY: {owner: (running, of
    which the lease expired before `now`)}."""
    expired = func.sum(case((W.lease_expires_at < now, 1), else_=0))
    rows = await conn.execute(
        select(W.claimed_by, func.count(), expired)
        .where(W.state == WorkflowState.RUNNING)
        .group_by(W.claimed_by)
    )
    # MySQL's SUM is a DECIMAL: counts are made ints here.
    return {owner: (int(count), int(late or 0)) for owner, count, late in rows}


async def workflow_runnable_by_queue(
    conn: AsyncConnection, *, now: datetime, queues: Sequence[str] = ()
) -> dict[str, int]:
    """How many workflows a daemon serving the queue could claim at `now`, per queue, in
    one GROUP BY: pending and due (`run_after` NULL or past), or running with an expired
    lease (what the claim and the rescue select). Only `queues`, if given."""
    query = (
        select(W.queue, func.count())
        .where(
            # The state range alone narrows the scan to the (few) unfinished rows.
            state_in(Operation.CLAIM, Operation.RESCUE),
            or_(and_(*pending_due(now)), and_(*lease_expired(now))),
        )
        .group_by(W.queue)
    )
    if queues:
        query = query.where(W.queue.in_(list(queues)))
    rows = await conn.execute(query)
    return {queue: int(count) for queue, count in rows}
