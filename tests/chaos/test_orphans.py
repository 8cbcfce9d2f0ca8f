"""Orphans and a backlog: a daemon holding workflows is killed with -9 while the other
daemons are busy with a large pending backlog. Its workflows must not wait behind the
backlog: they are picked up within lease + poll + control."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from daemon_harness import DaemonFactory
from harness import (
    INTERNAL_ERRORS,
    PROCESS_MARGIN,
    Fleet,
    all_terminal,
    assert_clean,
    audit_run,
    daemon_id,
    enqueue,
    make_workflows,
    percentile,
    scaled,
    state_counts,
    time_limit,
    wait_until,
)
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncEngine

from wfed import Engine

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(time_limit(120, 900))]

LEASE = 3.0
POLL_INTERVAL = 0.2
CONTROL_INTERVAL = 0.5
BOUND = LEASE + POLL_INTERVAL + CONTROL_INTERVAL + PROCESS_MARGIN
TIMING = {"lease": LEASE, "poll_interval": POLL_INTERVAL, "control_interval": CONTROL_INTERVAL}


async def owners(engine: AsyncEngine, ids: list[int]) -> dict[int, str | None]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT id, claimed_by FROM workflows WHERE id IN :ids").bindparams(
                bindparam("ids", expanding=True)
            ),
            {"ids": ids},
        )
        return {row.id: row.claimed_by for row in rows}


@pytest.mark.parametrize(
    "backend_url", scaled(["mariadb"], ["mariadb", "postgresql", "sqlite"]), indirect=True
)
async def test_orphans_are_picked_up_within_a_lease_while_a_backlog_waits(
    backend_url: str,
    start_daemon: DaemonFactory,
    make_engine: Callable[..., Engine],
    queue: str,
    journal: Path,
    figures: Callable[..., None],
) -> None:
    """kill -9 of a daemon holding workflows while the others work through a pending
    backlog: each of its workflows is running again on another daemon within lease + poll
    + control (with the process margin), before the backlog is gone."""
    rng = random.Random(71)
    held = scaled(16, 32)
    backlog_size = scaled(800, 5000)
    engine = make_engine(backend_url).db.engine
    # Their first step outlasts the setup (the backlog's INSERTs, the rescuers' start),
    # so that the victim still runs it when it is killed.
    orphan_step = scaled(5.0, 20.0)
    orphans = make_workflows(
        "orphan", held, ("slow_idempotent", "mark"), (orphan_step, orphan_step), rng
    )
    backlog = make_workflows("backlog", backlog_size, ("slow", "mark"), (0.1, 0.4), rng)
    await enqueue(engine, orphans, queue, journal)
    fleet = Fleet(start_daemon, backend_url, queue, 0, **TIMING)
    victim = fleet.add(max_workflows=held)
    victim_id = daemon_id(victim)

    async def victim_holds_all() -> bool:
        return (await state_counts(engine, queue))["running"] == held

    await wait_until(victim_holds_all, limit=60, what=f"{victim_id} running its workflows")
    async with engine.connect() as conn:
        ids = list(
            (
                await conn.execute(
                    text("SELECT id FROM workflows WHERE claimed_by = :d"), {"d": victim_id}
                )
            ).scalars()
        )
    assert len(ids) == held
    await enqueue(engine, backlog, queue, journal)
    rescuers = [fleet.add(max_workflows=scaled(16, 24)) for _ in range(scaled(2, 3))]
    await fleet.ready(rescuers)
    capacity = sum(scaled(16, 24) for _ in rescuers)

    async def rescuers_full() -> bool:
        return (await state_counts(engine, queue))["running"] >= held + capacity

    await wait_until(rescuers_full, limit=60, what="the rescuers busy with the backlog")
    assert set((await owners(engine, ids)).values()) == {victim_id}, "orphans ended early"
    fleet.kill(0)
    killed_at = time.monotonic()
    picked: dict[int, float] = {}

    async def all_picked_up() -> bool:
        now = await owners(engine, [i for i in ids if i not in picked])
        for workflow_id, owner in now.items():
            if owner != victim_id:
                picked[workflow_id] = time.monotonic() - killed_at
        return len(picked) == held

    await wait_until(all_picked_up, limit=BOUND * 4, what="every orphan picked up")
    pending_left = (await state_counts(engine, queue))["pending"]
    total = held + backlog_size
    await wait_until(
        lambda: all_terminal(engine, queue, total),
        limit=scaled(90, 600),
        what="the orphans and the backlog finished",
        interval=0.25,
    )
    result = await audit_run(engine, [*orphans, *backlog], journal, errors_allowed=False)
    times = list(picked.values())
    internal = fleet.log_events(*INTERNAL_ERRORS)
    figures(
        orphans=held,
        backlog=backlog_size,
        rescuers=len(rescuers),
        pickup_p50=round(percentile(times, 0.5), 2),
        pickup_p95=round(percentile(times, 0.95), 2),
        pickup_max=round(max(times), 2),
        contract=LEASE + POLL_INTERVAL + CONTROL_INTERVAL,
        bound=BOUND,
        pending_when_picked_up=pending_left,
        **result.figures(),
    )
    assert pending_left > 0, "the backlog was gone before the orphans were picked up"
    assert max(times) < BOUND, f"orphans picked up after {max(times):.2f} s"
    assert_clean(result)
    assert not fleet.exited_unbidden()
    assert not internal, internal
