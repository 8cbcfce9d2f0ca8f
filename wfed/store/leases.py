"""Leases: an owner renews its hold on the workflows it runs, and learns of the control
requests waiting on them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from wfed.states import Operation, Request
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
