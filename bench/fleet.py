"""Fleet: what `fleet_daemons` (20) idle daemons cost one MariaDB server together.

The daemons (poll 1 s, control 1 s, one queue) run on a private MariaDB server started for
the workload (`bench.private_mariadb`), so that the server's own counters count them and
nothing else: `Questions` (statements sent by clients) and the `Com_%` counters by kind,
read with one `SHOW GLOBAL STATUS` before and after `fleet_seconds` (30 s), past a
warm-up (each daemon's first rescue pass and idle heartbeat open its connections). A
counter read is itself a statement: what one read adds to each counter is measured
before the daemons start, with nobody else connected, and taken off.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any, Final

import asyncmy
from sqlalchemy.engine import URL

from bench.context import Bench
from bench.daemons import DaemonProcess, DaemonSettings
from bench.databases import bench_database
from bench.idle import WARM_UP_SECONDS
from bench.private_mariadb import private_mariadb

STATUS: Final = (
    "SHOW GLOBAL STATUS WHERE Variable_name IN ('Questions', 'Threads_connected') "
    "OR Variable_name LIKE 'Com\\\\_%'"
)
# Daemons started at once compete for two cores while they import wfed; a few at a time
# each become ready well within the start-up timeout.
START_BATCH: Final = 5
CALIBRATION_READS: Final = 5
# Gauges, not counters: never differenced.
_GAUGES: Final = {"Threads_connected"}


@contextlib.asynccontextmanager
async def _counter_reader(server: URL) -> AsyncIterator[Any]:
    """One connection kept open for every read: connecting again would add statements."""
    conn = await asyncmy.connect(
        host=server.host, port=server.port, user=server.username, password=""
    )
    try:
        yield conn
    finally:
        conn.close()


async def _status(conn: Any) -> Counter[str]:
    async with conn.cursor() as cursor:
        await cursor.execute(STATUS)
        rows = await cursor.fetchall()
    return Counter({str(name): int(value) for name, value in rows})


def _counters(status: Counter[str]) -> Counter[str]:
    return Counter({name: n for name, n in status.items() if name not in _GAUGES})


async def _read_cost(conn: Any) -> Counter[str]:
    """What one counter read adds to the counters, with no other client connected."""
    first = await _status(conn)
    last = first
    for _ in range(CALIBRATION_READS):
        last = await _status(conn)
    spent = _counters(last)
    spent.subtract(_counters(first))
    return Counter({name: round(n / CALIBRATION_READS) for name, n in spent.items() if n > 0})


async def _start_fleet(
    bench: Bench, url: str, settings: DaemonSettings, count: int
) -> list[DaemonProcess]:
    started: list[DaemonProcess] = []
    while len(started) < count:
        batch = min(START_BATCH, count - len(started))
        started += await bench.daemons.start_many(url, settings, batch)
    return started


async def fleet(bench: Bench) -> dict[str, Any]:
    """Statements/s the server receives from `fleet_daemons` idle daemons, in total."""
    count, seconds = bench.sizes.fleet_daemons, bench.sizes.fleet_seconds
    root = bench.workdir / f"fleet-mariadb-{bench.run_id}"
    settings = DaemonSettings(queue=bench.queue("fleet"))
    async with (
        private_mariadb(root) as server,
        bench_database("mariadb", bench.workdir, server) as backend,
        _counter_reader(server) as reader,
    ):
        cost = await _read_cost(reader)
        daemons = await _start_fleet(bench, backend.url_string, settings, count)
        try:
            await asyncio.sleep(WARM_UP_SECONDS)
            before = await _status(reader)
            cpu, started = sum(d.cpu_seconds() for d in daemons), time.perf_counter()
            await asyncio.sleep(seconds)
            after = await _status(reader)
            elapsed = time.perf_counter() - started
            cpu = sum(d.cpu_seconds() for d in daemons) - cpu
            exited = sum(not d.alive() for d in daemons)
        finally:
            for daemon in daemons:
                daemon.kill()
    if exited:
        raise RuntimeError(f"{exited} of the {count} daemons exited during the measurement")
    spent = _counters(after)
    spent.subtract(_counters(before))
    spent.subtract(cost)  # the closing read: the opening one counted before `before`
    statements = spent["Questions"]
    return {
        "daemons": count,
        "seconds": elapsed,
        "poll_interval": settings.poll_interval,
        "control_interval": settings.control_interval,
        "statements_per_s": statements / elapsed,
        "statements_per_daemon_per_s": statements / elapsed / count,
        "by_kind_per_s": {
            name.removeprefix("Com_"): n / elapsed
            for name, n in sorted(spent.items())
            if name.startswith("Com_") and n > 0
        },
        "read_cost": dict(cost),
        "connections": after["Threads_connected"] - 1,  # less the counter reader
        "cpu_percent": 100 * cpu / elapsed,
    }
