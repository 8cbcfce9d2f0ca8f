"""The claimer's decisions, one `run_once` pass at a time on the real databases: expired
leases before pending work, free slots respected, the daemon's own workflows left alone,
and an idle claimer asking one cheap question instead of claiming.

Every test works in a queue of its own, whose rows are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, event
from sqlalchemy.engine import Engine as SyncEngine

from wfed import Engine, WorkflowState
from wfed.clock import utc_now
from wfed.config import DaemonConfig
from wfed.daemon.claimer import REFUSED_FOR, Claimer
from wfed.metrics import Metrics
from wfed.store import claims
from wfed.store import workflows as workflow_store
from wfed.store.rows import WorkflowRow
from wfed.store.schema import workflows

# `create` (tests/integration/conftest.py): a new pending workflow's name.
CreateFn = Callable[..., Awaitable[str]]

DAEMON = "claimer-test:1"
DEAD = "dead-daemon:9"
POLL = 1.0


class FakeSlots:
    """The daemon's slots as the claimer sees them: the workflows its runners hold (how
    many slots are free is the loop's question; these tests pass it to `run_once`)."""

    def __init__(self, held: list[int] | None = None) -> None:
        self.freed = asyncio.Event()
        self._held = held or []

    def free(self) -> int:
        return 0

    def held(self) -> list[int]:
        return self._held


class Ticker:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def queue(engine: Engine, new_name: Callable[..., str]) -> AsyncIterator[str]:
    """A queue of this test's own; its workflows are deleted afterwards."""
    name = new_name("claimer")
    yield name
    async with engine.db.transaction() as conn:
        await conn.execute(delete(workflows).where(workflows.c.queue == name))


class Harness:
    """A Claimer on the test database, and what it handed to `start`."""

    def __init__(self, engine: Engine, queue: str, held: list[int] | None = None) -> None:
        self.started: list[WorkflowRow] = []
        self.ticker = Ticker()
        self.claimer = Claimer(
            engine.db,
            DaemonConfig(queues=[queue], poll_interval=POLL, lease=30.0),
            daemon_id=DAEMON,
            slots=FakeSlots(held),
            start=self.started.append,
            metrics=Metrics(),
            monotonic=self.ticker,
        )


async def pending(engine: Engine, create: CreateFn, queue: str, count: int) -> list[int]:
    """`count` new pending workflows in `queue`, oldest first; their ids."""
    ids = []
    for _ in range(count):
        name = await create(["noop"], queue=queue)
        ids.append((await engine.get(name)).row.id)
    return ids


async def orphan(engine: Engine, create: CreateFn, queue: str, owner: str = DEAD) -> int:
    """A workflow `owner` claimed and whose lease ran out a minute ago; its id."""
    name = await create(["noop"], queue=queue)
    workflow_id = (await engine.get(name)).row.id
    async with engine.db.transaction() as conn:
        assert await claims.workflow_claim_by_id(
            conn, workflow_id, owner=owner, now=utc_now() - timedelta(minutes=2), lease=60
        )
    return workflow_id


async def owners(engine: Engine, ids: list[int]) -> list[str | None]:
    async with engine.db.transaction() as conn:
        rows = [await workflow_store.workflow_get_by_id(conn, i) for i in ids]
    return [row.claimed_by if row else None for row in rows]


