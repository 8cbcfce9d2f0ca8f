"""Queries on `notification_deliveries` and `notification_cursors`: which events each
webhook has read, one row per (event, webhook) to send, and the claims on those rows.

A delivery is recorded by an INSERT that the unique key (event_id, target) refuses the
second time, whichever daemon tries, so an event is delivered once per webhook however
many daemons read it. Sending is claimed like a workflow: `claimed_by` and
`claimed_until`, taken under `FOR UPDATE SKIP LOCKED` (SQLite: its write transaction);
a claim whose holder died expires and another daemon takes the delivery over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from wfed.store.bounded import bounded
from wfed.store.rows import EventRow
from wfed.store.schema import (
    notification_cursors,
    notification_deliveries,
    workflow_events,
    workflow_steps,
    workflows,
)

C = notification_cursors.c
D = notification_deliveries.c
E = workflow_events.c

ERROR_MAX = 1000
"""Characters kept of a delivery's `last_error` (a receiver's reply may be a whole page)."""


@dataclass(frozen=True)
class DeliveryRow:
    """One row of `notification_deliveries`."""

    id: int
    event_id: int
    target: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    claimed_by: str | None
    claimed_until: datetime | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None

    @classmethod
    def from_mapping(cls, row: Any) -> DeliveryRow:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class NotifiableEvent:
    """An event with what a message about it says besides the event row: the workflow's
    queue and the name of the step at the event's position (None once the workflow is
    deleted, or for an event without a position)."""

    event: EventRow
    queue: str | None
    step: str | None


async def _insert_ignoring_duplicates(
    conn: AsyncConnection, table: Table, rows: list[dict[str, Any]], key: str
) -> None:
    """INSERT `rows`, each one a unique key refuses left out without an error."""
    if not rows:
        return
    # The dialects' insert constructs are imported here: wfectl on SQLite never loads
    # the MySQL or PostgreSQL dialect.
    from sqlalchemy.dialects import mysql, postgresql, sqlite  # noqa: PLC0415

    dialect = conn.dialect.name
    if dialect == "postgresql":
        await conn.execute(postgresql.insert(table).on_conflict_do_nothing(), rows)
    elif dialect == "sqlite":
        await conn.execute(sqlite.insert(table).on_conflict_do_nothing(), rows)
    else:
        # MySQL/MariaDB: a no-op update of the duplicate (INSERT IGNORE would also turn
        # other errors, a truncation, into warnings).
        statement = mysql.insert(table)
        await conn.execute(statement.on_duplicate_key_update({key: table.c[key]}), rows)


# -- cursors ----------------------------------------------------------------------------


async def events_newest_id(conn: AsyncConnection) -> int:
    """The id of the newest event (0 when there is none)."""
    return int(await conn.scalar(select(func.max(E.id))) or 0)


async def cursors_read(conn: AsyncConnection, targets: Sequence[str]) -> dict[str, int]:
    """How far each of `targets` has read the events (those without a cursor left out)."""
    rows = await conn.execute(select(C.target, C.event_id).where(C.target.in_(list(targets))))
    return {row.target: int(row.event_id) for row in rows}


async def cursors_create(
    conn: AsyncConnection, targets: Sequence[str], event_id: int, now: datetime
) -> None:
    """Cursors at `event_id` for the targets that have none (another daemon's, made at
    the same time, stands)."""
    rows = [{"target": t, "event_id": event_id, "updated_at": now} for t in targets]
    await _insert_ignoring_duplicates(conn, notification_cursors, rows, "target")


async def cursors_advance(
    conn: AsyncConnection, targets: Sequence[str], event_id: int, now: datetime
) -> None:
    """Move the targets' cursors up to `event_id`; never back (another daemon may be
    further already)."""
    await conn.execute(
        update(notification_cursors)
        .where(C.target.in_(list(targets)), C.event_id < event_id)
        .values(event_id=event_id, updated_at=now)
    )


# -- events -----------------------------------------------------------------------------


def _notifiable_events() -> Any:
    steps = workflow_steps.c
    return (
        select(
            workflow_events,
            workflows.c.queue,
            steps.step.label("step_name"),
        )
        .select_from(
            workflow_events.outerjoin(workflows, workflows.c.id == E.workflow_id).outerjoin(
                workflow_steps,
                (steps.workflow_id == E.workflow_id) & (steps.position == E.position),
            )
        )
        .order_by(E.id)
    )


def _notifiable(row: Any) -> NotifiableEvent:
    return NotifiableEvent(EventRow.from_mapping(row), row["queue"], row["step_name"])


async def events_after(
    conn: AsyncConnection, after: int, *, also: Sequence[int] = (), limit: int
) -> list[NotifiableEvent]:
    """The events above id `after` (at most `limit`, oldest first), and those of ids
    `also` (ids below it that were missing when last read: their transactions may have
    committed since). One range scan of the primary key."""
    condition = E.id > after
    if also:
        condition = or_(condition, E.id.in_(list(also)))
    rows = await conn.execute(_notifiable_events().where(condition).limit(limit))
    return [_notifiable(row) for row in rows.mappings()]


async def events_by_id(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, NotifiableEvent]:
    """The events of ids `ids` that still exist (`purge` may delete events)."""
    if not ids:
        return {}
    rows = await conn.execute(_notifiable_events().where(E.id.in_(list(ids))))
    found = [_notifiable(row) for row in rows.mappings()]
    return {item.event.id: item for item in found}


# -- deliveries -------------------------------------------------------------------------


async def deliveries_record(
    conn: AsyncConnection, pairs: Sequence[tuple[int, str]], now: datetime
) -> None:
    """A pending delivery per (event id, target), due now; pairs recorded already (by
    this daemon or another) are left as they are."""
    rows = [
        {"event_id": event_id, "target": target, "state": "pending", "next_attempt_at": now}
        for event_id, target in sorted(pairs)
    ]
    await _insert_ignoring_duplicates(conn, notification_deliveries, rows, "event_id")


def _claimable(targets: Sequence[str], now: datetime) -> tuple[Any, ...]:
    return (
        D.state == "pending",
        D.next_attempt_at <= now,
        D.target.in_(list(targets)),
        or_(D.claimed_until.is_(None), D.claimed_until < now),
    )


async def deliveries_due(conn: AsyncConnection, targets: Sequence[str], now: datetime) -> bool:
    """Whether a claim would find a delivery: a plain read through the due index, locking
    nothing (an idle daemon asks this rather than claiming)."""
    if not targets:
        return False
    found = await conn.scalar(select(D.id).where(*_claimable(targets, now)).limit(1))
    return found is not None


async def deliveries_claim(
    conn: AsyncConnection,
    targets: Sequence[str],
    *,
    owner: str,
    now: datetime,
    until: datetime,
    limit: int,
    skip_locked: bool,
) -> list[DeliveryRow]:
    """Claim up to `limit` pending deliveries to `targets` that are due and not claimed
    (or whose claim expired): they are this owner's to send until `until`."""
    if limit <= 0 or not targets:
        return []
    query = (
        select(notification_deliveries)
        .where(*_claimable(targets, now))
        .order_by(D.next_attempt_at, D.id)
        .limit(limit)
    )
    if skip_locked:
        query = query.with_for_update(skip_locked=True)
    rows = [DeliveryRow.from_mapping(row) for row in (await conn.execute(query)).mappings()]
    if not rows:
        return []
    await conn.execute(
        update(notification_deliveries)
        .where(D.id.in_([row.id for row in rows]))
        .values(claimed_by=owner, claimed_until=until)
    )
    return rows


