"""kill -9 storms: three daemons share a queue while one of them is SIGKILLed and started
again every few seconds."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from daemon_harness import DaemonFactory
from harness import (
    INTERNAL_ERRORS,
    Fleet,
    all_terminal,
    assert_clean,
    audit_run,
    daemon_id,
    enqueue,
    make_workflows,
    percentile,
    scaled,
    time_limit,
    wait_until,
)
from sqlalchemy import bindparam, text

from wfed import Engine

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(time_limit(150, 1200))]

LEASE = 2.0
POLL_INTERVAL = 0.1
CONTROL_INTERVAL = 0.5
DAEMONS = 3
# Two non-idempotent steps (`slow`, and `mark`, which is over at once) among idempotent ones.
KINDS = ("slow_idempotent", "slow", "slow_idempotent", "mark", "slow_idempotent")


@pytest.mark.parametrize(
    "backend_url", scaled(["mariadb"], ["mariadb", "postgresql", "sqlite"]), indirect=True
)
async def test_kill_9_storm_loses_nothing_and_reruns_nothing_committed(
    backend_url: str,
    start_daemon: DaemonFactory,
    make_engine: Callable[..., Engine],
    queue: str,
    journal: Path,
    figures: Callable[..., None],
) -> None:
    """A daemon of three SIGKILLed and restarted every few seconds: no workflow lost, no
    committed step run again, no non-idempotent step re-run; every workflow ends completed,
    or in error for an interrupted non-idempotent step."""
    rng = random.Random(12)
    # Enough work for the storm to last about a minute at full scale on an idle machine
    # (72 slots, steps of 0.1 to 0.6 s): a kill every 2 s on average makes about 30.
    count = scaled(90, 3000)
    specs = make_workflows("storm", count, KINDS, (0.1, 0.6), rng)
    engine = make_engine(backend_url).db.engine
    await enqueue(engine, specs, queue, journal)
    fleet = Fleet(
        start_daemon,
        backend_url,
        queue,
        DAEMONS,
        lease=LEASE,
        poll_interval=POLL_INTERVAL,
        control_interval=CONTROL_INTERVAL,
        max_workflows=scaled(8, 24),
    )
    await fleet.ready()
    done = asyncio.Event()
    orphans: list[int] = []
    pickups: list[float] = []
    trackers: list[asyncio.Task[None]] = []

    async def held_by(daemon_id: str) -> list[int]:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT id FROM workflows WHERE claimed_by = :d AND state = 'running'"),
                {"d": daemon_id},
            )
            return [row.id for row in rows]

    async def track_pickup(daemon_id: str, ids: list[int], killed_at: float) -> None:
        # How long each orphan of a kill waits for another daemon (not asserted here:
        # in a storm the rescuers are being killed too; see test_orphans.py).
        waiting = set(ids)
        while waiting and not done.is_set():
            async with engine.connect() as conn:
                rows = await conn.execute(
                    text("SELECT id, claimed_by FROM workflows WHERE id IN :ids").bindparams(
                        bindparam("ids", expanding=True)
                    ),
                    {"ids": list(waiting)},
                )
                for row in rows:
                    if row.claimed_by != daemon_id:
                        waiting.discard(row.id)
                        pickups.append(time.monotonic() - killed_at)
            await asyncio.sleep(0.1)

    async def storm() -> None:
        while not done.is_set():
            await asyncio.sleep(rng.uniform(1.0, 3.0))  # the fault schedule, not a wait
            if done.is_set():
                return
            slot = rng.randrange(DAEMONS)
            victim_id = daemon_id(fleet.slots[slot])
            fleet.kill(slot)
            killed_at = time.monotonic()
            fleet.restart(slot)
            held = await held_by(victim_id)
            orphans.append(len(held))
            if held:
                trackers.append(asyncio.create_task(track_pickup(victim_id, held, killed_at)))

    storming = asyncio.create_task(storm())
    try:
        took = await wait_until(
            lambda: all_terminal(engine, queue, count),
            limit=scaled(120, 1000),
            what=f"{count} workflows completed or in error",
            interval=0.25,
        )
    finally:
        done.set()
        await storming
        await asyncio.gather(*trackers)  # each ends once `done` is set
    result = await audit_run(engine, specs, journal, errors_allowed=True)
    internal = fleet.log_events(*INTERNAL_ERRORS)
    figures(
        daemons=DAEMONS,
        lease=LEASE,
        seconds=round(took, 1),
        kills=fleet.kills,
        restarts=fleet.restarts,
        orphaned=sum(orphans),
        pickup_p50=round(percentile(pickups, 0.5), 2),
        pickup_max=round(max(pickups, default=0.0), 2),
        internal_errors=sum(internal.values()),
        **result.figures(),
    )
    assert_clean(result)
    assert fleet.kills >= scaled(3, 20), "the storm was too short to mean anything"
    assert not fleet.exited_unbidden()
    assert not internal, internal
