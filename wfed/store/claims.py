"""Claims: a daemon (or `Engine.run`) takes workflows — pending and due, or running with an
expired lease — and becomes their owner: `claimed_by` set, the fencing token bumped, a
lease given. The rows are locked by `SELECT … FOR UPDATE SKIP LOCKED` (SQLite: the write
transaction), so two claimers never take the same workflow."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from wfed.states import EventKind, Operation, WorkflowState, target
from wfed.store import events, locks
from wfed.store.events import Event
from wfed.store.guards import lease_expired, pending_due, state_in
from wfed.store.locks import LimitOf, one_slot
from wfed.store.rows import WorkflowRow
from wfed.store.schema import workflows

W = workflows.c


def _claimed_state() -> WorkflowState:
    state = target(Operation.CLAIM)
    if state is None:
        raise AssertionError("a claim must lead to a state")
    return state


_CLAIMED = _claimed_state()


def _claim_values(owner: str, now: datetime, lease: float) -> dict[str, Any]:
    # A claim and a rescue lead to the same state; the table says which.
    return {
        "state": _CLAIMED,
        "claimed_by": owner,
        "fence": W.fence + 1,
        "lease_expires_at": now + timedelta(seconds=lease),
        "updated_at": now,
    }


FENCE_LIMIT = 2**62
"""No fence reaches this by claims (one a microsecond would take 146,000 years): a row
holding more was written by hand, and bumping it would overflow the column."""


def _unclaimable(row: WorkflowRow) -> str | None:
    """Why a selected row cannot be claimed as it stands (its fence cannot be bumped), or
    None. Such a row is an INSERT's or UPDATE's doing, never wfed's."""
    fence = row.fence
    if isinstance(fence, bool) or not isinstance(fence, int) or not 0 <= fence < FENCE_LIMIT:
        return (
            f"invalid workflow: fence holds {str(fence)[:40]!r}, not a count of claims "
            f"from 0 to {FENCE_LIMIT - 1}; it was set to 0: `wfectl retry` runs it"
        )
    return None


async def _set_aside(
    conn: AsyncConnection, rows: list[WorkflowRow], *, owner: str, now: datetime
) -> list[WorkflowRow]:
    """The rows that can be claimed; each of the others goes to `error` (its fence set to
    0, so that a retry can claim it) instead of failing the claim of every row beside it."""
    usable = []
    for row in rows:
        problem = _unclaimable(row)
        if problem is None:
            usable.append(row)
            continue
        await conn.execute(
            update(workflows)
            .where(W.id == row.id)
            .values(
                state=WorkflowState.ERROR.value,
                last_error=problem,
                fence=0,
                claimed_by=None,
                lease_expires_at=None,
                requested=None,
                updated_at=now,
            )
        )
        rejected = Event(row.id, row.name, EventKind.INVALID.value, owner, now, reason=problem)
        await events.events_insert(conn, rejected)
    return usable


async def _claim_selected(
    conn: AsyncConnection, query: Any, *, owner: str, now: datetime, lease: float
) -> list[WorkflowRow]:
    rows = [WorkflowRow.from_mapping(r) for r in (await conn.execute(query)).mappings().all()]
    rows = await _set_aside(conn, rows, owner=owner, now=now)
    return await _claim_rows(conn, rows, owner=owner, now=now, lease=lease)


async def _claim_rows(
    conn: AsyncConnection, rows: list[WorkflowRow], *, owner: str, now: datetime, lease: float
) -> list[WorkflowRow]:
    # The rows are locked by the SELECT (SKIP LOCKED on MySQL/PostgreSQL; SQLite's
    # BEGIN IMMEDIATE holds the whole database), so the UPDATE cannot miss; the fence is
    # bumped in SQL and the new value derived here rather than read back.
    if not rows:
        return []
    await conn.execute(
        update(workflows)
        .where(W.id.in_([row.id for row in rows]))
        .values(**_claim_values(owner, now, lease))
    )
    expires = now + timedelta(seconds=lease)
    return [
        replace(
            row,
            state=_CLAIMED,
            claimed_by=owner,
            fence=row.fence + 1,
            lease_expires_at=expires,
            updated_at=now,
        )
        for row in rows
    ]


async def workflows_claimable(
    conn: AsyncConnection, queues: Sequence[str], now: datetime, *, expired: bool = False
) -> bool:
    """Whether a claim would find anything: a pending workflow that is due (or, with
    `expired`, a running one whose lease ran out). A plain read through the claim (or
    lease) index, locking nothing: an idle daemon asks this instead of claiming."""
    conditions = lease_expired(now) if expired else pending_due(now)
    found = await conn.scalar(select(W.id).where(*conditions, W.queue.in_(list(queues))).limit(1))
    return found is not None


