"""Queries on the `schedules` and `schedule_fires` tables.

A tick is fired in one transaction (`schedule_fire_begin`, then the workflow's insert by
the caller): the schedule's row is locked by the update that moves its `next_fire_at`
on, then the `schedule_fires` row is inserted. Its primary key (schedule_id, tick_at) is
what makes a tick enqueue exactly once across every daemon; the lock only makes a
second daemon wait for the first one's commit and find the tick taken, instead of
failing on the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, and_, case, delete, exists, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from wfed.store.schema import schedule_fires, schedules

S = schedules.c
F = schedule_fires.c

ACTIVE = "active"
PAUSED = "paused"


class TickTaken(Exception):
    """Another daemon fired this tick already (the expected outcome of a race)."""


class ScheduleGone(Exception):
    """The schedule was paused or removed since it was read: nothing to fire."""


@dataclass(frozen=True)
class ScheduleRow:
    """One row of `schedules`."""

    id: int
    name: str
    cron: str
    timezone: str
    template: Any
    state: str
    catchup: str | None
    next_fire_at: datetime | None
    last_fired_at: datetime | None
    created_by: str
    updated_by: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_mapping(cls, row: RowMapping) -> ScheduleRow:
        return cls(
            id=row["id"],
            name=row["name"],
            cron=row["cron"],
            timezone=row["timezone"],
            template=row["template"],
            state=row["state"],
            catchup=row["catchup"],
            next_fire_at=row["next_fire_at"],
            last_fired_at=row["last_fired_at"],
            created_by=row["created_by"],
            updated_by=row["updated_by"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


async def schedule_insert(
    conn: AsyncConnection,
    *,
    name: str,
    cron: str,
    timezone: str,
    template: dict[str, Any],
    catchup: str | None,
    next_fire_at: datetime | None,
    created_by: str,
    now: datetime,
) -> bool:
    """Insert an active schedule; False if the name is taken."""
    try:
        await conn.execute(
            schedules.insert().values(
                name=name,
                cron=cron,
                timezone=timezone,
                template=template,
                state=ACTIVE,
                catchup=catchup,
                next_fire_at=next_fire_at,
                created_by=created_by,
                created_at=now,
                updated_at=now,
            )
        )
    except IntegrityError:
        return False
    return True


async def schedule_get(conn: AsyncConnection, name: str) -> ScheduleRow | None:
    row = (await conn.execute(select(schedules).where(S.name == name))).mappings().first()
    return ScheduleRow.from_mapping(row) if row else None


async def schedule_list(conn: AsyncConnection) -> list[ScheduleRow]:
    """Every schedule, by name."""
    rows = (await conn.execute(select(schedules).order_by(S.name))).mappings().all()
    return [ScheduleRow.from_mapping(row) for row in rows]


async def schedule_set_state(
    conn: AsyncConnection,
    name: str,
    *,
    state: str,
    next_fire_at: datetime | None,
    actor: str,
    now: datetime,
) -> bool:
    """Pause or resume: set `state` and `next_fire_at`; False if no schedule has `name`."""
    result = await conn.execute(
        update(schedules)
        .where(S.name == name)
        .values(state=state, next_fire_at=next_fire_at, updated_by=actor, updated_at=now)
    )
    return bool(result.rowcount)


async def schedule_delete(conn: AsyncConnection, name: str) -> bool:
    """Delete a schedule (its fired ticks go with it); False if none has `name`."""
    row = await schedule_get(conn, name)
    if row is None:
        return False
    # Explicitly, not only by the foreign key: SQLite enforces it per connection.
    await conn.execute(delete(schedule_fires).where(F.schedule_id == row.id))
    result = await conn.execute(delete(schedules).where(S.id == row.id))
    return bool(result.rowcount)


def _upcoming_query(limit: int, *, nulls_first: bool) -> Any:
    # ix_schedules_due (state, next_fire_at). A schedule inserted by plain SQL, whose next
    # tick no daemon has computed yet (NULL), comes first: MariaDB, MySQL and SQLite sort
    # NULL first already, PostgreSQL is told to.
    order = S.next_fire_at.nulls_first() if nulls_first else S.next_fire_at
    return select(schedules).where(S.state == ACTIVE).order_by(order).limit(limit)


async def schedules_upcoming(conn: AsyncConnection, limit: int) -> list[ScheduleRow]:
    """The active schedules whose next tick comes first (never computed first), one
    query: those due now, and after them when the next one is."""
    query = _upcoming_query(limit, nulls_first=conn.dialect.name == "postgresql")
    rows = (await conn.execute(query)).mappings().all()
    return [ScheduleRow.from_mapping(row) for row in rows]


async def schedule_advance(
    conn: AsyncConnection,
    schedule_id: int,
    *,
    next_fire_at: datetime | None,
    fired_at: datetime | None,
    now: datetime,
) -> bool:
    """Move an active schedule's next tick on to `next_fire_at`, never back (another
    daemon may have moved it further), and its last fired tick to `fired_at`, never back.
    Locks the row for the rest of the transaction. False if it is paused or gone."""
    values: dict[str, Any] = {"updated_at": now}
    if next_fire_at is not None:
        values["next_fire_at"] = case(
            (or_(S.next_fire_at.is_(None), S.next_fire_at < next_fire_at), next_fire_at),
            else_=S.next_fire_at,
        )
    if fired_at is not None:
        values["last_fired_at"] = case(
            (or_(S.last_fired_at.is_(None), S.last_fired_at < fired_at), fired_at),
            else_=S.last_fired_at,
        )
    result = await conn.execute(
        update(schedules).where(S.id == schedule_id, S.state == ACTIVE).values(**values)
    )
    return bool(result.rowcount)


async def schedule_fire_begin(
    conn: AsyncConnection,
    schedule_id: int,
    *,
    tick_at: datetime,
    next_fire_at: datetime | None,
    workflow_name: str,
    fired_by: str,
    now: datetime,
) -> None:
    """The start of a tick's transaction: lock the schedule and move it past the tick,
    then record the tick as fired. TickTaken if another daemon fired it; ScheduleGone if
    the schedule was paused or removed meanwhile. The caller inserts the workflow in
    the same transaction, and rolls back on either exception."""
    if not await schedule_advance(
        conn, schedule_id, next_fire_at=next_fire_at, fired_at=tick_at, now=now
    ):
        raise ScheduleGone
    taken = await conn.scalar(
        select(exists().where(and_(F.schedule_id == schedule_id, F.tick_at == tick_at)))
    )
    if taken:
        raise TickTaken
    try:
        await conn.execute(
            schedule_fires.insert().values(
                schedule_id=schedule_id,
                tick_at=tick_at,
                workflow_name=workflow_name,
                fired_by=fired_by,
                fired_at=now,
            )
        )
    except IntegrityError:
        # The key refused it: a daemon that fired it without our lock seeing its row yet.
        raise TickTaken from None


async def schedule_fires_of(conn: AsyncConnection, schedule_id: int) -> list[tuple[datetime, str]]:
    """The ticks a schedule fired, oldest first, with their workflows' names."""
    rows = await conn.execute(
        select(F.tick_at, F.workflow_name).where(F.schedule_id == schedule_id).order_by(F.tick_at)
    )
    return [(row.tick_at, row.workflow_name) for row in rows]
