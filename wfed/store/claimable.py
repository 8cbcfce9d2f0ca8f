"""The question an idle daemon asks every poll: is there pending work, or an expired lease,
to claim? Both answers in one statement, so that idling costs one statement per poll."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from wfed.store.schema import workflows

# The one definition of what a claim and a rescue select (see workflows.py).
from wfed.store.workflows import _lease_expired, _pending_due

W = workflows.c


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
    pending = select(W.id).where(*_pending_due(now), in_queues).exists()
    expired = select(W.id).where(*_lease_expired(now), in_queues).exists()
    row = (await conn.execute(select(pending.label("pending"), expired.label("expired")))).one()
    return Claimable(pending=bool(row.pending), expired=bool(row.expired))
