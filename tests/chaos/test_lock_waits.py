"""Another session fights the daemons for row locks on MariaDB: it holds the rows of some
running workflows past the server's lock wait timeout (the daemons get error 1205), and
locks a workflow's step rows and then its row while a daemon's commit holds the row and
waits for the step rows (a deadlock: InnoDB rolls the daemon's transaction back, 1213)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from daemon_harness import DaemonFactory
from harness import (
    INTERNAL_ERRORS,
    Fleet,
    all_terminal,
    assert_clean,
    audit_run,
    enqueue,
    make_workflows,
    scaled,
    time_limit,
    wait_until,
)
from private_mariadb import PrivateMariaDB
from sqlalchemy import bindparam, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from wfed import Engine
from wfed.store.faults import mysql_error_code

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(time_limit(120, 900))]

LOCK_WAIT_TIMEOUT = 1
"""innodb_lock_wait_timeout (seconds) of the daemons' sessions during the test."""
LEASE = 6.0
KINDS = ("slow", "mark", "slow", "mark", "slow")
BALLAST_ROWS = 2000
"""Rows the fighting session updates first: InnoDB rolls back the lighter transaction of
a deadlock, which must be the daemon's."""


@pytest.fixture
def short_lock_waits(chaos_mariadb: PrivateMariaDB) -> Iterator[None]:
    """innodb_lock_wait_timeout of LOCK_WAIT_TIMEOUT for sessions opened meanwhile."""
    chaos_mariadb.sql(f"SET GLOBAL innodb_lock_wait_timeout = {LOCK_WAIT_TIMEOUT}")
    try:
        yield
    finally:
        chaos_mariadb.sql("SET GLOBAL innodb_lock_wait_timeout = 50")


async def running_ids(engine: AsyncEngine, queue: str) -> list[int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT id FROM workflows WHERE queue = :q AND state = 'running'"), {"q": queue}
        )
        return [row.id for row in rows]


async def deadlocks(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        row = (await conn.execute(text("SHOW GLOBAL STATUS LIKE 'Innodb_deadlocks'"))).one()
        return int(row[1])


class Fighter:
    """The session that fights the daemons for locks.

    It leaves a workflow alone for a lease after each attack: a row locked by another
    session for longer than the lease (the owner can then neither commit nor renew)
    rightly costs its owner the workflow; the test is about lock waits and deadlocks,
    each shorter than half a lease.
    """

    def __init__(self, url: str, queue: str, rng: random.Random) -> None:
        # Its own sessions wait for locks for as long as the server's default allows.
        self.engine = create_async_engine(url, isolation_level="READ COMMITTED")
        self.queue = queue
        self.rng = rng
        self.holds = 0
        self.deadlock_tries = 0
        self.own_errors: list[int | None] = []
        self.attacked: dict[int, float] = {}

    async def targets(self, count: int) -> list[int]:
        """Up to `count` running workflows not attacked within the last lease."""
        now = time.monotonic()
        ids = [
            i
            for i in await running_ids(self.engine, self.queue)
            if now - self.attacked.get(i, -LEASE) >= LEASE
        ]
        chosen = self.rng.sample(ids, min(count, len(ids)))
        self.attacked.update({i: now for i in chosen})
        if not chosen:
            await asyncio.sleep(0.1)  # nothing to attack yet: the fault schedule waits
        return chosen

    async def prepare(self) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                text("CREATE TABLE chaos_ballast (id INT PRIMARY KEY, n INT NOT NULL)")
            )
            await conn.execute(
                text("INSERT INTO chaos_ballast VALUES (:id, 0)"),
                [{"id": i} for i in range(BALLAST_ROWS)],
            )

    async def hold_rows(self) -> None:
        """Hold the rows of a few running workflows longer than the lock wait timeout."""
        chosen = await self.targets(3)
        if not chosen:
            return
        async with self.engine.connect() as conn, conn.begin():
            await conn.execute(
                text("SELECT id FROM workflows WHERE id IN :ids FOR UPDATE").bindparams(
                    bindparam("ids", expanding=True)
                ),
                {"ids": chosen},
            )
            self.holds += 1
            await asyncio.sleep(self.rng.uniform(1.2, 2.5))  # the fault itself: a lock held
            await conn.rollback()

    async def deadlock(self) -> None:
        """Lock a running workflow's step rows, wait until its owner's next commit has
        locked the workflow row and queues behind us, then ask for the workflow row."""
        chosen = await self.targets(1)
        if not chosen:
            return
        workflow_id = chosen[0]
        self.deadlock_tries += 1
        try:
            async with self.engine.connect() as conn, conn.begin():
                await conn.execute(text("UPDATE chaos_ballast SET n = n + 1"))
                await conn.execute(
                    text("SELECT id FROM workflow_steps WHERE workflow_id = :w FOR UPDATE"),
                    {"w": workflow_id},
                )
                await self.owner_waiting(conn)
                await conn.execute(
                    text("SELECT id FROM workflows WHERE id = :w FOR UPDATE"), {"w": workflow_id}
                )
                await conn.rollback()
        except DBAPIError as exc:  # we may lose too (a wait on the heartbeat's lock)
            self.own_errors.append(mysql_error_code(exc))

    async def owner_waiting(self, conn: AsyncConnection) -> None:
        """Wait (less than the lock wait timeout) until a transaction waits for a lock:
        the owner's next commit, which has locked the workflow row and queues behind our
        lock on its step rows. MariaDB refreshes innodb_trx every 0.1 s at most."""
        deadline = time.monotonic() + 0.8 * LOCK_WAIT_TIMEOUT
        while time.monotonic() < deadline:
            waiting = await conn.scalar(
                text(
                    "SELECT COUNT(*) FROM information_schema.innodb_trx "
                    "WHERE trx_state = 'LOCK WAIT' AND trx_mysql_thread_id <> CONNECTION_ID()"
                )
            )
            if waiting:
                return
            await asyncio.sleep(0.05)

    async def run(self, done: asyncio.Event) -> None:
        while not done.is_set():
            await self.deadlock()
            await self.deadlock()
            await self.hold_rows()


