"""The fleet as operators check it: which daemons are alive, what they run, and whether
every queue with runnable workflows has a live daemon serving it (`wfectl daemons`,
`wfectl health`).

A daemon is alive while its heartbeat is at most its lease (`lease_seconds`) old. A daemon
renews its leases in the same heartbeat, so past that age the leases it held have expired
as well, and the daemons serving their queues take its workflows over. Ages are measured
with this host's clock against the daemons' clocks: the hosts' clocks must agree (NTP).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from wfed.engine.views import DaemonStatus, Fleet, Health
from wfed.errors import DatabaseUnavailable
from wfed.store import daemons as daemon_store
from wfed.store import migrate
from wfed.store import workflows as workflow_store
from wfed.store.database import Database
from wfed.store.rows import DaemonRow


def heartbeat_age(daemon: DaemonRow, now: datetime) -> float:
    """Seconds since the daemon's last heartbeat."""
    return (now - daemon.heartbeat_at).total_seconds()


def is_alive(daemon: DaemonRow, now: datetime) -> bool:
    """Whether the daemon's heartbeat is no older than its lease."""
    return heartbeat_age(daemon, now) <= daemon.lease_seconds


def fleet_status(
    rows: Iterable[DaemonRow],
    running_by_owner: Mapping[str | None, tuple[int, int]],
    now: datetime,
) -> Fleet:
    """The fleet from the daemon rows and the running workflows per owner
    ({owner: (running, of which the lease expired)})."""
    daemons = [
        DaemonStatus(
            **{name: getattr(row, name) for name in row.__dataclass_fields__},
            heartbeat_age=heartbeat_age(row, now),
            alive=is_alive(row, now),
            running=running_by_owner.get(row.id, (0, 0))[0],
        )
        for row in rows
    ]
    live = {daemon.id for daemon in daemons if daemon.alive}
    awaiting = sum(
        expired if owner in live else running
        for owner, (running, expired) in running_by_owner.items()
    )
    return Fleet(daemons=daemons, awaiting_recovery=awaiting)


async def read_fleet(conn: AsyncConnection, now: datetime) -> Fleet:
    """The fleet as the database has it at `now` (two queries)."""
    rows = await daemon_store.daemons_list(conn)
    running = await workflow_store.workflow_running_by_owner(conn, now=now)
    return fleet_status(rows, running, now)


async def fleet(db: Database, now: datetime) -> Fleet:
    """The fleet at `now`, read in one transaction of its own."""
    async with db.transaction() as conn:
        return await read_fleet(conn, now)


def assess(fleet: Fleet, runnable: Mapping[str, int], queues: Sequence[str] = ()) -> Health:
    """One problem per queue that has runnable workflows and no live daemon serving it."""
    counts = {queue: 0 for queue in queues}
    counts.update(runnable)
    served = fleet.served()
    problems = []
    for queue in sorted(counts):
        waiting = counts[queue]
        if waiting == 0 or queue in served:
            continue
        dead = fleet.dead_serving(queue)
        was = f" (served only by dead daemons: {', '.join(dead)})" if dead else ""
        noun = "workflow" if waiting == 1 else "workflows"
        problems.append(
            f"queue {queue!r}: {waiting} runnable {noun} and no live daemon serves it{was}"
        )
    return Health(problems=problems, fleet=fleet, runnable=counts, queues=list(queues))


async def check(
    db: Database, now: datetime, queues: Sequence[str] = (), *, schema: bool = True
) -> Health:
    """Check the schema (unless `schema` is False: the caller did), then the fleet against
    the runnable workflows of `queues` (all queues if none). An unreachable database or an
    outdated schema raises (a WfedError or a database error), for the caller to report."""
    if schema:
        await migrate.require_current(db)
    async with db.transaction() as conn:
        fleet = await read_fleet(conn, now)
        runnable = await workflow_store.workflow_runnable_by_queue(conn, now=now, queues=queues)
    return assess(fleet, runnable, queues)


CONNECT_TIMEOUT = 10.0
"""Seconds `check_reachable` waits for a network database before calling it unreachable."""


async def check_reachable(
    db: Database, *, schema: bool = True, wait: float = CONNECT_TIMEOUT
) -> None:
    """Connect, and check the schema revision (unless `schema` is False), so that an
    unreachable database or a missing schema is reported plainly (DatabaseUnavailable,
    SchemaOutdated) instead of as whatever the first query happens to hit.

    A network database that does not answer (a firewall dropping packets) would keep the
    drivers waiting for a minute: past `wait` seconds it is unreachable. SQLite has no
    network, but a write transaction may wait for its lock (busy timeout): no limit there;
    and without the schema check, nothing to check (a missing file is the upgrade's to
    create, and refused everywhere else).
    """
    if db.sqlite_file is not None and not schema:
        return  # no server to reach; the schema upgrade creates a missing file
    limit = None if db.backend == "sqlite" else wait
    try:
        async with asyncio.timeout(limit):
            if schema:
                await migrate.require_current(db)
            else:
                async with db.engine.connect():
                    pass
    except TimeoutError:
        raise DatabaseUnavailable(
            f"database {db.display_url} unreachable: no answer within {wait:g} s"
        ) from None
