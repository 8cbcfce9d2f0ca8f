"""PostgreSQL wake-ups: LISTEN on the channel the `workflows` trigger notifies
(migration 0004), on a connection of its own.

A notification is a hint, never the truth: the daemon acts on it by running the same
claim or heartbeat it runs on its poll, which reads the rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from wfed.store.database import Database

CHANNEL = "wfed_workflows"
APPLICATION_NAME = "wfed listener"
"""How the listening session shows in pg_stat_activity."""


class Listening:
    """One LISTEN session; `dropped` is set when its connection ends."""

    def __init__(self, engine: AsyncEngine, conn: AsyncConnection, raw: Any) -> None:
        self._engine = engine
        self._conn = conn
        self._raw = raw
        self.dropped = asyncio.Event()
        raw.add_termination_listener(lambda _connection: self.dropped.set())

    def is_closed(self) -> bool:
        return bool(self._raw.is_closed())

    async def close(self) -> None:
        try:
            if not self._raw.is_closed():
                await self._conn.close()
        finally:
            await self._engine.dispose()


async def listen(db: Database, on_message: Callable[[str], None]) -> Listening:
    """Open a session and LISTEN; `on_message(payload)` is called for each notification
    (on the event loop; it must not raise)."""
    engine = db.dedicated_engine()
    try:
        conn = await engine.connect()
        raw: Any = (await conn.get_raw_connection()).driver_connection
        await raw.execute(f"SET application_name = '{APPLICATION_NAME}'")
        await raw.add_listener(CHANNEL, lambda _c, _pid, _channel, payload: on_message(payload))
    except BaseException:
        await engine.dispose()
        raise
    return Listening(engine, conn, raw)
