"""Concurrency keys as operators see them: which keys a workflow names, holds and waits
for (`show`), every held key with its holders and waiters (`wfectl locks`), and an
operator's release of a stuck key (`wfectl locks release`), recorded as an event.

Taking keys is the claim's work (`wfed.store.locks`); giving them up is the ending
transition's (`wfed.states.releases_keys`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncConnection

from wfed.engine import control
from wfed.engine.views import KeyHolder, KeyStatus, KeyWait, WorkflowKeys
from wfed.errors import InvalidDefinition, InvalidTransition
from wfed.logging import get_logger
from wfed.states import EventKind, WorkflowState
from wfed.store import events as event_store
from wfed.store import locks as lock_store
from wfed.store.events import Event
from wfed.store.lock_keys import key_name, parse_lock_keys
from wfed.store.locks import HeldSlot
from wfed.store.rows import WorkflowRow

log = get_logger("wfed.engine")

LimitOf = Callable[[str], int]
WAITERS_READ_MAX = 10_000
"""Pending workflows naming keys that `wfectl locks` reads to list who waits."""


def _holder(slot: HeldSlot) -> KeyHolder:
    return KeyHolder(
        key=slot.key,
        slot=slot.slot,
        workflow=slot.workflow_name,
        state=slot.state,
        claimed_by=slot.claimed_by,
        acquired_at=slot.acquired_at,
    )


async def workflow_keys(conn: AsyncConnection, row: WorkflowRow, limit_of: LimitOf) -> WorkflowKeys:
    """The keys `row` names, the slots it holds and, if it is pending, the keys it waits
    for: those it does not hold whose every slot is taken. One read of the slot rows."""
    try:
        named = list(parse_lock_keys(row.locks))
        invalid = None
    except InvalidDefinition as exc:
        named, invalid = [], str(exc)
    if named:
        slots = await lock_store.locks_held(conn, keys=named)
    else:
        # It may still hold keys its column no longer names (edited after its claim).
        slots = await lock_store.locks_held(conn, workflow_id=row.id)
    held = [_holder(slot) for slot in slots if slot.workflow_id == row.id]
    waiting: list[KeyWait] = []
    if row.state is WorkflowState.PENDING:
        mine = {holder.key for holder in held}
        for key in named:
            if key in mine:
                continue
            others = [_holder(slot) for slot in slots if slot.key == key]
            limit = limit_of(key)
            taken = {holder.slot for holder in others}
            if all(slot in taken for slot in range(limit)):
                waiting.append(KeyWait(key, limit, others))
    return WorkflowKeys(named=named, held=held, waiting_for=waiting, invalid=invalid)


async def key_statuses(conn: AsyncConnection, limit_of: LimitOf) -> list[KeyStatus]:
    """Every key that has a holder, by name: its limit, holders, and the pending
    workflows that name it without holding it."""
    slots = await lock_store.locks_held(conn)
    by_key: dict[str, list[KeyHolder]] = defaultdict(list)
    for slot in slots:
        by_key[slot.key].append(_holder(slot))
    waiting: dict[str, list[str]] = defaultdict(list)
    wanted = await lock_store.locks_wanted_pending(conn, limit=WAITERS_READ_MAX)
    for _, name, value in wanted:
        try:
            keys = parse_lock_keys(value)
        except InvalidDefinition:
            continue
        for key in keys:
            holders = by_key.get(key, [])
            if key in by_key and all(h.workflow != name for h in holders):
                waiting[key].append(name)
    return [
        KeyStatus(key=key, limit=limit_of(key), holders=holders, waiting=waiting[key])
        for key, holders in sorted(by_key.items())
    ]


async def release(
    operator: control.Operator, key: str, workflow: str | None, reason: str | None
) -> list[KeyHolder]:
    """Free the slots of `key` (only `workflow`'s, if given) whatever their holders'
    states, recording a `lock_released` event on each holder; InvalidTransition when
    nothing holds it. The holders go on as they are: a running one is not stopped."""
    key = key_name(key)
    async with operator.db.transaction() as conn:
        workflow_id = None
        if workflow is not None:
            workflow_id = (await control.require(conn, workflow, for_update=True)).id
        freed = await lock_store.locks_release(conn, key, workflow_id)
        if not freed:
            holder = f"workflow {workflow!r}" if workflow is not None else "any workflow"
            raise InvalidTransition(f"concurrency key {key!r} is not held by {holder}")
        now = operator.clock()
        await event_store.events_insert(
            conn,
            *(
                Event(
                    slot.workflow_id,
                    slot.workflow_name,
                    EventKind.LOCK_RELEASED,
                    operator.actor,
                    now,
                    reason=reason,
                    detail={"key": key, "slot": slot.slot, "state": slot.state.value},
                )
                for slot in freed
            ),
        )
    for slot in freed:
        log.info(
            "lock_released",
            key=key,
            slot=slot.slot,
            workflow=slot.workflow_name,
            actor=operator.actor,
            reason=reason,
        )
    return [_holder(slot) for slot in freed]