async def delivery_read(conn: AsyncConnection, delivery_id: int) -> DeliveryRow | None:
    """The delivery of id `delivery_id` (None once pruned)."""
    row = (
        (await conn.execute(select(notification_deliveries).where(D.id == delivery_id)))
        .mappings()
        .first()
    )
    return DeliveryRow.from_mapping(row) if row is not None else None


def _claimed(delivery_id: int, owner: str) -> Any:
    # Only the holder of the claim writes the outcome: a daemon whose claim expired while
    # its POST hung finds the row taken over and writes nothing.
    return (D.id == delivery_id, D.state == "pending", D.claimed_by == owner)


async def delivery_sent(
    conn: AsyncConnection, delivery_id: int, *, owner: str, now: datetime
) -> bool:
    """The delivery went through; False if this owner no longer held its claim."""
    result = await conn.execute(
        update(notification_deliveries)
        .where(*_claimed(delivery_id, owner))
        .values(
            state="sent",
            attempts=D.attempts + 1,
            sent_at=now,
            claimed_by=None,
            claimed_until=None,
            next_attempt_at=None,
        )
    )
    return bool(result.rowcount)


async def delivery_failed(
    conn: AsyncConnection,
    delivery_id: int,
    *,
    owner: str,
    error: str,
    retry_at: datetime | None,
) -> bool:
    """A POST failed: the delivery is due again at `retry_at`, or (None) `failed` for
    good. False if this owner no longer held its claim."""
    result = await conn.execute(
        update(notification_deliveries)
        .where(*_claimed(delivery_id, owner))
        .values(
            state="pending" if retry_at is not None else "failed",
            attempts=D.attempts + 1,
            next_attempt_at=retry_at,
            last_error=bounded(error, ERROR_MAX),
            claimed_by=None,
            claimed_until=None,
        )
    )
    return bool(result.rowcount)


async def deliveries_release(
    conn: AsyncConnection, delivery_ids: Sequence[int], *, owner: str
) -> None:
    """Give up this owner's claims on deliveries whose POST was cut short (shutdown):
    due again at once, for any daemon."""
    await conn.execute(
        update(notification_deliveries)
        .where(D.id.in_(list(delivery_ids)), D.state == "pending", D.claimed_by == owner)
        .values(claimed_by=None, claimed_until=None)
    )


async def deliveries_list(
    conn: AsyncConnection, *, state: str | None = None, limit: int = 100
) -> list[DeliveryRow]:
    """Deliveries, newest first (of one state, through its index)."""
    query = select(notification_deliveries).order_by(D.id.desc()).limit(limit)
    if state is not None:
        query = query.where(D.state == state)
    return [DeliveryRow.from_mapping(row) for row in (await conn.execute(query)).mappings()]


async def deliveries_prune(conn: AsyncConnection, before: datetime, *, limit: int = 1000) -> int:
    """Delete up to `limit` deliveries sent or failed that were recorded before `before`:
    how many went."""
    ids = list(
        await conn.scalars(
            select(D.id)
            .where(D.state.in_(["sent", "failed"]), D.created_at < before)
            .order_by(D.id)
            .limit(limit)
        )
    )
    if not ids:
        return 0
    result = await conn.execute(delete(notification_deliveries).where(D.id.in_(ids)))
    return int(result.rowcount)
