"""Workload 3, enqueue latency: a plain-SQL INSERT into an idle daemon's queue until its
first step starts (`workflow_steps.started_at` of step 0 minus the UTC time read just
before the INSERT). Each latency is also split at the daemon's `workflows_claimed` log
line: the wait for a poll, and the claim → first step start.

Samples are sequential, and each INSERT waits a random fraction of `poll_interval` after
the previous workflow ended. That matters: a daemon whose workflow ends polls at once
(a slot was freed), so a fixed spacing would always hit the same point of its poll cycle.
The fractions are stratified (one uniformly random point in each of N equal slices of the
cycle, in random order): every phase of the cycle is sampled equally, so the p50 is not
off by the ±1/(2√N) of plain random phases (±35 ms at N=200 and a 1 s interval).
"""

from __future__ import annotations

import asyncio
import bisect
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from bench.context import Bench
from bench.daemons import DaemonProcess, DaemonSettings
from bench.queries import S, W, enqueue_one
from bench.stats import summary, utc_now
from wfed.store.schema import workflow_steps, workflows

WATCH_INTERVAL = 0.02
SAMPLE_TIMEOUT = 30.0


async def _first_step_started(bench: Bench, name: str) -> tuple[Any, bool]:
    """(started_at of step 0 or None, whether the workflow has ended)."""
    async with bench.engine.connect() as conn:
        row = (
            await conn.execute(
                select(S.started_at, W.state)
                .select_from(workflows.outerjoin(workflow_steps, S.workflow_id == W.id))
                .where(W.name == name)
                .order_by(S.position)
                .limit(1)
            )
        ).first()
    if row is None:
        return None, False
    return row.started_at, row.state not in {"pending", "running"}


async def _sample(bench: Bench, queue: str, number: int) -> tuple[datetime, datetime]:
    """One INSERT → first step started; waits for the workflow to end.

    Returns (UTC time read just before the INSERT, step 0's started_at)."""
    name = f"{queue}-{number}"
    inserted = utc_now()
    async with bench.engine.begin() as conn:
        await enqueue_one(conn, name=name, steps=["noop"], queue=queue)
    first_start: datetime | None = None
    async with asyncio.timeout(SAMPLE_TIMEOUT):
        while True:
            started, ended = await _first_step_started(bench, name)
            first_start = first_start or started
            if ended and first_start is not None:
                return inserted, first_start
            await asyncio.sleep(WATCH_INTERVAL)


def claim_times(daemon: DaemonProcess) -> list[datetime]:
    """When the daemon logged `workflows_claimed` (naive UTC), in order."""
    found = []
    for record in daemon.log_events("workflows_claimed"):
        stamp = datetime.fromisoformat(str(record["timestamp"]))
        found.append(stamp.astimezone(UTC).replace(tzinfo=None))
    return sorted(found)


def _split(
    samples: list[tuple[datetime, datetime]], claims: list[datetime]
) -> tuple[list[float], list[float]]:
    """Each latency split at the claim the daemon logged: (INSERT → claimed, claimed →
    step 0 started)."""
    waits, starts = [], []
    for inserted, started in samples:
        at = bisect.bisect_left(claims, inserted)
        if at < len(claims) and claims[at] <= started + timedelta(seconds=1):
            waits.append((claims[at] - inserted).total_seconds())
            starts.append((started - claims[at]).total_seconds())
    return waits, starts


def stratified(count: int, rng: random.Random) -> list[float]:
    """`count` fractions in [0, 1): one uniform point in each of `count` equal slices,
    shuffled."""
    points = [(slot + rng.random()) / count for slot in range(count)]
    rng.shuffle(points)
    return points


async def latency_series(bench: Bench, poll_interval: float, samples: int) -> dict[str, Any]:
    """`samples` sequential enqueues into one idle daemon polling every `poll_interval`."""
    queue = bench.queue(f"enq{poll_interval:g}".replace(".", "_"))
    settings = DaemonSettings(queue=queue, poll_interval=poll_interval)
    daemon = await bench.daemons.start_ready(bench.url, settings)
    rng = random.Random(f"{bench.run_id}-{poll_interval}")
    taken: list[tuple[datetime, datetime]] = []
    try:
        await asyncio.sleep(poll_interval)  # let the start-up poll pass
        for number, fraction in enumerate(stratified(samples, rng)):
            await asyncio.sleep(fraction * poll_interval)
            taken.append(await _sample(bench, queue, number))
    finally:
        daemon.kill()
    latencies = [(started - inserted).total_seconds() for inserted, started in taken]
    waits, starts = _split(taken, claim_times(daemon))
    return {
        "poll_interval": poll_interval,
        **summary(latencies),
        "to_claim": summary(waits),
        "claim_to_start": summary(starts),
    }


async def enqueue_latency(bench: Bench) -> dict[str, Any]:
    """The series of every configured poll interval, side by side (different daemons and
    queues; each series is sequential)."""
    counts = bench.sizes.enqueue_samples[bench.backend.name]
    results = await asyncio.gather(
        *(latency_series(bench, interval, samples) for interval, samples in counts.items())
    )
    return {f"poll_{result['poll_interval']:g}": result for result in results}
