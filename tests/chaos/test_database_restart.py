"""The database server restarted under running daemons: a private mariadbd (own datadir,
spare port) killed with SIGKILL or shut down cleanly, and started again, while daemons
run workflows on it."""

from __future__ import annotations

import asyncio
import random
import signal
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
    enqueue,
    make_workflows,
    scaled,
    time_limit,
    tolerant,
    wait_until,
)
from private_mariadb import PrivateMariaDB

from wfed import Engine

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(time_limit(120, 900))]

# The lease outlasts every restart, so no step is ever taken for interrupted: each one
# must run exactly once, whatever the restarts cut off (a commit whose reply was lost).
LEASE = 30.0
KINDS = ("slow", "slow_idempotent", "mark", "slow", "slow_idempotent")


def kill_server(server: PrivateMariaDB, how: str) -> None:
    """Stop the server with SIGKILL (a crash: InnoDB recovers at start) or cleanly."""
    assert server.process is not None
    if how == "SIGKILL":
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=30)
    else:
        server.stop()


async def test_mariadb_killed_and_restarted_under_running_daemons(
    chaos_mariadb: PrivateMariaDB,
    private_mariadb_url: str,
    start_daemon: DaemonFactory,
    make_engine: Callable[..., Engine],
    queue: str,
    journal: Path,
    figures: Callable[..., None],
) -> None:
    """mariadbd restarted again and again (SIGKILL and clean shutdown, in turn) while two
    daemons run workflows: every workflow completes, and every step ran exactly once."""
    rng = random.Random(31)
    count = scaled(150, 1000)
    specs = make_workflows("restart", count, KINDS, (0.1, 0.5), rng)
    engine = make_engine(private_mariadb_url).db.engine
    await enqueue(engine, specs, queue, journal)
    fleet = Fleet(
        start_daemon,
        private_mariadb_url,
        queue,
        2,
        lease=LEASE,
        poll_interval=0.1,
        control_interval=0.5,
        max_workflows=16,
    )
    await fleet.ready()
    done = asyncio.Event()
    restarts: list[str] = []

    async def restart_loop() -> None:
        while not done.is_set():
            await asyncio.sleep(rng.uniform(1.0, 2.0))  # the fault schedule, not a wait
            if done.is_set():
                return
            how = "SIGKILL" if len(restarts) % 2 == 0 else "SIGTERM"
            await asyncio.to_thread(kill_server, chaos_mariadb, how)
            await asyncio.sleep(rng.uniform(0.3, 1.5))  # how long the server stays down
            await asyncio.to_thread(chaos_mariadb.start)
            restarts.append(how)

    restarting = asyncio.create_task(restart_loop())
    try:
        took = await wait_until(
            tolerant(lambda: all_terminal(engine, queue, count)),
            limit=scaled(100, 800),
            what=f"{count} workflows finished",
            interval=0.25,
        )
    finally:
        done.set()
        await restarting
    if chaos_mariadb.process is None or chaos_mariadb.process.poll() is not None:
        chaos_mariadb.start()
    result = await audit_run(engine, specs, journal, errors_allowed=False)
    internal = fleet.log_events(*INTERNAL_ERRORS)
    outage_lines = fleet.log_events(
        "claim_failed", "heartbeat_failed", "database_write_retried", "lease_expired_during_outage"
    )
    figures(
        seconds=round(took, 1),
        restarts=len(restarts),
        sigkill=restarts.count("SIGKILL"),
        clean=restarts.count("SIGTERM"),
        outage_log_lines=sum(outage_lines.values()),
        **result.figures(),
    )
    assert_clean(result)
    assert result.completed == count
    assert result.reruns == 0, "a step ran twice although no lease expired"
    assert len(restarts) >= scaled(3, 10), "too few restarts during the run"
    assert not fleet.exited_unbidden()
    assert not internal, internal
