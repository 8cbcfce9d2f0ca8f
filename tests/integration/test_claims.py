"""Claiming: concurrent claimers never share a workflow (SKIP LOCKED), the claim query's
SQL and plan, lease recovery, `run_after`, priority order and the queue filter.

Every test works in queues of its own (unique names), so rows other tests left in the
shared database never take part; rows inserted in bulk are deleted again afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select, text
from sqlalchemy.engine import Dialect

from wfed import Engine, WorkflowState
from wfed.clock import utc_now
from wfed.store import claims
from wfed.store.database import Database
from wfed.store.rows import WorkflowRow
from wfed.store.schema import workflows

S = WorkflowState
W = workflows.c


@pytest.fixture(params=["mariadb", "postgresql"])
def server_url(request: pytest.FixtureRequest) -> str:
    """The session's MariaDB or PostgreSQL test database (the backends with SKIP LOCKED)."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@contextlib.asynccontextmanager
async def rows_in_queues(db: Database, rows: list[dict[str, Any]]) -> AsyncIterator[list[int]]:
    """Insert workflow rows in bulk and yield their ids in insertion order; every row of
    their queues is deleted afterwards.

    Defaults: pending, one no-op step, empty context, unclaimed (every row gets the same
    keys, as one executemany needs).
    """
    now = utc_now()
    full = [
        {
            "state": S.PENDING,
            "steps": ["noop"],
            "context": {},
            "priority": 0,
            "run_after": None,
            "claimed_by": None,
            "lease_expires_at": None,
            "fence": 0,
            "created_at": now,
            "updated_at": now,
            **row,
        }
        for row in rows
    ]
    queues = sorted({row["queue"] for row in full})
    async with db.transaction() as conn:
        await conn.execute(workflows.insert(), full)
        found = await conn.execute(select(W.id, W.name).where(W.queue.in_(queues)).order_by(W.id))
        by_name = {name: workflow_id for workflow_id, name in found}
    try:
        yield [by_name[row["name"]] for row in full]
    finally:
        async with db.transaction() as conn:
            await conn.execute(delete(workflows).where(W.queue.in_(queues)))


async def claim_pending(
    db: Database, queues: list[str], *, owner: str = "claimer", limit: int = 100, now: datetime
) -> list[WorkflowRow]:
    async with db.transaction() as conn:
        return await claims.workflow_claim_pending(
            conn, owner=owner, queues=queues, limit=limit, now=now, lease=30
        )


async def rows_of(db: Database, ids: list[int]) -> dict[int, WorkflowRow]:
    async with db.transaction() as conn:
        found = await conn.execute(select(workflows).where(W.id.in_(ids)))
        return {row["id"]: WorkflowRow.from_mapping(row) for row in found.mappings()}


# -- concurrent claimers ------------------------------------------------------------------

ROUNDS = 5
WORKFLOWS_PER_ROUND = 200
BATCH = 7


async def _claimer(db: Database, owner: str, queue: str) -> list[int]:
    """Claim batches until a claim finds nothing; each claim's transaction stays open
    across a yield to the event loop, so the two claimers' transactions overlap."""
    claimed: list[int] = []
    while True:
        async with db.transaction() as conn:
            rows = await claims.workflow_claim_pending(
                conn, owner=owner, queues=[queue], limit=BATCH, now=utc_now(), lease=60
            )
            await asyncio.sleep(0)  # hold the row locks while the other claimer runs
        if not rows:
            return claimed
        assert all(row.claimed_by == owner for row in rows)
        claimed.extend(row.id for row in rows)


@pytest.mark.parametrize("round_", range(ROUNDS))
async def test_concurrent_claimers_never_claim_the_same_workflow(
    server_url: str, make_engine: Callable[..., Engine], new_name, round_: int
) -> None:
    """Two claimers on separate connection pools, claiming batches of 7 in overlapping
    transactions, never get the same workflow, and all 200 are claimed exactly once."""
    engine = make_engine(server_url)
    queue = new_name("claims")
    rows = [{"name": new_name("c"), "queue": queue} for _ in range(WORKFLOWS_PER_ROUND)]
    first, second = Database(server_url), Database(server_url)
    try:
        async with rows_in_queues(engine.db, rows) as ids:
            got_first, got_second = await asyncio.gather(
                _claimer(first, "first", queue), _claimer(second, "second", queue)
            )

            assert not set(got_first) & set(got_second)
            assert len(got_first) == len(set(got_first))
            assert len(got_second) == len(set(got_second))
            assert sorted(got_first + got_second) == sorted(ids)
            assert got_first
            assert got_second  # both claimers took part
            stored = await rows_of(engine.db, ids)
            owners = {**dict.fromkeys(got_first, "first"), **dict.fromkeys(got_second, "second")}
            for workflow_id, row in stored.items():
                assert row.state is S.RUNNING
                assert row.claimed_by == owners[workflow_id]
                assert row.fence == 1  # claimed once
    finally:
        await first.dispose()
        await second.dispose()


