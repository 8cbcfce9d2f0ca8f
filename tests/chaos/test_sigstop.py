"""SIGSTOP of an owner: another daemon takes its workflows over once their leases end,
and the frozen daemon, thawed, writes nothing for them (fencing).

SQLite is left out: there a daemon frozen inside a write transaction holds the database
file's lock, and SQLite has no idle-in-transaction timeout to end it (see
docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import DaemonFactory, DaemonProcess
from harness import (
    INTERNAL_ERRORS,
    PROCESS_MARGIN,
    Fleet,
    WorkflowSpec,
    all_terminal,
    assert_clean,
    audit_run,
    daemon_id,
    enqueue,
    local_ports,
    make_workflows,
    read_journal,
    scaled,
    time_limit,
    wait_ready,
    wait_until,
)
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from wfed import Engine

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(time_limit(120, 900))]

LEASE = 3.0
POLL_INTERVAL = 0.1
CONTROL_INTERVAL = 0.5
RECOVERY_BOUND = LEASE + POLL_INTERVAL + CONTROL_INTERVAL + PROCESS_MARGIN
"""The contract's recovery time, lease + poll + control, with the process margin."""
TIMING = {"lease": LEASE, "poll_interval": POLL_INTERVAL, "control_interval": CONTROL_INTERVAL}
# Frozen inside the heartbeat: beats five times a second, so that one is soon caught.
HEARTBEAT_CONTROL = 0.2
HEARTBEAT_TIMING = {**TIMING, "control_interval": HEARTBEAT_CONTROL}
HEARTBEAT_BOUND = LEASE + POLL_INTERVAL + HEARTBEAT_CONTROL + PROCESS_MARGIN
KINDS = ("slow_idempotent", "slow", "slow_idempotent", "mark", "slow_idempotent")


async def owned(engine: AsyncEngine, queue: str) -> dict[str, dict[int, int]]:
    """The running workflows of `queue` by owner: {daemon id: {workflow id: fence}}."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT id, claimed_by, fence FROM workflows WHERE queue = :q AND state = 'running'"
            ),
            {"q": queue},
        )
        by_owner: dict[str, dict[int, int]] = {}
        for row in rows:
            by_owner.setdefault(row.claimed_by, {})[row.id] = row.fence
        return by_owner


async def names_of(engine: AsyncEngine, ids: list[int]) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT name FROM workflows WHERE id IN :ids").bindparams(
                bindparam("ids", expanding=True)
            ),
            {"ids": ids},
        )
        return [row.name for row in rows]


async def fences(engine: AsyncEngine, ids: list[int]) -> dict[int, tuple[int, str | None]]:
    return {i: (fence, owner) for i, (fence, owner, _) in (await rows_of(engine, ids)).items()}


async def rows_of(engine: AsyncEngine, ids: list[int]) -> dict[int, tuple[int, str | None, str]]:
    """{workflow id: (fence, claimed_by, state)}."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT id, fence, claimed_by, state FROM workflows WHERE id IN :ids").bindparams(
                bindparam("ids", expanding=True)
            ),
            {"ids": ids},
        )
        return {row.id: (row.fence, row.claimed_by, row.state) for row in rows}


async def last_event_id(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text("SELECT COALESCE(MAX(id), 0) FROM workflow_events")))