@contextlib.contextmanager
def statements() -> Iterator[list[str]]:
    """The SQL statements any engine sends while the block runs."""
    sent: list[str] = []

    def record(*args: Any) -> None:
        sent.append(args[2])

    event.listen(SyncEngine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(SyncEngine, "before_cursor_execute", record)


async def test_an_orphan_takes_the_only_free_slot_before_a_pending_backlog(
    engine: Engine, create: CreateFn, queue: str
) -> None:
    """With one free slot, a backlog of pending work and one expired lease, the pass takes
    the expired one over (fence bumped) and leaves the backlog pending."""
    backlog = await pending(engine, create, queue, 5)
    lost = await orphan(engine, create, queue)
    harness = Harness(engine, queue)

    claimed = await harness.claimer.run_once(1)

    assert [row.id for row in claimed.expired] == [lost]
    assert claimed.pending == []
    assert [row.id for row in harness.started] == [lost]
    row = (await engine.get(harness.started[0].name)).row
    assert (row.claimed_by, row.fence) == (DAEMON, 2)
    assert await owners(engine, backlog) == [None] * 5


async def test_a_pass_fills_the_free_slots_expired_first_then_pending(
    engine: Engine, create: CreateFn, queue: str
) -> None:
    """Three free slots, one expired lease and five pending: the expired one and the two
    oldest pending are claimed and started, in that order; nothing more."""
    backlog = await pending(engine, create, queue, 5)
    lost = await orphan(engine, create, queue)
    harness = Harness(engine, queue)

    claimed = await harness.claimer.run_once(3)

    assert claimed.count == 3
    assert [row.id for row in harness.started] == [lost, *backlog[:2]]
    assert await owners(engine, backlog) == [DAEMON, DAEMON, None, None, None]


async def test_no_free_slot_claims_nothing(engine: Engine, create: CreateFn, queue: str) -> None:
    """A pass without a free slot leaves pending and expired workflows alone."""
    backlog = await pending(engine, create, queue, 2)
    lost = await orphan(engine, create, queue)
    harness = Harness(engine, queue)

    claimed = await harness.claimer.run_once(0)

    assert claimed.count == 0
    assert harness.started == []
    assert await owners(engine, [*backlog, lost]) == [None, None, DEAD]


async def test_the_daemons_own_expired_workflows_are_left_to_its_runners(
    engine: Engine, create: CreateFn, queue: str
) -> None:
    """An expired lease this daemon's own runner still holds is not taken over (its runner
    gives it up first); another daemon's expired lease is."""
    mine = await orphan(engine, create, queue, owner=DAEMON)
    theirs = await orphan(engine, create, queue)
    harness = Harness(engine, queue, held=[mine])

    claimed = await harness.claimer.run_once(5)

    assert [row.id for row in claimed.expired] == [theirs]
    async with engine.db.transaction() as conn:
        row = await workflow_store.workflow_get_by_id(conn, mine)
    assert row is not None
    assert (row.state, row.claimed_by, row.fence) == (WorkflowState.RUNNING, DAEMON, 1)


async def test_an_idle_pass_is_one_statement_that_locks_nothing(
    engine: Engine, create: CreateFn, queue: str
) -> None:
    """Once a pass found nothing, the next one asks whether there is pending work or an
    expired lease in one plain read, and claims nothing; when work appears, the next pass
    claims it."""
    harness = Harness(engine, queue)
    assert (await harness.claimer.run_once(4)).count == 0
    harness.ticker.now += POLL

    with statements() as sent:
        assert (await harness.claimer.run_once(4)).count == 0
    on_workflows = [sql for sql in sent if "workflows" in sql]
    assert len(on_workflows) == 1, sent
    assert on_workflows[0].lstrip().upper().startswith("SELECT EXISTS"), sent
    assert "FOR UPDATE" not in on_workflows[0].upper()

    (workflow_id,) = await pending(engine, create, queue, 1)
    harness.ticker.now += POLL
    claimed = await harness.claimer.run_once(4)
    assert [row.id for row in claimed.pending] == [workflow_id]


async def test_expired_leases_are_looked_for_once_per_poll(
    engine: Engine, create: CreateFn, queue: str
) -> None:
    """Passes that follow each other within half a poll (a freed slot, a full claim) do
    not look for expired leases again; the next poll's pass does."""
    harness = Harness(engine, queue)
    assert (await harness.claimer.run_once(4)).count == 0
    lost = await orphan(engine, create, queue)

    harness.ticker.now += POLL / 4
    assert (await harness.claimer.run_once(4)).count == 0

    harness.ticker.now += POLL / 4
    claimed = await harness.claimer.run_once(4)
    assert [row.id for row in claimed.expired] == [lost]


async def test_a_woken_pass_claims_new_work_without_looking_for_expired_leases(
    engine: Engine, create: CreateFn, queue: str
) -> None:
    """A pass woken by a notification of new work (PostgreSQL) claims it without first
    asking about expired leases, unless the last look is a whole poll old: new work waits
    for no round trip it does not need, and expired leases are still looked for once a
    poll however often wake-ups come."""
    harness = Harness(engine, queue)
    assert (await harness.claimer.run_once(4)).count == 0
    lost = await orphan(engine, create, queue)
    (new,) = await pending(engine, create, queue, 1)

    harness.ticker.now += POLL * 3 / 4
    harness.claimer.wake()
    with statements() as sent:
        claimed = await harness.claimer.run_once(4, woken=True)
    assert [row.id for row in claimed.pending] == [new]
    assert claimed.expired == []
    assert not any("lease_expires_at <" in sql for sql in sent), sent

    harness.ticker.now += POLL / 4
    claimed = await harness.claimer.run_once(4, woken=True)
    assert [row.id for row in claimed.expired] == [lost]


async def test_a_pass_whose_orphans_fill_the_slots_looks_again_at_once(
    engine: Engine, create: CreateFn, queue: str
) -> None:
    """When expired leases filled every free slot there may be more: the very next pass
    looks for them again, without waiting for the next poll."""
    first = await orphan(engine, create, queue)
    second = await orphan(engine, create, queue)
    harness = Harness(engine, queue)

    assert [row.id for row in (await harness.claimer.run_once(1)).expired] == [first]
    assert [row.id for row in (await harness.claimer.run_once(1)).expired] == [second]


@contextlib.asynccontextmanager
async def refusing_claims_of(engine: Engine, workflow_id: int) -> AsyncIterator[None]:
    """A trigger of the kind operators add, refusing any UPDATE of one workflow with an
    error of the data (a constraint's), as a row written past the table's CHECK
    constraints makes the server refuse it."""
    name = f"wfed_test_refuse_{workflow_id}"
    backend = engine.db.backend
    if backend == "sqlite":
        create = [
            f"CREATE TRIGGER {name} BEFORE UPDATE ON workflows WHEN OLD.id = {workflow_id} "
            "BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
        ]
        drop = [f"DROP TRIGGER {name}"]
    elif backend == "postgresql":
        create = [
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'refused by a trigger' USING ERRCODE = 'check_violation'; END $$",
            f"CREATE TRIGGER {name} BEFORE UPDATE ON workflows FOR EACH ROW "
            f"WHEN (OLD.id = {workflow_id}) EXECUTE FUNCTION {name}()",
        ]
        drop = [f"DROP TRIGGER {name} ON workflows", f"DROP FUNCTION {name}()"]
    else:
        create = [
            f"CREATE TRIGGER {name} BEFORE UPDATE ON workflows FOR EACH ROW "
            f"IF OLD.id = {workflow_id} THEN SIGNAL SQLSTATE '23000' "
            "SET MYSQL_ERRNO = 4025, MESSAGE_TEXT = 'refused by a trigger'; END IF"
        ]
        drop = [f"DROP TRIGGER {name}"]
    async with engine.db.engine.begin() as conn:
        for statement in create:
            await conn.exec_driver_sql(statement)
    try:
        yield
    finally:
        async with engine.db.engine.begin() as conn:
            for statement in drop:
                await conn.exec_driver_sql(statement)


async def test_a_row_whose_claim_is_refused_is_left_alone_and_the_rest_claimed(
    engine: Engine, create: CreateFn, queue: str
) -> None:
    """A claim the database refuses for one row's data is made again candidate by
    candidate: the others are claimed, that row is left pending and passed over for
    REFUSED_FOR seconds of the daemon's clock, then looked at again."""
    first, refused, last = await pending(engine, create, queue, 3)
    harness = Harness(engine, queue)
    async with refusing_claims_of(engine, refused):
        claimed = await harness.claimer.run_once(5)
        assert [row.id for row in claimed.pending] == [first, last]
        assert await owners(engine, [first, refused, last]) == [DAEMON, None, DAEMON]
        harness.ticker.now += 10
        with statements() as sent:
            assert (await harness.claimer.run_once(5)).count == 0
        # Passed over by the claim itself: no UPDATE tried (and refused) again.
        assert not [sql for sql in sent if sql.lstrip().upper().startswith("UPDATE")], sent
    harness.ticker.now += REFUSED_FOR
    claimed = await harness.claimer.run_once(5)
    assert [row.id for row in claimed.pending] == [refused]
    assert [row.id for row in harness.started] == [first, last, refused]
