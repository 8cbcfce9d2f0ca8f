"""The daemon's chores, one `run_once` at a time on the real databases: pruning the rows
of daemons long dead (and only once per interval), counting workflows by state, and
retention done by the eldest live daemon alone."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import delete, insert, select

from wfed import Engine, WorkflowState
from wfed.clock import utc_now
from wfed.config import RetentionConfig
from wfed.daemon.chores import PRUNE_INTERVAL, DaemonPruner, Retention, StateCounter
from wfed.metrics import Metrics
from wfed.store.schema import daemons, workflows

# `create` (tests/integration/conftest.py): a new pending workflow's name.
CreateFn = Callable[..., Awaitable[str]]

LEASE = 30.0

AddDaemon = Callable[[str, datetime], Awaitable[None]]


class Ticker:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def daemon_rows(engine: Engine) -> AsyncIterator[AddDaemon]:
    """`await add(id, heartbeat_at)`: a daemon row; every row added is deleted afterwards."""
    added: list[str] = []

    async def add(daemon_id: str, heartbeat_at: datetime) -> None:
        added.append(daemon_id)
        async with engine.db.transaction() as conn:
            await conn.execute(
                insert(daemons).values(
                    id=daemon_id,
                    host="gone",
                    pid=1,
                    version="0",
                    queues=["none"],
                    max_workflows=1,
                    lease_seconds=round(LEASE),
                    started_at=heartbeat_at,
                    heartbeat_at=heartbeat_at,
                )
            )

    yield add
    async with engine.db.transaction() as conn:
        await conn.execute(delete(daemons).where(daemons.c.id.in_(added)))


async def present(engine: Engine, ids: list[str]) -> set[str]:
    async with engine.db.transaction() as conn:
        found = await conn.scalars(select(daemons.c.id).where(daemons.c.id.in_(ids)))
        return set(found.all())


async def test_prune_drops_only_daemons_silent_for_a_day(
    engine: Engine, daemon_rows: AddDaemon, new_name: Callable[..., str]
) -> None:
    """Rows of daemons silent for over a day go; one silent for a minute stays (shown as
    dead by `wfectl daemons`)."""
    now = utc_now()
    long_dead, just_dead = new_name("long-dead"), new_name("just-dead")
    await daemon_rows(long_dead, now - timedelta(days=1, minutes=1))
    await daemon_rows(just_dead, now - timedelta(minutes=1))
    pruner = DaemonPruner(engine.db, daemon_id="pruner:1", clock=lambda: now)

    pruned = await pruner.run_once()

    assert pruned is not None
    assert pruned >= 1
    assert await present(engine, [long_dead, just_dead]) == {just_dead}


async def test_prune_runs_once_per_interval(
    engine: Engine, daemon_rows: AddDaemon, new_name: Callable[..., str]
) -> None:
    """After a prune, the next one waits for the interval to pass on the monotonic clock:
    calls before then do nothing."""
    now = utc_now()
    ticker = Ticker()
    pruner = DaemonPruner(engine.db, daemon_id="pruner:1", clock=lambda: now, monotonic=ticker)
    assert await pruner.run_once() is not None
    dead = new_name("dead")
    await daemon_rows(dead, now - timedelta(days=2))

    ticker.now += PRUNE_INTERVAL - 1
    assert await pruner.run_once() is None
    assert await present(engine, [dead]) == {dead}

    ticker.now += 1
    assert await pruner.run_once() is not None
    assert await present(engine, [dead]) == set()


async def test_state_counts_set_the_workflow_gauges(engine: Engine, create: CreateFn) -> None:
    """A count reads the workflows by state and sets one gauge per state from it."""
    await create(["noop"])
    metrics = Metrics()

    counts = await StateCounter(engine.db, metrics).run_once()

    assert counts[WorkflowState.PENDING.value] >= 1
    for state in WorkflowState:
        gauge = metrics.registry.get_sample_value("wfed_workflows", {"state": state.value})
        assert gauge == counts.get(state.value, 0)


async def test_retention_is_done_by_the_eldest_live_daemon_alone(
    engine: Engine, daemon_rows: AddDaemon, new_name: Callable[..., str]
) -> None:
    """A daemon purges old finished workflows only when no live daemon has a smaller id;
    once the elder one is gone, it does."""
    now = utc_now()
    prefix = f"0{uuid.uuid4().hex[:8]}"
    elder, younger = f"{prefix}-a", f"{prefix}-b"
    await daemon_rows(elder, now)
    await daemon_rows(younger, now)
    name = new_name("old")
    async with engine.db.transaction() as conn:
        await conn.execute(
            insert(workflows).values(
                name=name,
                state=WorkflowState.COMPLETED,
                steps=["noop"],
                context={},
                queue=new_name("retention"),
                priority=0,
                fence=1,
                created_at=now - timedelta(days=3),
                updated_at=now - timedelta(days=2),
                finished_at=now - timedelta(days=2),
            )
        )
    config = RetentionConfig(purge_after="1d")
    retention = Retention(engine.db, config, daemon_id=younger, lease=LEASE, clock=lambda: now)

    assert await retention.run_once() is None
    assert (await engine.get(name)).state is WorkflowState.COMPLETED

    async with engine.db.transaction() as conn:
        await conn.execute(delete(daemons).where(daemons.c.id == elder))
    purged = await retention.run_once()

    assert purged is not None
    assert purged >= 1
    async with engine.db.transaction() as conn:
        left = await conn.scalar(select(workflows.c.id).where(workflows.c.name == name))
    assert left is None
