"""Retention: deleting finished workflows by age, in batches of short transactions.

Used by `wfectl purge` (through the Engine) and by daemons with `[retention] purge_after`,
where only one daemon at a time purges: the live daemon with the smallest id.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from wfed.clock import Clock, utc_now
from wfed.errors import InvalidTransition
from wfed.logging import get_logger
from wfed.states import TERMINAL, EventKind, WorkflowState
from wfed.store import events as event_store
from wfed.store import workflows as workflow_store
from wfed.store.database import Database
from wfed.store.events import Event

log = get_logger("wfed.retention")

# Only finished workflows are purged by age.
PURGEABLE = TERMINAL


async def purge_finished(
    db: Database,
    older_than: timedelta,
    *,
    states: Iterable[WorkflowState | str] = PURGEABLE,
    events: bool = False,
    dry_run: bool = False,
    batch_size: int = 1000,
    actor: str,
    clock: Clock = utc_now,
) -> int:
    """Delete workflows in `states` that finished more than `older_than` ago.

    Each batch is its own short transaction (no table-wide lock, no long transaction).
    Their events are kept, plus a `purged` event each, unless `events`. Returns how many
    were deleted, or with `dry_run` how many would be.
    """
    chosen = [WorkflowState(s) for s in states]
    unfinished = [s.value for s in chosen if s not in PURGEABLE]
    if unfinished:
        raise InvalidTransition(
            f"cannot purge {', '.join(unfinished)} workflows: only finished ones "
            f"({', '.join(sorted(PURGEABLE))}) are purged; delete others one by one"
        )
    cutoff = clock() - older_than
    if dry_run:
        async with db.transaction() as conn:
            return await workflow_store.workflow_purge_count(
                conn, states=chosen, finished_before=cutoff
            )
    total = 0
    while True:
        async with db.transaction() as conn:
            batch = await workflow_store.workflow_purge_candidates(
                conn, states=chosen, finished_before=cutoff, limit=batch_size
            )
            ids = [workflow_id for workflow_id, _ in batch]
            total += await workflow_store.workflows_delete(conn, ids)
            if events:
                await event_store.events_delete_for(conn, ids)
            else:
                now = clock()
                await event_store.events_insert(
                    conn, *(Event(i, name, EventKind.PURGED, actor, now) for i, name in batch)
                )
        if len(batch) < batch_size:
            break
    log.info("workflows_purged", count=total, older_than=str(older_than))
    return total