async def events_by(
    engine: AsyncEngine, actor: str, ids: list[int], after: int, upto: int
) -> list[Any]:
    """Events `actor` wrote for the workflows `ids` with an id in (after, upto]."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT workflow_id, kind, position FROM workflow_events "
                "WHERE actor = :actor AND id > :after AND id <= :upto AND workflow_id IN :ids"
            ).bindparams(bindparam("ids", expanding=True)),
            {"actor": actor, "after": after, "upto": upto, "ids": ids},
        )
        return list(rows.all())


def lease_lost_for(daemon: DaemonProcess) -> set[int]:
    return {
        line["workflow_id"]
        for line in daemon.log_lines()
        if line.get("event") in {"lease_lost", "lease_expired_during_outage"}
        and "workflow_id" in line
    }


async def thaw_and_check_fencing(
    engine: AsyncEngine, victim: DaemonProcess, held: dict[int, int]
) -> tuple[int, int]:
    """SIGCONT a frozen daemon whose workflows `held` were taken over, wait until its
    runners of them have given up, and check it wrote nothing for them in between.
    Returns (events it wrote for them after waking, its steps started after waking)."""
    victim_id = daemon_id(victim)
    ids = list(held)
    mark = await last_event_id(engine)
    victim.signal(signal.SIGCONT)

    async def given_up() -> bool:
        return set(ids) <= lease_lost_for(victim)

    await wait_until(given_up, limit=30, what=f"{victim_id} giving up {len(ids)} workflows")
    upto = await last_event_id(engine)
    written = await events_by(engine, victim_id, ids, mark, upto)
    now = await fences(engine, ids)
    reclaimed = [i for i, (_, owner) in now.items() if owner == victim_id]
    assert not written, f"{victim_id} wrote after waking: {written} (log {victim.log_path})"
    assert not reclaimed, f"{victim_id} owns {reclaimed} again"
    assert victim.proc.poll() is None, "the thawed daemon exited"
    return len(written), len(reclaimed)


@pytest.mark.parametrize(
    "backend_url", scaled(["mariadb"], ["mariadb", "postgresql"]), indirect=True
)
async def test_sigstop_of_an_owner_hands_its_workflows_over_and_fences_it(
    backend_url: str,
    start_daemon: DaemonFactory,
    make_engine: Callable[..., Engine],
    queue: str,
    journal: Path,
    figures: Callable[..., None],
) -> None:
    """The busiest of three daemons SIGSTOPped at a random moment, cycle after cycle: its
    workflows are taken over within lease + poll + control, and once SIGCONTed it writes
    nothing for them; no workflow lost, no step run twice."""
    rng = random.Random(23)
    engine = make_engine(backend_url).db.engine
    fleet = Fleet(start_daemon, backend_url, queue, 3, max_workflows=20, **TIMING)
    await fleet.ready()
    takeovers: list[float] = []
    taken_over = 0
    cycles = 0
    late_starts = 0
    specs: list[WorkflowSpec] = []
    # Rounds of 40 workflows, which the three daemons take at once: the survivors always
    # have the slots to take a frozen daemon's workflows over (see test_orphans.py for
    # recovery behind a backlog).
    for round_ in range(scaled(1, 8)):
        batch = make_workflows(f"stop{round_}", 40, KINDS, (0.3, 1.2), rng)
        specs += batch
        await enqueue(engine, batch, queue, journal)
        for _ in range(3):
            await asyncio.sleep(rng.uniform(0.3, 1.5))  # the fault schedule, not a wait
            by_owner = await owned(engine, queue)
            if not by_owner:
                break
            victim_id = max(by_owner.items(), key=lambda item: len(item[1]))[0]
            victim = fleet.by_id(victim_id)
            assert victim is not None, victim_id
            victim.signal(signal.SIGSTOP)
            frozen_at = time.monotonic()
            # What it holds once frozen (it may have finished some since the look above).
            held = (await owned(engine, queue)).get(victim_id, {})
            ids = list(held)

            async def all_taken_over(ids: list[int] = ids, held: dict[int, int] = held) -> bool:
                # Taken over: a new fence. A commit the frozen daemon had sent may still
                # land and end its workflow (same fence, no longer running): not stuck.
                now = await rows_of(engine, ids)
                return all(now[i][0] != held[i] or now[i][2] != "running" for i in ids)

            try:
                await wait_until(
                    all_taken_over,
                    limit=RECOVERY_BOUND * 3,
                    what=f"{len(ids)} workflows of the frozen {victim_id} taken over",
                )
            except AssertionError as exc:
                sessions = await server_sessions(engine, local_ports(victim.pid))
                raise AssertionError(f"{exc}; its sessions: {sessions}") from None
            took = time.monotonic() - frozen_at
            takeovers.append(took)
            journal_lines_before = sum(len(v) for v in read_journal(journal).values())
            await thaw_and_check_fencing(engine, victim, held)
            held_names = set(await names_of(engine, ids))
            tags = {s.tag for spec in batch if spec.name in held_names for s in spec.steps}
            late_starts += sum(
                1
                for lines in read_journal(journal).values()
                for line in lines
                if line.index >= journal_lines_before
                and line.pid == victim.pid
                and line.kind in {"start", "ran"}
                and line.tag in tags
            )
            taken_over += len(ids)
            cycles += 1
            assert took < RECOVERY_BOUND, f"taken over {took:.2f} s after the SIGSTOP"

        async def round_done(n: int = len(batch) * (round_ + 1)) -> bool:
            return await all_terminal(engine, queue, n)

        await wait_until(
            round_done,
            limit=120,
            what="every workflow completed or in error",
            interval=0.25,
        )
    result = await audit_run(engine, specs, journal, errors_allowed=True)
    internal = fleet.log_events(*INTERNAL_ERRORS)
    figures(
        cycles=cycles,
        lease=LEASE,
        taken_over=taken_over,
        takeover_max=round(max(takeovers, default=0), 2),
        late_step_starts_after_thaw=late_starts,
        **result.figures(),
    )
    assert cycles >= scaled(2, 16), "too few freezes landed on a busy daemon"
    assert_clean(result)
    assert not fleet.exited_unbidden()
    assert not internal, internal


# -- frozen inside the heartbeat transaction -----------------------------------------------


def _port(host: object) -> int:
    """The client port of a MariaDB processlist host ("localhost:41234")."""
    text_ = str(host)
    return int(text_.rsplit(":", 1)[1]) if ":" in text_ else -1


async def in_workflows_statement(conn: AsyncConnection, backend: str, ports: set[int]) -> bool:
    """Whether a connection on `ports` is running a statement on `workflows`, or (on
    PostgreSQL) is inside a transaction that locked rows of it. Both servers show this
    as it happens (MariaDB's processlist; PostgreSQL's pg_stat_activity and pg_locks)."""
    if backend == "mysql":
        rows = await conn.execute(
            text(
                "SELECT host, info FROM information_schema.processlist "
                "WHERE db = DATABASE() AND command = 'Query' AND id <> CONNECTION_ID()"
            )
        )
        return any(_port(host) in ports and "workflows" in str(info) for host, info in rows)
    return await open_locking_transaction(conn, backend, ports) is not None


async def open_locking_transaction(
    conn: AsyncConnection, backend: str, ports: set[int]
) -> str | None:
    """What an open transaction of the connections on `ports` holds, if it holds row locks
    (on `workflows`, for PostgreSQL); None otherwise. MariaDB refreshes its
    information_schema.innodb_trx at most every 0.1 s: this reads a fresh copy."""
    if backend == "mysql":
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            rows = await conn.execute(
                text(
                    "SELECT p.host, t.trx_rows_locked, t.trx_tables_locked "
                    "FROM information_schema.innodb_trx t "
                    "JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id "
                    "WHERE p.db = DATABASE()"
                )
            )
            for host, rows_locked, tables_locked in rows:
                if _port(host) in ports and rows_locked > 0:
                    return (
                        f"MariaDB transaction holding {rows_locked} row locks "
                        f"in {tables_locked} tables"
                    )
            await asyncio.sleep(0.05)
        return None
    rows = await conn.execute(
        text(
            "SELECT a.client_port, a.state, a.query FROM pg_stat_activity a "
            "WHERE a.datname = current_database() AND a.xact_start IS NOT NULL "
            "AND a.pid <> pg_backend_pid() AND EXISTS (SELECT 1 FROM pg_locks l "
            "WHERE l.pid = a.pid AND l.relation = 'workflows'::regclass "
            "AND l.mode IN ('RowShareLock', 'RowExclusiveLock'))"
        )
    )
    for port, state, query in rows:
        if port in ports:
            last = " ".join(str(query).split())[:100]
            return f"PostgreSQL session {state!r} holding row locks after {last!r}"
    return None


async def server_sessions(engine: AsyncEngine, ports: set[int]) -> list[Any]:
    """What the server says of the sessions on `ports` (for a failure's message)."""
    async with engine.connect() as conn:
        if engine.dialect.name == "mysql":
            rows = await conn.execute(
                text(
                    "SELECT p.host, p.command, p.time, p.state, p.info, t.trx_state, "
                    "t.trx_rows_locked FROM information_schema.processlist p "
                    "LEFT JOIN information_schema.innodb_trx t ON t.trx_mysql_thread_id = p.id"
                )
            )
            return [tuple(row) for row in rows if _port(row[0]) in ports]
        rows = await conn.execute(
            text(
                "SELECT client_port, state, wait_event_type, wait_event, xact_start, "
                "state_change, left(query, 120) FROM pg_stat_activity "
                "WHERE datname = current_database()"
            )
        )
        return [tuple(row) for row in rows if row[0] in ports]


async def freeze_inside_a_transaction(
    engine: AsyncEngine, victim: DaemonProcess, limit: float
) -> tuple[str, int]:
    """SIGSTOP `victim` while it holds row locks on `workflows` in an open transaction:
    watch the server until one of its connections works on `workflows`, stop the daemon
    at once, and keep it stopped only if the server then shows a transaction of it holding
    row locks (else thaw it and watch again). Returns what the transaction held and the
    number of tries."""
    backend = engine.dialect.name
    deadline = time.monotonic() + limit
    tries = 0
    ports = local_ports(victim.pid)
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        while time.monotonic() < deadline:
            if not await in_workflows_statement(conn, backend, ports):
                continue
            victim.signal(signal.SIGSTOP)
            tries += 1
            held = await open_locking_transaction(conn, backend, ports)
            if held:
                return held, tries
            victim.signal(signal.SIGCONT)
            ports = local_ports(victim.pid)
    raise AssertionError(f"never caught the daemon inside a transaction ({tries} tries)")


@pytest.mark.parametrize(
    "backend_url", scaled(["mariadb"], ["mariadb", "postgresql"]), indirect=True
)
@pytest.mark.timeout(time_limit(240, 1200))
async def test_sigstop_inside_the_heartbeat_transaction_delays_recovery_by_no_more_than_a_lease(
    backend_url: str,
    start_daemon: DaemonFactory,
    make_engine: Callable[..., Engine],
    queue: str,
    journal: Path,
    figures: Callable[..., None],
) -> None:
    """A daemon SIGSTOPped inside its heartbeat transaction (row locks held on its
    workflows): the server's idle-in-transaction timeout frees them, and another daemon
    takes every workflow over within lease + poll + control; thawed, it writes nothing."""
    engine = make_engine(backend_url).db.engine
    recoveries: list[float] = []
    caught: list[str] = []
    hunted: list[int] = []
    all_specs = []
    rescuers = []
    for cycle in range(scaled(1, 4)):
        # A queue per cycle: the victim alone claims its workflows, then the rescuer comes.
        cycle_queue = f"{queue}-{cycle}"
        held_count = scaled(20, 60)
        specs = make_workflows(
            f"hb{cycle}", held_count, ("slow_idempotent", "mark"), (6.0, 6.0), random.Random(3)
        )
        all_specs += specs
        await enqueue(engine, specs, cycle_queue, journal)
        victim = start_daemon(
            backend_url,
            queue=cycle_queue,
            max_workflows=held_count,
            wait_ready=False,
            **HEARTBEAT_TIMING,
        )
        victim_id = daemon_id(victim)

        async def holds_all(
            victim_id: str = victim_id, q: str = cycle_queue, n: int = held_count
        ) -> bool:
            return len((await owned(engine, q)).get(victim_id, {})) == n

        await wait_until(holds_all, limit=60, what=f"{victim_id} running every workflow")

        async def all_started(prefix: str = f"hb{cycle}", n: int = held_count) -> bool:
            # Every first step started: the runners' first transactions are over, and the
            # only transactions the daemon makes now are its heartbeats.
            tags = read_journal(journal)
            return sum(t.startswith(prefix) and t.endswith("s0") for t in tags) >= n

        await wait_until(all_started, limit=60, what="every first step started")
        rescuer = start_daemon(
            backend_url,
            queue=cycle_queue,
            max_workflows=held_count,
            wait_ready=False,
            **HEARTBEAT_TIMING,
        )
        rescuers.append(rescuer)
        await wait_ready(rescuer)
        # Catching a short transaction open takes luck: more tries on a busy machine.
        what, tries = await freeze_inside_a_transaction(engine, victim, limit=90)
        frozen_at = time.monotonic()
        caught.append(what)
        hunted.append(tries)
        held = (await owned(engine, cycle_queue)).get(victim_id, {})
        assert held, "the daemon was caught after its workflows had finished"
        ids = list(held)

        async def rescued(ids: list[int] = ids, rescuer: DaemonProcess = rescuer) -> bool:
            now = await fences(engine, ids)
            return all(owner == daemon_id(rescuer) for _, owner in now.values())

        try:
            await wait_until(rescued, limit=60, what="the rescuer owning every workflow")
        except AssertionError as exc:
            sessions = await server_sessions(engine, local_ports(victim.pid))
            raise AssertionError(f"{exc}; frozen in: {what}; its sessions: {sessions}") from None
        recoveries.append(time.monotonic() - frozen_at)
        await thaw_and_check_fencing(engine, victim, held)

        async def done(q: str = cycle_queue, n: int = held_count) -> bool:
            return await all_terminal(engine, q, n)

        await wait_until(done, limit=60, what="every workflow of the cycle finished")
    # A freeze may land after a workflow's `mark` ran, before its commit: that step is
    # then interrupted (error), as after a crash.
    result = await audit_run(engine, all_specs, journal, errors_allowed=True)
    figures(
        lease=LEASE,
        freezes=len(recoveries),
        recovery_max=round(max(recoveries), 2),
        bound=HEARTBEAT_BOUND,
        freeze_tries=sum(hunted),
        caught_in=caught[0],
        **result.figures(),
    )
    assert_clean(result)
    assert max(recoveries) < HEARTBEAT_BOUND, recoveries
