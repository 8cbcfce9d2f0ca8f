"""Queries on the `daemons` table: one row per live daemon, kept fresh by its heartbeat."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from wfed.store.rows import DaemonRow
from wfed.store.schema import daemons

D = daemons.c


async def daemon_register(conn: AsyncConnection, daemon: DaemonRow) -> None:
    """Record a starting daemon, replacing a stale row of the same id."""
    await conn.execute(delete(daemons).where(D.id == daemon.id))
    await conn.execute(
        daemons.insert().values(
            {key: getattr(daemon, key) for key in DaemonRow.__dataclass_fields__}
        )
    )


async def daemon_heartbeat(conn: AsyncConnection, daemon_id: str, now: datetime) -> bool:
    """Refresh a daemon's heartbeat; False if its row is gone (pruned as dead)."""
    result = await conn.execute(update(daemons).where(D.id == daemon_id).values(heartbeat_at=now))
    return result.rowcount == 1


async def daemon_deregister(conn: AsyncConnection, daemon_id: str) -> None:
    await conn.execute(delete(daemons).where(D.id == daemon_id))


async def daemons_list(conn: AsyncConnection) -> list[DaemonRow]:
    rows = await conn.execute(select(daemons).order_by(D.started_at))
    return [DaemonRow.from_mapping(row) for row in rows.mappings()]


async def daemon_is_eldest_live(
    conn: AsyncConnection, daemon_id: str, heartbeat_since: datetime
) -> bool:
    """Whether `daemon_id` has the smallest id among daemons with a fresh heartbeat (the
    one that does fleet-wide chores such as retention)."""
    eldest = await conn.scalar(
        select(D.id).where(D.heartbeat_at >= heartbeat_since).order_by(D.id).limit(1)
    )
    return bool(eldest == daemon_id)


async def daemons_prune(conn: AsyncConnection, heartbeat_before: datetime) -> int:
    """Forget daemons silent since `heartbeat_before` (long dead: their workflows were
    recovered); returns how many rows went."""
    result = await conn.execute(delete(daemons).where(D.heartbeat_at < heartbeat_before))
    return int(result.rowcount)
