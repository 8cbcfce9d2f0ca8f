"""A flaky network between the daemons and MariaDB: a proxy that resets about 1 % of the
chunks it forwards (the client sees 2013 or 2006; a reply lost on its way back may be
the reply to a COMMIT that landed) and stalls about 1 % of them for up to a second."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
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
    wait_until,
)
from private_mariadb import PrivateMariaDB
from proxy import ChaosProxy, Verdict

from wfed import Engine

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(time_limit(120, 900))]

RESET_RATE = 0.01
STALL_RATE = 0.01
# Only non-idempotent steps: any step taken for interrupted would end its workflow in error.
KINDS = ("slow", "mark", "slow", "mark", "slow")


@pytest.fixture
def proxy(chaos_mariadb: PrivateMariaDB) -> Iterator[ChaosProxy]:
    """The chaos proxy in front of the tier's MariaDB (faults off until switched on)."""
    chaos = ChaosProxy(
        "127.0.0.1",
        chaos_mariadb.port,
        reset_rate=RESET_RATE,
        stall_rate=STALL_RATE,
        stall_seconds=(0.1, 1.0),
        seed=41,
    )
    chaos.faults = False
    chaos.start()
    try:
        yield chaos
    finally:
        chaos.stop()


async def test_connection_resets_and_stalls_fail_no_workflow(
    private_mariadb_url: str,
    proxy: ChaosProxy,
    start_daemon: DaemonFactory,
    make_engine: Callable[..., Engine],
    queue: str,
    journal: Path,
    figures: Callable[..., None],
) -> None:
    """Three daemons reach MariaDB through a proxy resetting ~1 % of chunks mid-stream
    and stalling ~1 %: every workflow of non-idempotent steps completes (none in error),
    and every step ran exactly once."""
    rng = random.Random(43)
    count = scaled(150, 1000)
    specs = make_workflows("reset", count, KINDS, (0.05, 0.3), rng)
    engine = make_engine(private_mariadb_url).db.engine  # direct, not through the proxy
    await enqueue(engine, specs, queue, journal)
    proxied_url = private_mariadb_url.replace(
        f"127.0.0.1:{proxy.upstream[1]}", f"127.0.0.1:{proxy.port}"
    )
    assert proxied_url != private_mariadb_url
    fleet = Fleet(
        start_daemon,
        proxied_url,
        queue,
        3,
        lease=5.0,
        poll_interval=0.1,
        control_interval=0.5,
        max_workflows=16,
    )
    # A daemon that cannot reach its database at start exits (systemd starts it again):
    # the faults begin once every daemon runs.
    await fleet.ready()
    proxy.faults = True
    took = await wait_until(
        lambda: all_terminal(engine, queue, count),
        limit=scaled(100, 800),
        what=f"{count} workflows finished",
        interval=0.25,
    )
    result = await audit_run(engine, specs, journal, errors_allowed=False)
    internal = fleet.log_events(*INTERNAL_ERRORS)
    stats = proxy.stats
    figures(
        seconds=round(took, 1),
        connections=stats.connections,
        chunks=stats.chunks,
        resets=stats.resets,
        resets_of_replies=stats.resets_to_client,
        stalls=stats.stalls,
        stalled_s=round(stats.stalled_seconds, 1),
        logged_2013=fleet.log_text_count(r"\b2013\b"),
        logged_2006=fleet.log_text_count(r"\b2006\b"),
        lease_lost=sum(fleet.log_events("lease_lost").values()),
        **result.figures(),
    )
    assert_clean(result)
    assert result.completed == count
    assert result.reruns == 0
    assert stats.resets >= scaled(10, 50), "too few resets to mean anything"
    assert not fleet.exited_unbidden()
    assert not internal, internal


class LostCompletionReply:
    """A proxy script: the reply to the COMMIT that completes a workflow is held back
    (the commit lands; the daemon waits for its answer) until the daemon's heartbeat has
    run twice since, then the connection is reset (2013)."""

    def __init__(self) -> None:
        self.proxy: ChaosProxy | None = None
        self.completing: set[int] = set()
        self.armed: set[int] = set()
        self.held: int | None = None
        self.heartbeats_since = 0
        self.released = threading.Event()

    def __call__(self, connection: int, to_client: bool, chunk: bytes) -> Verdict:
        if to_client:
            if connection in self.armed and self.held is None:
                self.held = connection
                return Verdict.HOLD
            return Verdict.FORWARD
        query = chunk[5:] if len(chunk) > 5 and chunk[4] == COM_QUERY else b""
        if b"SET state='completed'" in query:
            self.completing.add(connection)
        elif query == b"COMMIT" and connection in self.completing:
            self.armed.add(connection)
        elif query.startswith(b"UPDATE daemons SET heartbeat_at") and self.held is not None:
            # The heartbeat that began after the commit landed has told the runners
            # what it found once the next one begins (one loop, one beat at a time).
            self.heartbeats_since += 1
            if self.heartbeats_since == 2 and self.proxy is not None:
                self.proxy.release(self.held)
                self.released.set()
        return Verdict.FORWARD


COM_QUERY = 3


async def test_a_lost_reply_to_a_completing_commit_is_no_lost_lease(
    private_mariadb_url: str,
    chaos_mariadb: PrivateMariaDB,
    start_daemon: DaemonFactory,
    make_engine: Callable[..., Engine],
    queue: str,
    journal: Path,
) -> None:
    """The reply to the COMMIT that completes a workflow is lost (connection reset) after
    a heartbeat: the daemon reports the workflow completed, not a lost lease."""
    script = LostCompletionReply()
    proxy = ChaosProxy("127.0.0.1", chaos_mariadb.port, script=script)
    script.proxy = proxy
    proxy.start()
    try:
        engine = make_engine(private_mariadb_url).db.engine
        specs = make_workflows("reply", 1, ("mark", "mark"), (0, 0), random.Random(1))
        await enqueue(engine, specs, queue, journal)
        proxied_url = private_mariadb_url.replace(
            f"127.0.0.1:{chaos_mariadb.port}", f"127.0.0.1:{proxy.port}"
        )
        daemon = start_daemon(
            proxied_url, queue=queue, lease=5.0, poll_interval=0.1, control_interval=0.2
        )

        async def runner_finished() -> bool:
            return bool(daemon.events("runner_finished"))

        await wait_until(runner_finished, limit=30, what="the runner finished")
        assert script.released.is_set(), "the completing COMMIT's reply was never held"
        result = await audit_run(engine, specs, journal, errors_allowed=False)
        assert_clean(result)
        assert result.completed == 1
        outcome = daemon.events("runner_finished")[0]["outcome"]
        assert not daemon.events("lease_lost"), "a landed completion was taken for a lost lease"
        assert outcome == "completed"
        assert daemon.events("workflow_completed")
    finally:
        proxy.stop()