async def test_lock_waits_and_deadlocks_fail_no_workflow(
    chaos_mariadb: PrivateMariaDB,
    short_lock_waits: None,
    private_mariadb_url: str,
    start_daemon: DaemonFactory,
    make_engine: Callable[..., Engine],
    queue: str,
    journal: Path,
    figures: Callable[..., None],
) -> None:
    """A session holding workflow rows past the lock wait timeout (1205) and provoking
    deadlocks with the daemons' commits (1213): every workflow of non-idempotent steps
    completes, and every step ran exactly once."""
    rng = random.Random(53)
    count = scaled(100, 800)
    specs = make_workflows("lock", count, KINDS, (0.2, 0.5), rng)
    engine = make_engine(private_mariadb_url).db.engine
    fighter = Fighter(private_mariadb_url, queue, rng)
    await fighter.prepare()
    deadlocks_before = await deadlocks(engine)
    await enqueue(engine, specs, queue, journal)
    fleet = Fleet(
        start_daemon,
        private_mariadb_url,
        queue,
        2,
        lease=LEASE,
        poll_interval=0.1,
        control_interval=0.5,
        max_workflows=16,
    )
    await fleet.ready()
    done = asyncio.Event()
    fighting = asyncio.create_task(fighter.run(done))
    try:
        took = await wait_until(
            lambda: all_terminal(engine, queue, count),
            limit=scaled(100, 800),
            what=f"{count} workflows finished",
            interval=0.25,
        )
    finally:
        done.set()
        await fighting
        await fighter.engine.dispose()
    result = await audit_run(engine, specs, journal, errors_allowed=False)
    internal = fleet.log_events(*INTERNAL_ERRORS)
    seen_1205 = fleet.log_text_count(r"\b1205\b")
    seen_1213 = fleet.log_text_count(r"\b1213\b")
    figures(
        seconds=round(took, 1),
        row_holds=fighter.holds,
        deadlock_tries=fighter.deadlock_tries,
        innodb_deadlocks=await deadlocks(engine) - deadlocks_before,
        fighter_lost=len(fighter.own_errors),
        logged_1205=seen_1205,
        logged_1213=seen_1213,
        lease_lost=sum(fleet.log_events("lease_lost").values()),
        **result.figures(),
    )
    assert_clean(result)
    assert result.completed == count
    assert seen_1205 > 0, "no daemon met a lock wait timeout"
    assert seen_1213 > 0, "no daemon was a deadlock's victim"
    assert not fleet.exited_unbidden()
    assert not internal, internal
