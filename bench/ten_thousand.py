"""Ten thousand running workflows in one daemon (MariaDB; opt-in, a few minutes).

One daemon (max_workflows = `ten_thousand_workflows`, 10,000; control_interval 1 s) on a
database of the workload's own, dropped at the end, gets that many workflows of one
`sleep` step of 600 s, enqueued with one INSERT. It connects through the counting proxy
(`bench.wire`), which adds a little latency to each of its round trips: the start-up
figure is, if anything, pessimistic. Measured:

* claim → started: from the daemon's first `workflows_claimed` log line to the last
  step's `started_at` in the database (and from the INSERT's commit, for the whole wait);
* the daemon's VmRSS once all run and a heartbeat has passed over them;
* what the daemon sends per control interval while it just holds them, on the wire: every
  statement, and the UPDATEs that set `lease_expires_at` (the lease renewals);
* `ten_thousand_stops` (20) stops of one workflow at a time (`UPDATE workflows SET
  requested = 'stop'`), each at a random moment of the control cycle: request → the step's
  `stopped` row (its `finished_at`).

Then the daemon is killed (SIGKILL: a clean shutdown would end 10,000 steps one by one)
and the database dropped.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from datetime import datetime
from typing import Any, Final

from sqlalchemy import func, select, update

from bench.context import Bench
from bench.daemons import DaemonProcess, DaemonSettings
from bench.databases import bench_database
from bench.enqueue import claim_times
from bench.idle import proxied
from bench.queries import S, W
from bench.stats import summary, utc_now
from bench.wire import ROUND_TRIPS, WireCounter
from wfed.store.schema import workflow_steps, workflows

STEP_SECONDS: Final = 600
CONTROL_INTERVAL: Final = 1.0
START_TIMEOUT: Final = 600.0
STOP_TIMEOUT: Final = 30.0
WATCH_INTERVAL: Final = 0.02
MIB: Final = 1024 * 1024
LEASE_RENEWAL: Final = "lease renewal"
# An UPDATE that sets a lease's end. Claims and rescues set it too, but a full daemon
# claims nothing, and no lease expires while it holds them all.
RENEWAL_PATTERN: Final = re.compile(rb"\A\s*UPDATE\s.*?\blease_expires_at\s*=", re.DOTALL | re.I)
# Not statements: the MySQL ping and session end.
_NOT_STATEMENTS: Final = {ROUND_TRIPS, "PING", "QUIT"}


async def _started(bench: Bench, queue: str) -> tuple[int, datetime | None, datetime | None]:
    """(running steps, first and last step start) of `queue`."""
    async with bench.engine.connect() as conn:
        row = (
            await conn.execute(
                select(func.count(), func.min(S.started_at), func.max(S.started_at))
                .select_from(workflows.join(workflow_steps, S.workflow_id == W.id))
                .where(W.queue == queue, W.state == "running", S.state == "running")
            )
        ).one()
    return int(row[0] or 0), row[1], row[2]


async def _wait_all_running(bench: Bench, daemon: DaemonProcess, queue: str, count: int) -> Any:
    deadline = time.perf_counter() + START_TIMEOUT
    while True:
        running, first, last = await _started(bench, queue)
        if running >= count:
            return first, last
        if time.perf_counter() > deadline or not daemon.alive():
            raise RuntimeError(f"only {running}/{count} workflows started")
        await asyncio.sleep(0.5)


async def _stop_one(bench: Bench, name: str) -> float | None:
    """Ask `name` to stop; seconds from the request to its step's `stopped` row (None if
    it did not stop in time)."""
    requested = utc_now()
    async with bench.engine.begin() as conn:
        result = await conn.execute(
            update(workflows).where(W.name == name, W.state == "running").values(requested="stop")
        )
        if result.rowcount != 1:
            raise RuntimeError(f"{name} was not running when its stop was requested")
    query = (
        select(S.state, S.finished_at, W.updated_at)
        .select_from(workflows.join(workflow_steps, S.workflow_id == W.id))
        .where(W.name == name)
    )
    deadline = time.perf_counter() + STOP_TIMEOUT
    while time.perf_counter() < deadline:
        async with bench.engine.connect() as conn:
            state, finished_at, updated_at = (await conn.execute(query)).one()
        if state == "stopped":
            latency: float = ((finished_at or updated_at) - requested).total_seconds()
            return latency
        await asyncio.sleep(WATCH_INTERVAL)
    return None


async def _stops(bench: Bench, queue: str, count: int) -> dict[str, Any]:
    """Stop workflows 1…count one at a time, each at a random moment of the cycle."""
    rng = random.Random(f"{bench.run_id}-ten-thousand")
    latencies, not_stopped = [], 0
    for number in range(1, count + 1):
        await asyncio.sleep(rng.uniform(0, CONTROL_INTERVAL))
        latency = await _stop_one(bench, f"{queue}-{number}")
        if latency is None:
            not_stopped += 1
        else:
            latencies.append(latency)
    return {"latency": summary(latencies), "not_stopped": not_stopped}


async def _holding_cost(wire: WireCounter, daemon: DaemonProcess, seconds: float) -> dict[str, Any]:
    """What the daemon sends per control interval while it just holds its workflows."""
    counts, renewals = wire.snapshot(), wire.matched()
    cpu, started = daemon.cpu_seconds(), time.perf_counter()
    await asyncio.sleep(seconds)
    elapsed = time.perf_counter() - started
    cpu = daemon.cpu_seconds() - cpu
    delta, renewed = wire.snapshot() - counts, wire.matched() - renewals
    intervals = elapsed / CONTROL_INTERVAL
    return {
        "seconds": elapsed,
        "statements_per_interval": sum(
            n for kind, n in delta.items() if kind not in _NOT_STATEMENTS
        )
        / intervals,
        "round_trips_per_interval": delta[ROUND_TRIPS] / intervals,
        "lease_renewals_per_interval": renewed[LEASE_RENEWAL] / intervals,
        "by_kind_per_interval": {
            kind: n / intervals for kind, n in sorted(delta.items()) if kind != ROUND_TRIPS
        },
        "cpu_percent": 100 * cpu / elapsed,
    }


async def _measure(bench: Bench, wire: WireCounter) -> dict[str, Any]:
    sizes = bench.sizes
    count = sizes.ten_thousand_workflows
    queue = bench.queue("tenk")
    target = proxied(bench.backend.url, wire.port).render_as_string(hide_password=False)
    settings = DaemonSettings(queue=queue, max_workflows=count, control_interval=CONTROL_INTERVAL)
    daemon = await bench.daemons.start_ready(target, settings)
    try:
        idle_rss = daemon.rss_bytes()
        await bench.enqueue(queue, count, [{"step": "sleep", "args": {"seconds": STEP_SECONDS}}])
        enqueued = utc_now()
        first_start, last_start = await _wait_all_running(bench, daemon, queue, count)
        await asyncio.sleep(2 * CONTROL_INTERVAL)  # a heartbeat over all of them
        rss = daemon.rss_bytes()
        holding = await _holding_cost(wire, daemon, sizes.ten_thousand_wire_seconds)
        stops = await _stops(bench, queue, sizes.ten_thousand_stops)
        claims = claim_times(daemon)
        claim_batches = len(daemon.log_events("workflows_claimed"))
    finally:
        daemon.kill()
    first_claim = claims[0] if claims else first_start
    return {
        "workflows": count,
        "step_seconds": STEP_SECONDS,
        "control_interval": CONTROL_INTERVAL,
        "claim_to_started_s": (last_start - first_claim).total_seconds(),
        "enqueue_to_started_s": (last_start - enqueued).total_seconds(),
        "first_to_last_start_s": (last_start - first_start).total_seconds(),
        "claim_batches": claim_batches,
        "idle_rss_mib": idle_rss / MIB,
        "rss_mib": rss / MIB,
        "per_workflow_kib": (rss - idle_rss) / count / 1024,
        "holding": holding,
        "stop": stops,
    }


async def run(bench: Bench) -> dict[str, Any]:
    """The workload, on a database of its own (dropped at the end, with the 10,000 rows)."""
    async with bench_database(bench.backend.name, bench.workdir) as backend:
        engine = backend.engine(pool_size=2, max_overflow=2)
        own = Bench(backend, bench.sizes, bench.daemons, engine, bench.workdir, bench.run_id)
        url = backend.url
        try:
            async with WireCounter(
                "mysql",
                url.host or "127.0.0.1",
                url.port or 3306,
                watch={LEASE_RENEWAL: RENEWAL_PATTERN},
            ) as wire:
                return await _measure(own, wire)
        finally:
            await engine.dispose()
