"""Workload 8, concurrency keys: what a key on every workflow costs one daemon's steps/s.

Batches of the throughput workload's shape (no-op steps, enqueued with one `INSERT …
SELECT`, run by one fresh daemon), alternately without keys and with one key per
workflow (`locks = ["bench:<queue>-<n>"]`, a key of its own each: nothing waits, so the
figure is the keys' own cost — the slot read and INSERT of each claim, the slot DELETE of
each completion), three times so that the machine's drift falls on both. steps/s
as the throughput workload reckons it (first step start to last completion, from the
database); `cost` = 1 - keyed / plain mean steps/s (target ≤ 15 %).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from bench.context import Bench
from bench.daemons import DaemonSettings
from bench.queries import run_window, steps_json, wait_queue_done

ROUNDS = 3
WORKFLOWS_MAX = 500

# The throughput workload's one-statement enqueue, naming a key of its own per workflow.
_KEYED_INSERT = {
    "mariadb": (
        "INSERT INTO workflows (name, steps, context, queue, locks) "
        "SELECT CONCAT(:prefix, seq), :steps, '{{}}', :queue, "
        "JSON_ARRAY(CONCAT('bench:', :prefix, seq)) FROM seq_1_to_{count}"
    ),
    "postgresql": (
        "INSERT INTO workflows (name, steps, context, queue, locks) "
        "SELECT CAST(:prefix AS TEXT) || g, CAST(:steps AS JSONB), '{{}}', :queue, "
        "jsonb_build_array('bench:' || CAST(:prefix AS TEXT) || g) "
        "FROM generate_series(1, {count}) AS g"
    ),
    "sqlite": (
        "WITH RECURSIVE series(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM series "
        "WHERE g < {count}) "
        "INSERT INTO workflows (name, steps, context, queue, locks) "
        "SELECT :prefix || g, :steps, '{{}}', :queue, json_array('bench:' || :prefix || g) "
        "FROM series"
    ),
}


async def _batch(bench: Bench, *, keyed: bool, count: int) -> float:
    """One batch run by a fresh daemon: its steps/s."""
    sizes = bench.sizes
    queue = bench.queue("keys" if keyed else "nokeys")
    settings = DaemonSettings(queue=queue, max_workflows=sizes.max_workflows)
    [daemon] = await bench.daemons.start_many(bench.url, settings, 1)
    try:
        steps = ["noop"] * sizes.steps_per_workflow
        if keyed:
            statement = _KEYED_INSERT[bench.backend.name].format(count=int(count))
            async with bench.engine.begin() as conn:
                await conn.execute(
                    text(statement),
                    {"prefix": f"{queue}-", "steps": steps_json(steps), "queue": queue},
                )
        else:
            await bench.enqueue(queue, count, steps)
        progress = await wait_queue_done(bench.engine, queue, sizes.run_timeout)
        async with bench.engine.connect() as conn:
            window = await run_window(conn, queue)
    finally:
        daemon.kill()
    expected = count * sizes.steps_per_workflow
    if progress.failed or window.steps_completed != expected:
        raise RuntimeError(
            f"keys run on {queue}: {progress.failed} workflows halted, "
            f"{window.steps_completed}/{expected} steps completed"
        )
    rate: float = window.steps_per_s
    return rate


async def keys_cost(bench: Bench) -> dict[str, Any]:
    """One daemon's steps/s without keys and with a key on every workflow, alternated."""
    count = min(bench.workflows, WORKFLOWS_MAX)
    runs: dict[str, list[float]] = {"plain": [], "keyed": []}
    for _ in range(ROUNDS):
        runs["plain"].append(await _batch(bench, keyed=False, count=count))
        runs["keyed"].append(await _batch(bench, keyed=True, count=count))
    plain = sum(runs["plain"]) / len(runs["plain"])
    keyed = sum(runs["keyed"]) / len(runs["keyed"])
    return {
        "workflows": count,
        "steps_per_workflow": bench.sizes.steps_per_workflow,
        "plain": {"steps_per_s": plain, "runs": runs["plain"]},
        "keyed": {"steps_per_s": keyed, "runs": runs["keyed"]},
        "cost": 1 - keyed / plain,
    }
