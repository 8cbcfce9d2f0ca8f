"""A session frozen inside a transaction loses its row locks before a lease ends.

A daemon stopped (SIGSTOP, a hung host) in the middle of a transaction keeps its row
locks for as long as the server keeps its session; the rescue skips locked rows, so its
workflows could not be taken over. The daemon's sessions carry the server's idle-in-
transaction timeout, so the server ends such a session and the locks go with it.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from conftest import unique_name
from sqlalchemy import select

from wfed import Engine
from wfed.store.database import Database
from wfed.store.schema import workflows

TIMEOUT = 1.0
# How long the test polls for the lock to be released: far beyond TIMEOUT, a bound that
# only a server which never ends the session reaches.
PATIENCE = 30.0


@pytest.mark.parametrize("database_url", ["mariadb", "postgresql"], indirect=True)
async def test_an_idle_transaction_loses_its_locks(engine: Engine, database_url: str) -> None:
    """A transaction left idle while holding a row lock is ended by the server after the
    idle timeout: another session can then lock the row."""
    name = unique_name("idle")
    await engine.create_workflow(name, {}, ["noop"], queue=unique_name("idle"))
    frozen_db = Database(database_url, idle_transaction_timeout=TIMEOUT)
    query = select(workflows.c.id).where(workflows.c.name == name)
    try:
        async with contextlib.AsyncExitStack() as stack:
            frozen = await stack.enter_async_context(frozen_db.engine.connect())
            await frozen.begin()
            assert await frozen.scalar(query.with_for_update()) is not None
            # The frozen session now does nothing; another one polls for the row.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + PATIENCE
            taken = None
            while taken is None and loop.time() < deadline:
                async with engine.db.transaction() as conn:
                    taken = await conn.scalar(query.with_for_update(skip_locked=True))
                if taken is None:
                    await asyncio.sleep(0.1)
            assert taken is not None, "the idle transaction kept its lock"
            with contextlib.suppress(Exception):
                await frozen.rollback()
    finally:
        await frozen_db.dispose()
