"""Queries on the `workflow_locks` table: the held slots of concurrency keys.

A key with a limit of N has slots 0 … N-1; holding the key is holding one slot, as one
row whose primary key is (key, slot). A slot is taken by inserting its row, ignoring a
conflict: the database's primary key, not a check made here, refuses a second holder,
so claimers in different daemons can never exceed a limit. A workflow takes all its
keys or none (`claimable_with_keys`), and every claimer inserts slots in (key, slot)
order, so that two claimers wanting the same keys wait for each other in one order and
never deadlock.

Holders give their slots up when they end (`locks_release_workflow`, in the transaction
of the ending transition; a deleted workflow's rows go by the foreign key's cascade), or
when an operator releases them (`locks_release`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from wfed.errors import InvalidDefinition
from wfed.states import WorkflowState
from wfed.store.lock_keys import parse_lock_keys
from wfed.store.rows import WorkflowRow
from wfed.store.schema import workflow_locks, workflows

L = workflow_locks.c
W = workflows.c

LimitOf = Callable[[str], int]
"""The number of slots of a key."""


def one_slot(key: str) -> int:
    """Every key has one slot (no `[locks] limits` configured)."""
    return 1


@dataclass(frozen=True)
class HeldSlot:
    """One held slot, with its holder as the `workflows` row tells."""

    key: str
    slot: int
    workflow_id: int
    workflow_name: str
    state: WorkflowState
    claimed_by: str | None
    acquired_at: datetime


Holdings = dict[str, dict[int, int]]
"""key -> {slot: holder's workflow id}."""


async def locks_holdings(conn: AsyncConnection, keys: Collection[str]) -> Holdings:
    """Who holds each slot of `keys` (a plain read, locking nothing)."""
    held: Holdings = {key: {} for key in keys}
    if not keys:
        return held
    rows = await conn.execute(
        select(L.lock_key, L.slot, L.workflow_id).where(L.lock_key.in_(sorted(keys)))
    )
    for key, slot, workflow_id in rows:
        held.setdefault(key, {})[slot] = workflow_id
    return held


def _insert_ignoring_conflict(conn: AsyncConnection) -> Any:
    """INSERT of slot rows that skips (neither inserts nor fails on) a slot already
    taken. The dialect's module is imported here, when a claim needs it: wfectl never
    does."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql  # noqa: PLC0415

        return postgresql.insert(workflow_locks).on_conflict_do_nothing()
    if dialect == "sqlite":
        from sqlalchemy.dialects import sqlite  # noqa: PLC0415

        return sqlite.insert(workflow_locks).on_conflict_do_nothing()
    if dialect in {"mysql", "mariadb"}:
        # IGNORE turns the duplicate key into a warning; nothing else can fail here (the
        # key's length is checked, the workflow row is locked by the claim).
        return insert(workflow_locks).prefix_with("IGNORE")
    return insert(workflow_locks)


async def _take_slot(
    conn: AsyncConnection, key: str, slot: int, workflow_id: int, now: datetime
) -> bool:
    """Insert the slot row; whether it was free. A claimer inserting the same slot at the
    same time makes this wait for its commit, then see the slot taken."""
    result = await conn.execute(
        _insert_ignoring_conflict(conn).values(
            lock_key=key, slot=slot, workflow_id=workflow_id, acquired_at=now
        )
    )
    return result.rowcount == 1


async def _give_back(
    conn: AsyncConnection, workflow_id: int, taken: Sequence[tuple[str, int]]
) -> None:
    """Delete slot rows taken in this transaction by a workflow that cannot have all
    its keys."""
    if taken:
        await conn.execute(
            delete(workflow_locks).where(
                L.workflow_id == workflow_id,
                or_(*(and_(L.lock_key == key, L.slot == slot) for key, slot in taken)),
            )
        )


def missing_keys(workflow_id: int, keys: Sequence[str], held: Holdings) -> list[str]:
    """The keys of `keys` the workflow does not hold yet, in the order they are taken."""
    return [key for key in keys if workflow_id not in held.get(key, {}).values()]


def free_slots(key: str, held: Holdings, limit_of: LimitOf) -> list[int]:
    """The slots of `key` nobody holds, as far as `held` tells."""
    taken = held.get(key, {})
    return [slot for slot in range(limit_of(key)) if slot not in taken]


async def acquire(
    conn: AsyncConnection,
    wanted: Mapping[int, Sequence[str]],
    held: Holdings,
    limit_of: LimitOf,
    now: datetime,
) -> set[int]:
    """Take the keys each workflow of `wanted` (id -> its sorted keys) does not hold yet,
    all of them or none; returns the workflows that now hold all their keys.

    The keys are taken in one global sorted order across the workflows, so two claimers
    only ever wait for each other's slot rows in that order. A workflow that finds a key
    full gives back what it took here and takes nothing more. `held` (what a read at the
    start of the claim saw) spares the slots already taken; it is updated as slots are
    taken and given back.
    """
    alive = {
        workflow_id: missing_keys(workflow_id, keys, held) for workflow_id, keys in wanted.items()
    }
    taken: dict[int, list[tuple[str, int]]] = {workflow_id: [] for workflow_id in wanted}
    for key in sorted({key for keys in alive.values() for key in keys}):
        for workflow_id in [w for w, keys in alive.items() if key in keys]:
            slot = await _first_free(conn, key, workflow_id, held, limit_of, now)
            if slot is None:
                await _give_back(conn, workflow_id, taken[workflow_id])
                for got_key, got_slot in taken[workflow_id]:
                    held[got_key].pop(got_slot, None)
                del alive[workflow_id]
                continue
            taken[workflow_id].append((key, slot))
    return set(alive)


async def _first_free(
    conn: AsyncConnection,
    key: str,
    workflow_id: int,
    held: Holdings,
    limit_of: LimitOf,
    now: datetime,
) -> int | None:
    """Take the first free slot of `key` for the workflow; None when the key is full."""
    for slot in free_slots(key, held, limit_of):
        if await _take_slot(conn, key, slot, workflow_id, now):
            held.setdefault(key, {})[slot] = workflow_id
            return slot
        # Taken meanwhile by another claimer: the read is stale for this slot.
        held.setdefault(key, {})[slot] = -1
    return None


async def claimable_with_keys(
    conn: AsyncConnection,
    candidates: Sequence[WorkflowRow],
    limit: int,
    limit_of: LimitOf,
    now: datetime,
) -> tuple[list[WorkflowRow], int]:
    """Of a claim's candidates (locked, in claim order), up to `limit` that can run: those
    naming no key, and those that now hold all their keys (taken here). Returns them and
    how many candidates were passed over because a key of theirs is full.

    One read of the candidates' keys' holders picks them, in claim order, as if each took
    its free slots; the slot inserts then decide (another daemon may have been quicker).
    A `locks` value that cannot be read takes nothing: the start of the turn sends such
    a workflow to `error`.
    """
    keyed: dict[int, tuple[str, ...]] = {}
    for row in candidates:
        try:
            keys = parse_lock_keys(row.locks)
        except InvalidDefinition:
            keys = ()
        if keys:
            keyed[row.id] = keys
    if not keyed:
        return list(candidates[:limit]), 0
    held = await locks_holdings(conn, {key for keys in keyed.values() for key in keys})
    planned = {key: dict(slots) for key, slots in held.items()}
    chosen: list[WorkflowRow] = []
    picks: dict[int, list[tuple[str, int]]] = {}
    waiting = 0
    for row in candidates:
        if len(chosen) == limit:
            break
        wants = keyed.get(row.id)
        if wants:
            reserved = _reserve(row.id, wants, planned, limit_of)
            if reserved is None:
                waiting += 1
                continue
            picks[row.id] = reserved
        chosen.append(row)
    if _returns_inserted(conn):
        got = await _take_picked(conn, picks, now)
    else:
        wanted = {row.id: keyed[row.id] for row in chosen if row.id in keyed}
        got = await acquire(conn, wanted, held, limit_of, now)
    runnable = [row for row in chosen if row.id not in picks or row.id in got]
    return runnable, waiting + len(chosen) - len(runnable)


def _reserve(
    workflow_id: int, keys: Sequence[str], planned: Holdings, limit_of: LimitOf
) -> list[tuple[str, int]] | None:
    """The first free slot in `planned` of each key the workflow does not hold yet, now
    marked as its; None (nothing marked) when one of them has no free slot."""
    picks: list[tuple[str, int]] = []
    for key in missing_keys(workflow_id, keys, planned):
        free = free_slots(key, planned, limit_of)
        if not free:
            return None
        picks.append((key, free[0]))
    for key, slot in picks:
        planned.setdefault(key, {})[slot] = workflow_id
    return picks


def _returns_inserted(conn: AsyncConnection) -> bool:
    """Whether one INSERT of many slot rows can say which it inserted (RETURNING:
    PostgreSQL, SQLite, MariaDB; MySQL cannot, and takes its slots one by one)."""
    return bool(conn.dialect.insert_returning)


async def _take_picked(
    conn: AsyncConnection, picks: Mapping[int, Sequence[tuple[str, int]]], now: datetime
) -> set[int]:
    """Insert every picked slot in one statement, in (key, slot) order — the order every
    claimer takes slots in, so that two claimers wait for each other in one order and
    never deadlock — skipping the slots taken meanwhile; a workflow that did not get all
    its picks gives back those it got (it stays pending, to be tried again). Returns the
    workflows that now hold all their keys."""
    rows = sorted(
        (key, slot, workflow_id) for workflow_id, taken in picks.items() for key, slot in taken
    )
    if not rows:
        return set(picks)
    inserted = await conn.execute(
        _insert_ignoring_conflict(conn)
        .values(
            [
                {"lock_key": key, "slot": slot, "workflow_id": workflow_id, "acquired_at": now}
                for key, slot, workflow_id in rows
            ]
        )
        .returning(L.workflow_id, L.lock_key, L.slot)
    )
    got: dict[int, set[tuple[str, int]]] = {workflow_id: set() for workflow_id in picks}
    for workflow_id, key, slot in inserted:
        got[workflow_id].add((key, slot))
    short = [w for w, taken in picks.items() if got[w] != set(taken)]
    for workflow_id in short:
        await _give_back(conn, workflow_id, sorted(got[workflow_id]))
    return set(picks) - set(short)


async def locks_take_all(
    conn: AsyncConnection,
    workflow_id: int,
    keys: Sequence[str],
    limit_of: LimitOf,
    now: datetime,
) -> str | None:
    """Take the keys (sorted) the workflow does not hold yet, all or none (a claim of one
    workflow by id); returns None when it holds them all now, else a key that is full."""
    held = await locks_holdings(conn, keys)
    if workflow_id in await acquire(conn, {workflow_id: keys}, held, limit_of, now):
        return None
    full = [k for k in missing_keys(workflow_id, keys, held) if not free_slots(k, held, limit_of)]
    return full[0] if full else keys[0]


async def locks_release_workflow(conn: AsyncConnection, workflow_id: int) -> int:
    """Give up every slot the workflow holds (it ended); returns how many."""
    result = await conn.execute(delete(workflow_locks).where(L.workflow_id == workflow_id))
    return int(result.rowcount)


async def locks_release_workflows(conn: AsyncConnection, workflow_ids: Sequence[int]) -> int:
    """`locks_release_workflow` for many workflows in one statement."""
    result = await conn.execute(delete(workflow_locks).where(L.workflow_id.in_(list(workflow_ids))))
    return int(result.rowcount)


async def locks_release(
    conn: AsyncConnection, key: str, workflow_id: int | None = None
) -> list[HeldSlot]:
    """Free the slots of `key` (only the one `workflow_id` holds, if given), locking them
    first; returns the slots freed, with their holders."""
    slots = await locks_held(conn, keys=[key], workflow_id=workflow_id, for_update=True)
    if slots:
        condition = [L.lock_key == key]
        if workflow_id is not None:
            condition.append(L.workflow_id == workflow_id)
        await conn.execute(delete(workflow_locks).where(*condition))
    return slots


async def locks_held(
    conn: AsyncConnection,
    *,
    keys: Collection[str] | None = None,
    workflow_id: int | None = None,
    for_update: bool = False,
) -> list[HeldSlot]:
    """Held slots with their holders, by key then slot: all of them, those of `keys`, or
    those of one workflow."""
    query = (
        select(
            L.lock_key,
            L.slot,
            L.workflow_id,
            L.acquired_at,
            W.name,
            W.state,
            W.claimed_by,
        )
        .join(workflows, W.id == L.workflow_id)
        .order_by(L.lock_key, L.slot)
    )
    if keys is not None:
        query = query.where(L.lock_key.in_(sorted(keys)))
    if workflow_id is not None:
        query = query.where(L.workflow_id == workflow_id)
    if for_update:
        query = query.with_for_update(of=workflow_locks)
    rows = await conn.execute(query)
    return [
        HeldSlot(
            key=row.lock_key,
            slot=row.slot,
            workflow_id=row.workflow_id,
            workflow_name=row.name,
            state=WorkflowState(row.state),
            claimed_by=row.claimed_by,
            acquired_at=row.acquired_at,
        )
        for row in rows
    ]


async def locks_wanted_pending(conn: AsyncConnection, *, limit: int) -> list[tuple[int, str, Any]]:
    """(id, name, locks value) of up to `limit` pending workflows that name keys, oldest
    first: the candidates that may wait for a key."""
    rows = await conn.execute(
        select(W.id, W.name, W.locks)
        .where(W.state == WorkflowState.PENDING.value, W.locks.is_not(None))
        .order_by(W.id)
        .limit(limit)
    )
    return [(row.id, row.name, row.locks) for row in rows]
