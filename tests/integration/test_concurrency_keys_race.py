"""Concurrency keys under racing claimers: six claimers, each on its own connection pool,
claim batches in overlapping transactions while finished workflows give their keys back;
every claimed workflow holds a slot below its limit for each of its keys, and no key ever
has more holders than its limit.

MariaDB and PostgreSQL only: there the slot inserts of two claimers really race (SQLite's
write transaction holds the whole database).
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import delete, select

from wfed import Engine, WorkflowState
from wfed.clock import utc_now
from wfed.config import LocksConfig
from wfed.states import EventKind, Operation
from wfed.store import claims
from wfed.store import events as event_store
from wfed.store import workflows as workflow_store
from wfed.store.database import Database, run_retrying
from wfed.store.events import Event
from wfed.store.locks import locks_release_workflow
from wfed.store.rows import WorkflowRow
from wfed.store.schema import workflow_events, workflow_locks, workflows

W = workflows.c
L = workflow_locks.c
CLAIMERS = 6
WORKFLOWS = 90
BATCH = 3


@pytest.fixture(params=["mariadb", "postgresql"])
def server_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
async def pools(server_url: str) -> AsyncIterator[list[Database]]:
    """One connection pool per claimer."""
    databases = [Database(server_url) for _ in range(CLAIMERS)]
    yield databases
    for database in databases:
        await database.dispose()


class Race:
    """The keys, their limits, and what the claimers saw."""

    def __init__(self, prefix: str, queue: str) -> None:
        a, b, pool = f"{prefix}-a", f"{prefix}-b", f"{prefix}-pool:web"
        self.queue = queue
        self.limits = LocksConfig(limits={f"{prefix}-pool:": 2})
        self.key_sets = [[a], [b], [a, b], [b, a], [pool], [pool, a], [pool, b]]
        self.problems: list[str] = []

    def keys_of(self, number: int) -> list[str]:
        return self.key_sets[number % len(self.key_sets)]


async def _check_holdings(conn: Any, race: Race, rows: list[WorkflowRow]) -> None:
    """In the claim's transaction: each claimed workflow holds one slot below the limit
    of each of its keys."""
    if not rows:
        return
    found = await conn.execute(
        select(L.workflow_id, L.lock_key, L.slot).where(L.workflow_id.in_([r.id for r in rows]))
    )
    held: dict[int, dict[str, int]] = defaultdict(dict)
    for workflow_id, key, slot in found:
        held[workflow_id][key] = slot
    for row in rows:
        for key in row.locks:
            slot = held[row.id].get(key)
            if slot is None or slot >= race.limits.limit_of(key):
                race.problems.append(f"{row.name} claimed without a good slot of {key}: {slot}")


async def _claimer(db: Database, number: int, race: Race) -> int:
    """Claim and finish until the queue has nothing pending; returns how many it ran."""
    owner = f"claimer-{number}"
    ran = 0
    while True:

        async def attempt() -> list[WorkflowRow]:
            async with db.transaction() as conn:
                rows = await claims.workflow_claim_pending(
                    conn,
                    owner=owner,
                    queues=[race.queue],
                    limit=BATCH,
                    now=utc_now(),
                    lease=60,
                    limit_of=race.limits.limit_of,
                    lookahead=BATCH * 4,
                )
                await _check_holdings(conn, race, rows)
                await asyncio.sleep(0)  # the other claimers run while this one holds its rows
                return rows

        rows: list[WorkflowRow] = await run_retrying(attempt)
        if rows:
            await _record(db, owner, rows, EventKind.CLAIMED)
            await asyncio.sleep(0)
            await run_retrying(lambda rows=rows: _finish(db, owner, rows))
            ran += len(rows)
            continue
        async with db.transaction() as conn:
            left = await conn.scalar(
                select(W.id).where(W.queue == race.queue, W.state != "completed").limit(1)
            )
        if left is None:
            return ran
        await asyncio.sleep(0.005)  # others hold the keys: look again


async def _record(db: Database, owner: str, rows: list[WorkflowRow], kind: EventKind) -> None:
    async with db.transaction() as conn:
        await event_store.events_insert(
            conn, *(Event(r.id, r.name, kind, owner, utc_now()) for r in rows)
        )


async def _finish(db: Database, owner: str, rows: list[WorkflowRow]) -> None:
    """Complete the workflows and give their keys up, in one transaction (as a runner's
    end does), recording `completed`."""
    async with db.transaction() as conn:
        for row in rows:
            done = await workflow_store.workflow_update(
                conn,
                row.id,
                Operation.COMPLETE,
                fence=row.fence,
                values={"claimed_by": None, "finished_at": utc_now()},
            )
            assert done
            await locks_release_workflow(conn, row.id)
        await event_store.events_insert(
            conn, *(Event(r.id, r.name, EventKind.COMPLETED, owner, utc_now()) for r in rows)
        )


async def test_racing_claimers_never_exceed_a_limit(
    pools: list[Database], make_engine: Callable[..., Engine], server_url: str, new_name
) -> None:
    """Six claimers on their own pools, 90 workflows on three keys (limits 1, 1 and 2, some
    naming two keys in either order): every workflow runs once, each claim held all its
    keys, and walking the events in id order never finds more holders than a limit."""
    engine = make_engine(server_url)
    race = Race(new_name("k"), new_name("race"))
    async with engine.db.transaction() as conn:
        await conn.execute(
            workflows.insert(),
            [
                {
                    "name": f"{race.queue}-{i}",
                    "steps": ["noop"],
                    "context": {},
                    "queue": race.queue,
                    "locks": race.keys_of(i),
                    "state": WorkflowState.PENDING,
                    "created_at": utc_now(),
                    "updated_at": utc_now(),
                }
                for i in range(WORKFLOWS)
            ],
        )
    try:
        ran = await asyncio.gather(*(_claimer(db, n, race) for n, db in enumerate(pools)))

        assert race.problems == []
        assert sum(ran) == WORKFLOWS
        assert sum(1 for count in ran if count) > 1  # the claimers raced
        most = await _most_holders(engine, race)
        for key, count in most.items():
            assert count <= race.limits.limit_of(key), (key, count)
        assert max(most.values()) >= 1
    finally:
        async with engine.db.transaction() as conn:
            ids = select(W.id).where(W.queue == race.queue).scalar_subquery()
            await conn.execute(
                delete(workflow_events).where(workflow_events.c.workflow_id.in_(ids))
            )
            await conn.execute(delete(workflows).where(W.queue == race.queue))


async def _most_holders(engine: Engine, race: Race) -> dict[str, int]:
    """Per key, the most workflows holding it at once: +1 at a `claimed` event (recorded
    after the claim committed), -1 at `completed` (recorded in the transaction that gave
    the keys up), in id order."""
    events = workflow_events.c
    async with engine.db.transaction() as conn:
        found = await conn.execute(
            select(events.workflow_id, events.kind, W.locks)
            .join(workflows, W.id == events.workflow_id)
            .where(W.queue == race.queue)
            .order_by(events.id)
        )
        rows = found.all()
    holding: dict[str, set[int]] = defaultdict(set)
    most: dict[str, int] = defaultdict(int)
    for workflow_id, kind, locks in rows:
        keys = json.loads(locks) if isinstance(locks, str) else locks
        for key in keys:
            if kind == EventKind.CLAIMED:
                holding[key].add(workflow_id)
                most[key] = max(most[key], len(holding[key]))
            else:
                holding[key].discard(workflow_id)
    return dict(most)
