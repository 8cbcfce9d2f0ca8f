"""Database outages: a private MariaDB server is stopped under a running daemon."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import STEP_MODULES, DaemonFactory, journal_lines, wait_until
from private_mariadb import PrivateMariaDB, available
from sqlalchemy import event, text

from wfed import Engine, StepState, WorkflowState
from wfed.store.database import Database
from wfed.store.migrate import upgrade


@pytest.fixture
def private_mariadb(tmp_path: Path) -> Iterator[PrivateMariaDB]:
    """A MariaDB server of this test's own (own datadir, spare port) with database wfed."""
    reason = available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"private MariaDB needed in CI: {reason}")
        pytest.skip(f"private MariaDB unavailable: {reason}")
    server = PrivateMariaDB(tmp_path / "mariadb")
    server.root.mkdir()
    server.install()
    server.start()
    server.sql("CREATE DATABASE wfed")
    try:
        yield server
    finally:
        server.stop()


async def _schema_and_journal(server: PrivateMariaDB, tmp_path: Path) -> tuple[str, Path]:
    """The private server's URL, its schema upgraded, and an empty journal file."""
    db = Database(server.url)
    await upgrade(db)
    await db.dispose()
    journal = tmp_path / "journal.txt"
    journal.touch()
    return server.url, journal


async def test_daemon_rides_out_a_mariadb_outage(
    private_mariadb: PrivateMariaDB, start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    """MariaDB stopped for 10 s while workflows run, then started: the daemon stays up and
    every workflow completes with each step run exactly once."""
    url, journal = await _schema_and_journal(private_mariadb, tmp_path)
    queue = "outage"
    names = [f"outage-{i}" for i in range(12)]
    async with Engine(url, step_modules=STEP_MODULES) as engine:
        for i, name in enumerate(names):
            steps = [
                {"step": "slow", "args": {"tag": f"w{i}-s{p}", "seconds": 0.4}} for p in range(4)
            ]
            await engine.create_workflow(name, {"journal": str(journal)}, steps, queue=queue)
    # The lease outlasts the outage, so no step is taken for interrupted.
    daemon = start_daemon(url, queue=queue, lease=40.0, control_interval=0.5)

    def started() -> int:
        return sum(line.startswith("start") for line in journal_lines(journal))

    async def some_started() -> bool:
        return started() >= 12

    await wait_until(some_started, what="steps under way")
    private_mariadb.stop()
    await asyncio.sleep(10)  # the outage itself, not a wait for a result
    assert daemon.proc.poll() is None, "the daemon exited during the outage"
    private_mariadb.start()

    async with Engine(url, step_modules=STEP_MODULES) as engine:

        async def all_completed() -> bool:
            states = [(await engine.get(name)).state for name in names]
            return all(state is WorkflowState.COMPLETED for state in states)

        await wait_until(all_completed, limit=120, what="every workflow completed")
        for name in names:
            workflow = await engine.get(name)
            assert [s.state for s in workflow.steps] == [StepState.COMPLETED] * 4
            assert [s.attempts for s in workflow.steps] == [1] * 4
    ends = [line.split()[1] for line in journal_lines(journal) if line.startswith("end")]
    assert sorted(ends) == sorted(f"w{i}-s{p}" for i in range(12) for p in range(4))
    assert daemon.proc.poll() is None
    assert daemon.events("claim_failed") or daemon.events("heartbeat_failed")


async def test_a_daemon_started_while_its_database_is_down_waits_for_it(
    private_mariadb: PrivateMariaDB, start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    """A daemon started while its MariaDB server is down (a host booting before its
    database, say) stays up, says it waits for the database, and once the server is
    back starts and runs the work waiting for it."""
    url, journal = await _schema_and_journal(private_mariadb, tmp_path)
    queue = "late-db"
    async with Engine(url, step_modules=STEP_MODULES) as engine:
        await engine.create_workflow(
            "late-db-1",
            {"journal": str(journal)},
            [{"step": "mark", "args": {"tag": "ran"}}],
            queue=queue,
        )
    private_mariadb.stop()

    daemon = start_daemon(url, queue=queue, wait_ready=False)
    waiting = await asyncio.to_thread(daemon.wait_for_log, "database_unreachable")
    assert "unreachable" in waiting["error"]
    assert daemon.proc.poll() is None

    private_mariadb.start()
    await asyncio.to_thread(daemon.wait_for_log, "daemon_started", 60.0)
    async with Engine(url, step_modules=STEP_MODULES) as engine:

        async def completed() -> bool:
            return (await engine.get("late-db-1")).state is WorkflowState.COMPLETED

        await wait_until(completed, limit=60, what="the waiting workflow completed")
    assert daemon.proc.poll() is None


async def test_cancelled_query_never_returns_its_connection_to_the_pool(
    mariadb_url: str,
) -> None:
    """A query cancelled mid-flight invalidates its connection; the pool's next query
    gets its own result, not the cancelled one's."""
    db = Database(mariadb_url, pool_size=1)
    invalidated: list[object] = []
    event.listen(
        db.engine.sync_engine.pool, "invalidate", lambda conn, rec, exc: invalidated.append(conn)
    )
    try:
        for _ in range(3):

            async def slow_query() -> None:
                async with db.engine.connect() as conn:
                    await conn.execute(text("SELECT SLEEP(2), 'stale'"))

            task = asyncio.create_task(slow_query())
            await asyncio.sleep(0.3)  # let the query reach the server
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            async with db.engine.connect() as conn:
                assert await conn.scalar(text("SELECT 'fresh'")) == "fresh"
        assert len(invalidated) == 3
    finally:
        await db.dispose()
