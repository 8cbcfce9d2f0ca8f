"""Ten thousand running workflows in one daemon (MariaDB; opt-in, a few minutes).

One daemon (max_workflows = `ten_thousand_workflows`, 10,000; control_interval 1 s) on a
database of the workload's own gets that many workflows of one `sleep` step of 600 s,
enqueued with one INSERT. Twice, each time on a fresh database:

1. connected straight to the server, for the timings:
   * claim → started: from the daemon's first `workflows_claimed` log line to the last
     step's `started_at` in the database (and from the INSERT's commit);
   * the daemon's VmRSS once all run and a heartbeat has passed over them;
   * `ten_thousand_stops` (20) stops of one workflow at a time (`UPDATE workflows SET
     requested = 'stop'`), each at a random moment of the control cycle: request → the
     step's `stopped` row (its `finished_at`);
2. through the counting proxy (`bench.wire`): what the daemon sends per control interval
   while it just holds them, every statement, the UPDATEs that set `lease_expires_at`
   (the lease renewals), and the heartbeats (the UPDATE of its `daemons` row that each
   one makes): renewals per heartbeat are what must not grow with the workflows held.

The proxy is a second process hop for every round trip; starting 10,000 workflows takes
many of them, and on a loaded machine each hop waits for a CPU: through the proxy the
start-up took twice as long, so it is timed without it (its figure through the proxy is
kept in the results as `proxied_claim_to_started_s`).

Each daemon is killed at the end (SIGKILL: a clean shutdown would end 10,000 steps one by
one) and its database dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections.abc import AsyncIterator
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
HEARTBEAT: Final = "heartbeat"
WATCH: Final = {
    # An UPDATE that sets a lease's end. Claims and rescues set it too, but a full daemon
    # claims nothing, and no lease expires while it holds them all.
    LEASE_RENEWAL: re.compile(rb"\A\s*UPDATE\s.*?\blease_expires_at\s*=", re.DOTALL | re.I),
    # Every heartbeat refreshes the daemon's own row, in the transaction that renews.
    HEARTBEAT: re.compile(rb"\A\s*UPDATE\s+`?daemons`?\s+SET\s+`?heartbeat_at\b", re.I),
}
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
    """What the daemon sends per control interval, and per heartbeat, while it just holds
    its workflows."""
    counts, matched = wire.snapshot(), wire.matched()
    cpu, started = daemon.cpu_seconds(), time.perf_counter()
    await asyncio.sleep(seconds)
    elapsed = time.perf_counter() - started
    cpu = daemon.cpu_seconds() - cpu
    delta, matched = wire.snapshot() - counts, wire.matched() - matched
    statements = sum(n for kind, n in delta.items() if kind not in _NOT_STATEMENTS)
    beats, renewals = matched[HEARTBEAT], matched[LEASE_RENEWAL]
    intervals = elapsed / CONTROL_INTERVAL
    return {
        "seconds": elapsed,
        "statements_per_interval": statements / intervals,
        "round_trips_per_interval": delta[ROUND_TRIPS] / intervals,
        "lease_renewals_per_interval": renewals / intervals,
        "heartbeats": beats,
        "seconds_per_heartbeat": elapsed / beats if beats else None,
        "lease_renewals_per_heartbeat": renewals / beats if beats else None,
        "statements_per_heartbeat": statements / beats if beats else None,
        "by_kind_per_interval": {
            kind: n / intervals for kind, n in sorted(delta.items()) if kind != ROUND_TRIPS
        },
        "cpu_percent": 100 * cpu / elapsed,
    }


@contextlib.asynccontextmanager
async def _own_database(bench: Bench) -> AsyncIterator[Bench]:
    """`bench` on a fresh database of its own, dropped on the way out (10,000 rows and
    their leases must not meet the other workloads, nor the other half of this one)."""
    async with bench_database(bench.backend.name, bench.workdir) as backend:
        engine = backend.engine(pool_size=2, max_overflow=2)
        try:
            yield Bench(backend, bench.sizes, bench.daemons, engine, bench.workdir, bench.run_id)
        finally:
            await engine.dispose()


async def _start_all(bench: Bench, url: str) -> tuple[DaemonProcess, dict[str, Any]]:
    """A daemon on `url` with every workflow running; (the daemon, its start-up figures)."""
    count = bench.sizes.ten_thousand_workflows
    queue = bench.queue("tenk")
    settings = DaemonSettings(queue=queue, max_workflows=count, control_interval=CONTROL_INTERVAL)
    daemon = await bench.daemons.start_ready(url, settings)
    try:
        idle_rss = daemon.rss_bytes()
        await bench.enqueue(queue, count, [{"step": "sleep", "args": {"seconds": STEP_SECONDS}}])
        enqueued = utc_now()
        first_start, last_start = await _wait_all_running(bench, daemon, queue, count)
        await asyncio.sleep(2 * CONTROL_INTERVAL)  # a heartbeat over all of them
    except BaseException:
        daemon.kill()
        raise
    claims = claim_times(daemon)
    first_claim = claims[0] if claims else first_start
    return daemon, {
        "queue": queue,
        "claim_to_started_s": (last_start - first_claim).total_seconds(),
        "enqueue_to_started_s": (last_start - enqueued).total_seconds(),
        "first_to_last_start_s": (last_start - first_start).total_seconds(),
        "claim_batches": len(claims),
        "idle_rss_bytes": idle_rss,
    }


async def _timed(bench: Bench) -> dict[str, Any]:
    """Start-up, memory and stops of a daemon connected straight to the server."""
    daemon, started = await _start_all(bench, bench.url)
    try:
        rss = daemon.rss_bytes()
        stops = await _stops(bench, started["queue"], bench.sizes.ten_thousand_stops)
    finally:
        daemon.kill()
    idle_rss = started["idle_rss_bytes"]
    return {
        "claim_to_started_s": started["claim_to_started_s"],
        "enqueue_to_started_s": started["enqueue_to_started_s"],
        "first_to_last_start_s": started["first_to_last_start_s"],
        "claim_batches": started["claim_batches"],
        "idle_rss_mib": idle_rss / MIB,
        "rss_mib": rss / MIB,
        "per_workflow_kib": (rss - idle_rss) / bench.sizes.ten_thousand_workflows / 1024,
        "stop": stops,
    }


async def _on_the_wire(bench: Bench) -> dict[str, Any]:
    """What a daemon holding every workflow sends per control interval, on the wire."""
    url = bench.backend.url
    async with WireCounter("mysql", url.host or "127.0.0.1", url.port or 3306, watch=WATCH) as wire:
        target = proxied(url, wire.port).render_as_string(hide_password=False)
        daemon, started = await _start_all(bench, target)
        try:
            holding = await _holding_cost(wire, daemon, bench.sizes.ten_thousand_wire_seconds)
        finally:
            daemon.kill()
    return {**holding, "proxied_claim_to_started_s": started["claim_to_started_s"]}


async def run(bench: Bench) -> dict[str, Any]:
    """The timed half, then the counted half, each on a database of its own."""
    async with _own_database(bench) as own:
        timed = await _timed(own)
    async with _own_database(bench) as own:
        holding = await _on_the_wire(own)
    return {
        "workflows": bench.sizes.ten_thousand_workflows,
        "step_seconds": STEP_SECONDS,
        "control_interval": CONTROL_INTERVAL,
        **timed,
        "holding": holding,
    }
