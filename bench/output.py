"""Workload 6, live output: what recording a step's output costs.

Workflows of one `shell` step that prints 10,000 lines (`seq -f 'line %g of …'`, about
490 KB, under the 1 MiB cap), run `output_concurrency` at a time by `Engine.run` in this
process, with the live output recorded (`[output] max_bytes` at its default) and with it
discarded (`max_bytes = 0`: the step still captures its output for the context, nothing
is split into lines or written). Batches alternate, discarded then recorded,
`output_rounds` times, so that the machine's drift falls on both; steps/s is a batch's
workflows over its wall time, and the mean of the batches is compared: `cost` =
1 - recorded / discarded steps/s. The bench process's CPU time per step is kept too.

In process rather than through a daemon: the runner, the attempt and the recorder are
the daemon's own, and the figure is the recorder's cost alone, not the claim's.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.context import Bench
from wfed import Engine
from wfed.config import DEFAULT_OUTPUT_MAX_BYTES

LINES = 10_000
COMMAND = f"seq -f 'line %g of the output of a maintenance command' 1 {LINES}"


async def _batch(bench: Bench, engine: Engine, purpose: str) -> tuple[float, float]:
    """Run one batch of `output_workflows` workflows: its steps/s, and this process's CPU
    time per step in ms (the commands' own CPU is not in it)."""
    sizes = bench.sizes
    queue = bench.queue(purpose)
    names = [f"{queue}-{i}" for i in range(sizes.output_workflows)]
    step = {"step": "shell", "args": {"cmd": COMMAND, "shell": True, "save_as": "r"}}
    for name in names:
        await engine.create_workflow(name, {}, [step], queue=queue)
    slots = asyncio.Semaphore(sizes.output_concurrency)

    async def run(name: str) -> None:
        async with slots:
            await engine.run(name)

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(run(name) for name in names))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return len(names) / seconds, cpu * 1000 / len(names)


async def output_cost(bench: Bench) -> dict[str, Any]:
    """Steps/s of the 10,000-line step with its output recorded and discarded."""
    recorded = Engine(bench.url, actor="bench", output_max_bytes=DEFAULT_OUTPUT_MAX_BYTES)
    discarded = Engine(bench.url, actor="bench", output_max_bytes=0)
    runs: dict[str, list[float]] = {"recorded": [], "discarded": []}
    cpu: dict[str, list[float]] = {"recorded": [], "discarded": []}
    try:
        await _batch(bench, recorded, "out-warm")  # the pools and the page cache
        for _ in range(bench.sizes.output_rounds):
            for key, engine in (("discarded", discarded), ("recorded", recorded)):
                rate, cpu_ms = await _batch(bench, engine, f"out-{key}")
                runs[key].append(rate)
                cpu[key].append(cpu_ms)
        queue = bench.queue("out-check")
        check = f"{queue}-0"
        step = {"step": "shell", "args": {"cmd": COMMAND, "shell": True}}
        await recorded.create_workflow(check, {}, [step], queue=queue)
        await recorded.run(check)
        lines = len(await recorded.output(check))
    finally:
        await recorded.close()
        await discarded.close()
    if lines != LINES:
        raise RuntimeError(f"the recorded output has {lines} lines, not {LINES}")
    on = sum(runs["recorded"]) / len(runs["recorded"])
    off = sum(runs["discarded"]) / len(runs["discarded"])
    return {
        "lines": LINES,
        "workflows": bench.sizes.output_workflows,
        "concurrency": bench.sizes.output_concurrency,
        "recorded": {"steps_per_s": on, "runs": runs["recorded"], "cpu_ms": cpu["recorded"]},
        "discarded": {"steps_per_s": off, "runs": runs["discarded"], "cpu_ms": cpu["discarded"]},
        "cost": 1 - on / off,
    }