# -- the claim query ----------------------------------------------------------------------


def _claim_sql(dialect: Dialect) -> str:
    query = claims.claim_pending_query(["default"], 7, utc_now())
    return " ".join(str(query.compile(dialect=dialect)).split())


async def test_claim_sql_on_the_live_dialect(engine: Engine) -> None:
    """Compiled with each test database's own dialect, the claim uses SKIP LOCKED exactly
    where the backend supports it."""
    sql = _claim_sql(engine.db.engine.dialect)

    assert ("FOR UPDATE SKIP LOCKED" in sql) is engine.db.supports_skip_locked
    assert ("FOR UPDATE" in sql) is (engine.db.backend != "sqlite")


async def test_claim_query_uses_the_claim_index_on_mariadb(
    mariadb_url: str, make_engine: Callable[..., Engine], new_name
) -> None:
    """On MariaDB, with a few thousand rows in mixed states and queues, EXPLAIN of the
    claim query (one queue) uses `ix_workflows_claim` and no filesort."""
    engine = make_engine(mariadb_url)
    queue, other = new_name("explain"), new_name("explain-other")
    now = utc_now()
    states = [S.PENDING, S.RUNNING, S.COMPLETED, S.COMPLETED, S.ERROR, S.PAUSED, S.STOPPED]
    rows = [
        {
            "name": new_name("x"),
            "queue": queue if i % 3 else other,
            "state": states[i % len(states)],
            "priority": i % 5 - 2,
            "run_after": now + timedelta(hours=1) if i % 11 == 0 else None,
        }
        for i in range(3000)
    ]
    async with rows_in_queues(engine.db, rows), engine.db.engine.connect() as conn:
        # Fresh statistics, as a table in production has (InnoDB's persistent
        # statistics otherwise catch up with a bulk insert in the background).
        await conn.execute(text("ANALYZE TABLE workflows"))
        query = claims.claim_pending_query([queue], 7, now)
        sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
        plan = (await conn.execute(text(f"EXPLAIN {sql}"))).mappings().all()

    assert len(plan) == 1, plan
    step = plan[0]
    assert step["key"] == "ix_workflows_claim", plan
    assert "Using filesort" not in (step["Extra"] or ""), plan


# -- lease recovery, run_after, priority, queues ------------------------------------------


async def test_expired_lease_is_claimed_and_the_fence_bumped(engine: Engine, new_name) -> None:
    """`workflow_claim_expired` takes a running row whose lease has passed, with the new
    owner, a new lease and the fencing token bumped; live leases and pending rows stay."""
    queue = new_name("rescue")
    now = utc_now()
    rows = [
        {
            "name": new_name("dead"),
            "queue": queue,
            "state": S.RUNNING,
            "claimed_by": "dead-daemon",
            "lease_expires_at": now - timedelta(seconds=10),
            "fence": 3,
        },
        {
            "name": new_name("alive"),
            "queue": queue,
            "state": S.RUNNING,
            "claimed_by": "live-daemon",
            "lease_expires_at": now + timedelta(seconds=60),
            "fence": 5,
        },
        {"name": new_name("pending"), "queue": queue},
    ]
    async with rows_in_queues(engine.db, rows) as (dead, alive, pending):
        before = await rows_of(engine.db, [alive, pending])

        async with engine.db.transaction() as conn:
            rescued = await claims.workflow_claim_expired(
                conn, owner="rescuer", queues=[queue], limit=10, now=now, lease=30
            )

        assert [row.id for row in rescued] == [dead]
        assert rescued[0].fence == 4
        assert rescued[0].claimed_by == "rescuer"
        stored = await rows_of(engine.db, [dead, alive, pending])
        assert stored[dead].state is S.RUNNING
        assert stored[dead].claimed_by == "rescuer"
        assert stored[dead].fence == 4
        assert stored[dead].lease_expires_at == now + timedelta(seconds=30)
        assert stored[alive] == before[alive]
        assert stored[pending] == before[pending]


async def test_run_after_in_the_future_is_not_claimed(engine: Engine, new_name) -> None:
    """A pending row whose `run_after` is in the future is not claimed until then."""
    queue = new_name("later")
    now = utc_now()
    rows = [
        {"name": new_name("later"), "queue": queue, "run_after": now + timedelta(hours=1)},
        {"name": new_name("due"), "queue": queue, "run_after": now - timedelta(seconds=1)},
        {"name": new_name("now"), "queue": queue, "run_after": None},
    ]
    async with rows_in_queues(engine.db, rows) as (later, due, unset):
        claimed = await claim_pending(engine.db, [queue], now=now)
        assert sorted(row.id for row in claimed) == sorted([due, unset])
        assert (await rows_of(engine.db, [later]))[later].state is S.PENDING

        claimed_later = await claim_pending(engine.db, [queue], now=now + timedelta(hours=2))
        assert [row.id for row in claimed_later] == [later]


