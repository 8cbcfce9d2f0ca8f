"""Rows of long-dead daemons are pruned by a live one."""

from __future__ import annotations

from datetime import timedelta

from daemon_harness import DaemonFactory, wait_until
from sqlalchemy import func, insert, select

from wfed import Engine
from wfed.clock import utc_now
from wfed.store.schema import daemons


async def test_rows_of_daemons_silent_for_a_day_are_pruned(
    engine: Engine, start_daemon: DaemonFactory, queue: str, schema: str
) -> None:
    """A daemon row whose heartbeat is two days old is deleted by a running daemon;
    a row that went silent a minute ago stays (shown as dead by `wfectl daemons`)."""
    now = utc_now()
    rows = {
        f"{queue}-long-dead": now - timedelta(days=2),
        f"{queue}-just-dead": now - timedelta(minutes=1),
    }
    async with engine.db.engine.begin() as conn:
        await conn.execute(
            insert(daemons),
            [
                {
                    "id": daemon_id,
                    "host": "gone",
                    "pid": 1,
                    "version": "0",
                    "queues": [queue],
                    "max_workflows": 1,
                    "lease_seconds": 30,
                    "started_at": heartbeat,
                    "heartbeat_at": heartbeat,
                }
                for daemon_id, heartbeat in rows.items()
            ],
        )
    start_daemon(schema, queue=queue)

    async def left() -> set[str]:
        async with engine.db.engine.connect() as conn:
            found = await conn.scalars(select(daemons.c.id).where(daemons.c.id.in_(list(rows))))
            return set(found.all())

    async def pruned() -> bool:
        return await left() == {f"{queue}-just-dead"}

    await wait_until(pruned, what="the long-dead daemon pruned")
    async with engine.db.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(daemons)) >= 2
