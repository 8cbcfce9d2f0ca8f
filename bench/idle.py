"""Workload 5b, idle cost: what an idle daemon sends to its database.

The daemon (default intervals: poll 1 s, control 1 s) connects through `WireCounter`, a
counting proxy, so its statements are counted exactly even on a server that other
clients share (MariaDB's `Questions` is server-wide, and performance_schema is often
off). SQLite is embedded: there is no wire, only the daemon's CPU time is reported.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy.engine import URL

from bench.context import Bench
from bench.daemons import DaemonSettings
from bench.wire import ROUND_TRIPS, WireCounter

# Past the first rescue pass and idle heartbeat (lease / 4 = 7.5 s with the defaults),
# which open the daemon's autocommit connections: connection set-up is a one-off, and
# what is measured is the steady state of a daemon that stays idle.
WARM_UP_SECONDS = 10.0
_PROTOCOLS = {"mariadb": ("mysql", 3306), "postgresql": ("postgresql", 5432)}
# Not statements: the MySQL ping, the PostgreSQL parse and session end.
_NOT_QUERIES = {ROUND_TRIPS, "PING", "QUIT", "(parse)"}


def proxied(url: URL, port: int) -> URL:
    """`url` pointing at a local proxy (PostgreSQL: without TLS, so the proxy can read)."""
    moved = url.set(host="127.0.0.1", port=port)
    if url.get_backend_name() == "postgresql":
        moved = moved.update_query_dict({"ssl": "disable"})
    return moved


async def idle_cost(bench: Bench) -> dict[str, Any]:
    """Statements and round trips per second, and CPU, of an idle daemon over `idle_seconds`."""
    seconds = bench.sizes.idle_seconds
    settings = DaemonSettings(queue=bench.queue("idle"))
    figures: dict[str, Any] = {
        "seconds": seconds,
        "poll_interval": settings.poll_interval,
        "control_interval": settings.control_interval,
    }
    if bench.backend.name not in _PROTOCOLS:
        daemon = await bench.daemons.start_ready(bench.url, settings)
        try:
            await asyncio.sleep(WARM_UP_SECONDS)
            cpu, started = daemon.cpu_seconds(), time.perf_counter()
            await asyncio.sleep(seconds)
            figures["cpu_percent"] = (
                100 * (daemon.cpu_seconds() - cpu) / (time.perf_counter() - started)
            )
        finally:
            daemon.kill()
        return figures
    protocol, default_port = _PROTOCOLS[bench.backend.name]
    url = bench.backend.url
    async with WireCounter(protocol, url.host or "127.0.0.1", url.port or default_port) as wire:
        target = proxied(url, wire.port).render_as_string(hide_password=False)
        daemon = await bench.daemons.start_ready(target, settings)
        try:
            await asyncio.sleep(WARM_UP_SECONDS)
            counts, cpu, started = wire.snapshot(), daemon.cpu_seconds(), time.perf_counter()
            await asyncio.sleep(seconds)
            delta = wire.snapshot() - counts
            elapsed = time.perf_counter() - started
            figures["cpu_percent"] = 100 * (daemon.cpu_seconds() - cpu) / elapsed
        finally:
            daemon.kill()
    statements = sum(n for kind, n in delta.items() if kind not in _NOT_QUERIES)
    per_poll = elapsed / settings.poll_interval
    figures.update(
        {
            "statements_per_s": statements / elapsed,
            "statements_per_poll": statements / per_poll,
            "round_trips_per_poll": delta[ROUND_TRIPS] / per_poll,
            "by_kind_per_poll": {
                kind: n / per_poll
                for kind, n in sorted(delta.items())
                if kind not in {ROUND_TRIPS, "QUIT"}
            },
        }
    )
    return figures