async def test_claim_order_is_priority_then_age(engine: Engine, new_name) -> None:
    """Claims take higher priority first and, within a priority, older (lower id) first;
    the limit cuts that order."""
    queue = new_name("prio")
    priorities = [0, 5, -1, 10, 5, 0]
    rows = [{"name": new_name(f"p{p}"), "queue": queue, "priority": p} for p in priorities]
    async with rows_in_queues(engine.db, rows) as ids:
        expected = [ids[3], ids[1], ids[4], ids[0], ids[5], ids[2]]
        now = utc_now()

        first = await claim_pending(engine.db, [queue], limit=2, now=now)
        rest = await claim_pending(engine.db, [queue], limit=100, now=now)

        assert [row.id for row in first] == expected[:2]
        assert [row.id for row in rest] == expected[2:]


async def test_claim_takes_only_the_given_queues(engine: Engine, new_name) -> None:
    """A claim for some queues never takes a row of another queue."""
    q1, q2, q3 = new_name("q1"), new_name("q2"), new_name("q3")
    rows = [{"name": new_name("w"), "queue": q} for q in (q1, q2, q3, q2, q1)]
    async with rows_in_queues(engine.db, rows) as ids:
        now = utc_now()

        claimed = await claim_pending(engine.db, [q1, q3], now=now)
        assert sorted(row.id for row in claimed) == sorted([ids[0], ids[2], ids[4]])
        assert {row.queue for row in claimed} == {q1, q3}
        left = await rows_of(engine.db, [ids[1], ids[3]])
        assert {row.state for row in left.values()} == {S.PENDING}
        assert await claim_pending(engine.db, [new_name("empty")], now=now) == []


# -- the idle daemon's question: is there anything to claim? -------------------------------


@pytest.mark.parametrize(
    ("row", "pending", "expired"),
    [
        ({}, True, False),
        ({"run_after": timedelta(minutes=5)}, False, False),
        ({"run_after": timedelta(minutes=-5)}, True, False),
        ({"queue": "elsewhere"}, False, False),
        ({"state": S.PAUSED}, False, False),
        ({"state": S.COMPLETED}, False, False),
        ({"state": S.RUNNING, "lease_expires_at": timedelta(seconds=30)}, False, False),
        ({"state": S.RUNNING, "lease_expires_at": timedelta(seconds=-1)}, False, True),
        (
            {"state": S.RUNNING, "lease_expires_at": timedelta(seconds=-1), "queue": "elsewhere"},
            False,
            False,
        ),
    ],
)
async def test_claimable_answers_exactly_what_a_claim_would_find(
    engine: Engine, new_name, row: dict[str, Any], pending: bool, expired: bool
) -> None:
    """`workflows_claimable` (the autocommit read an idle daemon polls with) says yes
    exactly when the locking claim of the same kind would take the row."""
    queue, elsewhere = new_name("claimable"), new_name("elsewhere")
    now = utc_now()
    values = {
        key: now + value if isinstance(value, timedelta) else value for key, value in row.items()
    }
    values["queue"] = elsewhere if values.get("queue") == "elsewhere" else queue
    async with rows_in_queues(engine.db, [{"name": new_name("c"), **values}]):
        async with engine.db.autocommit() as conn:
            found_pending = await claims.workflows_claimable(conn, [queue], utc_now())
            found_expired = await claims.workflows_claimable(conn, [queue], utc_now(), expired=True)
        async with engine.db.transaction() as conn:
            claimed_pending = await claims.workflow_claim_pending(
                conn, owner="probe", queues=[queue], limit=5, now=utc_now(), lease=30
            )
            claimed_expired = await claims.workflow_claim_expired(
                conn, owner="probe", queues=[queue], limit=5, now=utc_now(), lease=30
            )
            await conn.rollback()
    assert (found_pending, found_expired) == (pending, expired)
    assert (bool(claimed_pending), bool(claimed_expired)) == (pending, expired)


async def test_a_rescue_leaves_alone_the_workflows_the_rescuer_still_runs(
    engine: Engine, new_name
) -> None:
    """Expired leases in `exclude` (workflows the claiming daemon's own runners still
    hold) are not taken over; other expired ones are."""
    queue = new_name("rescue-own")
    now = utc_now()
    expired = {
        "queue": queue,
        "state": S.RUNNING,
        "claimed_by": "rescuer",
        "lease_expires_at": now - timedelta(seconds=5),
        "fence": 2,
    }
    rows = [{"name": new_name("mine"), **expired}, {"name": new_name("theirs"), **expired}]
    async with rows_in_queues(engine.db, rows) as (mine, theirs):
        async with engine.db.transaction() as conn:
            rescued = await claims.workflow_claim_expired(
                conn, owner="rescuer", queues=[queue], limit=10, now=now, lease=30, exclude=[mine]
            )
        assert [row.id for row in rescued] == [theirs]
        assert (await rows_of(engine.db, [mine]))[mine].fence == 2
