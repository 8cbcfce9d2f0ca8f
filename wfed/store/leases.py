"""Leases: an owner renews its hold on the workflows it runs, and learns of the control
requests waiting on them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from wfed.states import Operation, Request, sources
from wfed.store.guards import state_in
from wfed.store.schema import workflows
from wfed.store.workflows import workflow_update

W = workflows.c


async def workflow_renew_lease(
    conn: AsyncConnection, workflow_id: int, *, fence: int, now: datetime, lease: float
) -> tuple[bool, Request | None]:
    """Extend one owner's lease; returns (still owned, pending control request)."""
    renewed = await workflow_update(
        conn,
        workflow_id,
        Operation.RENEW,
        fence=fence,
        values={"lease_expires_at": now + timedelta(seconds=lease)},
    )
    if not renewed:
        return False, None
    requested = await conn.scalar(select(W.requested).where(W.id == workflow_id))
    return True, Request(requested) if requested else None


async def workflows_ended_under(conn: AsyncConnection, fences: dict[int, int]) -> set[int]:
    """Of `fences` (workflow id -> an owner's fence), the workflows that are no longer
    running but still carry that fence: their owner's own end of turn was committed
    (perhaps with its reply lost). Nobody else takes a workflow out of `running` without
    bumping its fence, so these were not taken over: their owner learns of the end when it
    retries its write, and must not be told its lease is lost."""
    if not fences:
        return set()
    rows = await conn.execute(select(W.id, W.fence, W.state).where(W.id.in_(list(fences))))
    running = sources(Operation.RENEW)
    return {row.id for row in rows if row.fence == fences[row.id] and row.state not in running}


@dataclass(frozen=True)
class Held:
    """What the heartbeat learns of one workflow its daemon runs."""

    fence: int
    request: Request | None
    renewed: bool
    """False when another transaction held the row (e.g. this daemon's own step commit):
    renewed next time, or by the runner's next step once its lease is half spent."""


async def workflow_renew_owned(
    conn: AsyncConnection, *, owner: str, ids: Sequence[int], now: datetime, lease: float
) -> dict[int, Held]:
    """Extend the leases `owner` holds on `ids`; returns what it still holds of them.

    Rows another transaction has locked are skipped rather than waited for, so the
    heartbeat never queues behind step commits (and never deadlocks with them)."""
    owned = [W.claimed_by == owner, state_in(Operation.RENEW), W.id.in_(list(ids))]
    free = (
        (await conn.execute(select(W.id).where(*owned).with_for_update(skip_locked=True)))
        .scalars()
        .all()
    )
    if free:
        await conn.execute(
            update(workflows)
            .where(W.id.in_(list(free)), W.claimed_by == owner)
            .values(lease_expires_at=now + timedelta(seconds=lease))
        )
    rows = await conn.execute(select(W.id, W.fence, W.requested).where(*owned))
    return {
        row.id: Held(row.fence, Request(row.requested) if row.requested else None, row.id in free)
        for row in rows
    }


def requests_owned_query(owner: str) -> Select[tuple[int, int, str | None]]:
    """The workflows `owner` runs that have a request waiting: one range of the index on
    (claimed_by, requested), however many workflows the owner runs."""
    return select(W.id, W.fence, W.requested).where(
        W.claimed_by == owner, W.requested.is_not(None), state_in(Operation.RENEW)
    )


async def workflow_requests_owned(conn: AsyncConnection, *, owner: str) -> dict[int, Held]:
    """What `requests_owned_query` finds, as the heartbeat reads it."""
    rows = await conn.execute(requests_owned_query(owner))
    return {row.id: Held(row.fence, Request(row.requested), renewed=False) for row in rows}
