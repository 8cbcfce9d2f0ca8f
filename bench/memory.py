"""Workload 5c, memory: the resident set of a daemon holding `memory_workflows` (1,000)
running workflows, each in a 60 s `sleep60` step (`max_workflows` = that many)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import func, select

from bench.context import Bench
from bench.daemons import DaemonSettings
from bench.queries import S, W
from wfed.store.schema import workflow_steps, workflows

START_TIMEOUT = 120.0
MIB = 1024 * 1024


async def _running_steps(bench: Bench, queue: str) -> int:
    async with bench.engine.connect() as conn:
        found = await conn.scalar(
            select(func.count())
            .select_from(workflows.join(workflow_steps, S.workflow_id == W.id))
            .where(W.state == "running", W.queue == queue, S.state == "running")
        )
    return int(found or 0)


async def memory(bench: Bench) -> dict[str, Any]:
    count = bench.sizes.memory_workflows
    queue = bench.queue("mem")
    settings = DaemonSettings(queue=queue, max_workflows=count)
    daemon = await bench.daemons.start_ready(bench.url, settings)
    try:
        idle_rss = daemon.rss_bytes()
        started = time.perf_counter()
        await bench.enqueue(queue, count, ["sleep60"])
        deadline = started + START_TIMEOUT
        while (running := await _running_steps(bench, queue)) < count:
            if time.perf_counter() > deadline or not daemon.alive():
                raise RuntimeError(f"only {running}/{count} workflows started")
            await asyncio.sleep(0.25)
        all_running = time.perf_counter() - started
        await asyncio.sleep(1.0)  # a heartbeat over all of them
        rss = daemon.rss_bytes()
    finally:
        daemon.kill()
    return {
        "workflows": count,
        "idle_rss_mib": idle_rss / MIB,
        "rss_mib": rss / MIB,
        "per_workflow_kib": (rss - idle_rss) / count / 1024,
        "start_all_s": all_running,
    }