def claim_pending_query(
    queues: Sequence[str],
    limit: int,
    now: datetime,
    *,
    exclude: Collection[int] = (),
    only: Collection[int] | None = None,
) -> Any:
    """The claim SELECT: pending rows of `queues`, due, by priority then age, skipping rows
    other claimers hold (and those in `exclude`; with `only`, among those alone)."""
    conditions, order = _looked_at(now, expired=False)
    return (
        select(workflows)
        .where(*conditions, W.queue.in_(list(queues)), *_among(exclude, only))
        .order_by(*order)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


def _looked_at(now: datetime, *, expired: bool) -> tuple[list[Any], tuple[Any, ...]]:
    """What a claim (or, with `expired`, a rescue) selects, and in which order it takes
    the rows: by priority then age, or the longest expired first."""
    if expired:
        return lease_expired(now), (W.lease_expires_at,)
    return pending_due(now), (W.claim_rank, W.id)


def _among(exclude: Collection[int], only: Collection[int] | None) -> list[Any]:
    conditions = [W.id.not_in(list(exclude))] if exclude else []
    if only is not None:
        conditions.append(W.id.in_(list(only)))
    return conditions


async def workflow_claim_candidates(
    conn: AsyncConnection,
    queues: Sequence[str],
    now: datetime,
    limit: int,
    *,
    expired: bool = False,
    exclude: Collection[int] = (),
) -> list[int]:
    """The ids a claim (or, with `expired`, a rescue) would look at first, in its order:
    a plain read, locking nothing."""
    conditions, order = _looked_at(now, expired=expired)
    query = (
        select(W.id)
        .where(*conditions, W.queue.in_(list(queues)), *_among(exclude, None))
        .order_by(*order)
        .limit(limit)
    )
    return [int(found) for found in (await conn.scalars(query)).all()]


async def workflow_claim_pending(
    conn: AsyncConnection,
    *,
    owner: str,
    queues: Sequence[str],
    limit: int,
    now: datetime,
    lease: float,
    limit_of: LimitOf = one_slot,
    lookahead: int = 0,
    exclude: Collection[int] = (),
) -> list[WorkflowRow]:
    """Claim up to `limit` runnable pending workflows for `owner` (see
    `workflow_claim_pending_counted`)."""
    claim = await workflow_claim_pending_counted(
        conn,
        owner=owner,
        queues=queues,
        limit=limit,
        now=now,
        lease=lease,
        limit_of=limit_of,
        lookahead=lookahead,
        exclude=exclude,
    )
    return claim.rows


@dataclass(frozen=True)
class PendingClaim:
    """What a claim of pending work took, and what it passed over."""

    rows: list[WorkflowRow]
    waiting: int
    """Candidates left pending because a concurrency key they need is at its limit."""


async def workflow_claim_pending_counted(
    conn: AsyncConnection,
    *,
    owner: str,
    queues: Sequence[str],
    limit: int,
    now: datetime,
    lease: float,
    limit_of: LimitOf = one_slot,
    lookahead: int = 0,
    exclude: Collection[int] = (),
    only: Collection[int] | None = None,
) -> PendingClaim:
    """Claim up to `limit` runnable pending workflows for `owner`, each with all of its
    concurrency keys (`limit_of` gives a key's slots). A workflow that cannot have them
    all stays pending, holding none, and the claim takes the next candidates instead: it
    looks at up to `limit + lookahead` of them, in one pass of the claim index. Those in
    `exclude` are passed over; with `only`, only those are looked at."""
    query = claim_pending_query(queues, limit + lookahead, now, exclude=exclude, only=only)
    candidates = [WorkflowRow.from_mapping(r) for r in (await conn.execute(query)).mappings().all()]
    candidates = await _set_aside(conn, candidates, owner=owner, now=now)
    chosen, waiting = await locks.claimable_with_keys(conn, candidates, limit, limit_of, now)
    rows = await _claim_rows(conn, chosen, owner=owner, now=now, lease=lease)
    return PendingClaim(rows, waiting)


async def workflow_claim_expired(
    conn: AsyncConnection,
    *,
    owner: str,
    queues: Sequence[str],
    limit: int,
    now: datetime,
    lease: float,
    exclude: Collection[int] = (),
    only: Collection[int] | None = None,
) -> list[WorkflowRow]:
    """Claim up to `limit` running workflows whose owner's lease expired (recovery),
    except the workflows in `exclude` (those the claiming daemon still runs itself: its
    own runner has to give such a workflow up before anyone may take it over); with
    `only`, among those alone."""
    conditions, order = _looked_at(now, expired=True)
    query = (
        select(workflows)
        .where(*conditions, W.queue.in_(list(queues)), *_among(exclude, only))
        .order_by(*order)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return await _claim_selected(conn, query, owner=owner, now=now, lease=lease)


async def workflow_claim_by_id(
    conn: AsyncConnection, workflow_id: int, *, owner: str, now: datetime, lease: float
) -> bool:
    """Claim one workflow if it is pending or its owner's lease expired."""
    result = await conn.execute(
        update(workflows)
        .where(
            W.id == workflow_id,
            or_(
                state_in(Operation.CLAIM),
                and_(*lease_expired(now)),
            ),
        )
        .values(**_claim_values(owner, now, lease))
    )
    return result.rowcount == 1


@dataclass(frozen=True)
class Claimable:
    """What a claim (`pending`) and a rescue (`expired`) would find something to take."""

    pending: bool
    expired: bool


async def workflows_claimable_any(
    conn: AsyncConnection, queues: Sequence[str], now: datetime
) -> Claimable:
    """`workflows_claimable` for pending and for expired at once: two EXISTS, each through
    its own index (the claim index, the lease index), in one plain read locking nothing."""
    in_queues = W.queue.in_(list(queues))
    pending = select(W.id).where(*pending_due(now), in_queues).exists()
    expired = select(W.id).where(*lease_expired(now), in_queues).exists()
    row = (await conn.execute(select(pending.label("pending"), expired.label("expired")))).one()
    return Claimable(pending=bool(row.pending), expired=bool(row.expired))
