"""Workload 4, control latency, with plain-SQL requests (`UPDATE workflows SET requested = …`).

* pause: workflows of many `sleep` steps of a known length; each gets a pause request at a
  random moment. Latency is request → `paused` (the row's `updated_at` as the daemon wrote
  it); it is at most the rest of the current step plus the engine's own delay, which is
  reported separately (paused - end of the step that was running). Exactness is checked
  from the step rows: no step may have started after its pause request was committed.
* stop: workflows in a 60 s step; each gets a stop request at a random moment. Latency is
  request → `stopped`; the daemon reads requests every `control_interval`: 1 s (the
  default), and again at 0.25 s.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from bench.context import Bench
from bench.daemons import DaemonSettings
from bench.queries import S, W, in_queue
from bench.stats import summary, utc_now
from wfed.store.schema import workflow_steps, workflows

SPREAD_SECONDS = 3.0
"""Requests are sent at random moments over this many seconds."""
SETTLE_TIMEOUT = 60.0
CONTROL_INTERVAL = 1.0


async def _wait_state(bench: Bench, queue: str, states: list[str], count: int) -> None:
    """Wait until `count` workflows of `queue` are in `states` and have a step running
    (for `running`) — or just are in `states`."""
    deadline = time.perf_counter() + SETTLE_TIMEOUT
    query = select(func.count()).select_from(workflows).where(W.queue == queue, W.state.in_(states))
    if states == ["running"]:
        query = (
            select(func.count())
            .select_from(workflows.join(workflow_steps, S.workflow_id == W.id))
            .where(W.queue == queue, W.state == "running", S.state == "running")
        )
    while True:
        async with bench.engine.connect() as conn:
            found = await conn.scalar(query)
        if found is not None and found >= count:
            return
        if time.perf_counter() > deadline:
            raise TimeoutError(f"queue {queue}: {found}/{count} in {states}")
        await asyncio.sleep(0.05)


async def _request(
    bench: Bench, name: str, request: str, delay: float
) -> tuple[str, datetime, datetime]:
    """After `delay` s, ask for `request`; returns (name, before UPDATE, after COMMIT)."""
    await asyncio.sleep(delay)
    before = utc_now()
    async with bench.engine.begin() as conn:
        result = await conn.execute(
            update(workflows).where(W.name == name, W.state == "running").values(requested=request)
        )
        if result.rowcount != 1:
            raise RuntimeError(f"{name} was not running when its {request} was requested")
    return name, before, utc_now()


async def _outcomes(bench: Bench, queue: str) -> dict[str, Any]:
    """Per workflow: state, when it changed, and its steps' (position, state, start)."""
    async with bench.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(W.name, W.state, W.updated_at, S.position, S.state, S.started_at)
                .select_from(workflows.join(workflow_steps, S.workflow_id == W.id))
                .where(in_queue(queue))
                .order_by(W.name, S.position)
            )
        ).all()
    found: dict[str, Any] = {}
    for name, state, updated_at, position, step_state, started_at in rows:
        entry = found.setdefault(name, {"state": state, "at": updated_at, "steps": []})
        entry["steps"].append((position, step_state, started_at))
    return found


def _pause_figures(
    requests: list[tuple[str, datetime, datetime]], outcomes: dict[str, Any], step: float
) -> dict[str, Any]:
    latencies, after_step = [], []
    late_starts = not_paused = running_left = 0
    for name, before, committed in requests:
        outcome = outcomes[name]
        if outcome["state"] != "paused":
            not_paused += 1
            continue
        latencies.append((outcome["at"] - before).total_seconds())
        started = [s for s in outcome["steps"] if s[2] is not None]
        late_starts += sum(1 for s in started if s[2] > committed)
        running_left += sum(1 for s in outcome["steps"] if s[1] == "running")
        last_start = max(s[2] for s in started)
        step_end = last_start + timedelta(seconds=step)
        after_step.append((outcome["at"] - step_end).total_seconds())
    return {
        "step_seconds": step,
        "latency": summary(latencies),
        "after_step_end": summary(after_step),
        "steps_started_after_request": late_starts,
        "not_paused": not_paused,
        "steps_left_running": running_left,
        "exact": late_starts == 0 and not_paused == 0 and running_left == 0,
    }


def _stop_figures(
    requests: list[tuple[str, datetime, datetime]], outcomes: dict[str, Any]
) -> dict[str, Any]:
    latencies = []
    not_stopped = 0
    for name, before, _committed in requests:
        outcome = outcomes[name]
        if outcome["state"] != "stopped":
            not_stopped += 1
            continue
        latencies.append((outcome["at"] - before).total_seconds())
    return {"latency": summary(latencies), "not_stopped": not_stopped}


async def _pause_series(bench: Bench, control_interval: float) -> dict[str, Any]:
    """Pause requests at random moments to one daemon's workflows of short sleep steps."""
    count = bench.sizes.control_samples
    step = bench.sizes.pause_step_seconds
    queue = bench.queue("pause")
    # A pause workflow must still be running when its request comes, whatever the spread.
    steps = [{"step": "sleep", "args": {"seconds": step}}] * (int((SPREAD_SECONDS + 10) / step) + 1)
    settings = DaemonSettings(queue=queue, max_workflows=count, control_interval=control_interval)
    daemon = await bench.daemons.start_ready(bench.url, settings)
    try:
        await bench.enqueue(queue, count, steps)
        await _wait_state(bench, queue, ["running"], count)
        rng = random.Random(f"{bench.run_id}-pause")
        done = await asyncio.gather(
            *(
                _request(bench, f"{queue}-{i}", "pause", rng.uniform(0, SPREAD_SECONDS))
                for i in range(1, count + 1)
            )
        )
        await _wait_state(bench, queue, ["paused", "completed", "error"], count)
        return _pause_figures(list(done), await _outcomes(bench, queue), step)
    finally:
        daemon.kill()


async def stop_series(bench: Bench, control_interval: float) -> dict[str, Any]:
    """Stop requests at random moments to one daemon's workflows, each in a 60 s step;
    the daemon reads requests every `control_interval`."""
    count = bench.sizes.control_samples
    queue = bench.queue(f"stop{control_interval:g}".replace(".", "_"))
    settings = DaemonSettings(queue=queue, max_workflows=count, control_interval=control_interval)
    daemon = await bench.daemons.start_ready(bench.url, settings)
    try:
        await bench.enqueue(queue, count, ["sleep60"])
        await _wait_state(bench, queue, ["running"], count)
        rng = random.Random(f"{bench.run_id}-stop-{control_interval}")
        done = await asyncio.gather(
            *(
                _request(bench, f"{queue}-{i}", "stop", rng.uniform(0, SPREAD_SECONDS))
                for i in range(1, count + 1)
            )
        )
        await _wait_state(bench, queue, ["stopped", "completed", "error"], count)
        figures = _stop_figures(list(done), await _outcomes(bench, queue))
    finally:
        daemon.kill()
    return {**figures, "control_interval": control_interval}


async def control_latency(bench: Bench) -> dict[str, Any]:
    """Pause and stop at control_interval 1 s (side by side, as two daemons), then stop
    again at the short control interval (`fast_control_interval`, 0.25 s): what a
    polling backend can offer when stop latency matters more than its queries."""
    pause, stop = await asyncio.gather(
        _pause_series(bench, CONTROL_INTERVAL), stop_series(bench, CONTROL_INTERVAL)
    )
    fast = await stop_series(bench, bench.sizes.fast_control_interval)
    return {
        "pause": pause,
        "stop": stop,
        "control_interval": CONTROL_INTERVAL,
        "fast_stop": fast,
    }
