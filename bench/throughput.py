"""Workload 2, throughput: N workflows x M no-op steps, enqueued with one INSERT, run by one
or two daemons; steps/s from the first step start to the last completion, as recorded in
the database (MIN(workflow_steps.started_at), MAX(workflows.finished_at))."""

from __future__ import annotations

import time
from typing import Any

from bench.context import Bench
from bench.daemons import DaemonSettings
from bench.queries import run_window, wait_queue_done


async def run_queue(
    bench: Bench, *, daemons: int, purpose: str, workflows: int | None = None
) -> dict[str, Any]:
    """Start `daemons` idle daemons on a fresh queue, enqueue a batch of `workflows`
    (default: the backend's throughput batch), wait until all have completed."""
    sizes = bench.sizes
    count = workflows or bench.workflows
    queue = bench.queue(purpose)
    settings = DaemonSettings(queue=queue, max_workflows=sizes.max_workflows)
    started = await bench.daemons.start_many(bench.url, settings, daemons)
    try:
        enqueue_started = time.perf_counter()
        await bench.enqueue(queue, count, ["noop"] * sizes.steps_per_workflow)
        enqueue_seconds = time.perf_counter() - enqueue_started
        progress = await wait_queue_done(bench.engine, queue, sizes.run_timeout)
        async with bench.engine.connect() as conn:
            window = await run_window(conn, queue)
    finally:
        for daemon in started:
            daemon.kill()
    expected = count * sizes.steps_per_workflow
    if progress.failed or window.steps_completed != expected:
        raise RuntimeError(
            f"throughput run on {queue}: {progress.failed} workflows halted, "
            f"{window.steps_completed}/{expected} steps completed"
        )
    return {
        "daemons": daemons,
        "workflows": count,
        "steps": window.steps_completed,
        "enqueue_s": enqueue_seconds,
        "seconds": window.seconds,
        "steps_per_s": window.steps_per_s,
        "workflows_per_s": count / window.seconds,
    }


async def throughput(bench: Bench) -> dict[str, Any]:
    """One daemon, then two daemons, on the same database."""
    one = await run_queue(bench, daemons=1, purpose="tp1")
    two = await run_queue(bench, daemons=2, purpose="tp2")
    return {"one": one, "two": two}
