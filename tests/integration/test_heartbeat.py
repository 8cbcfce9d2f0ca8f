"""The heartbeat's decisions, one `run_once` beat at a time on the real databases: leases
renewed, runners told they lost their workflow or were asked to stop (once), expired leases
dropped even when the database is away, the daemon's row refreshed and registered again.

The runners are stand-ins recording what they were told (the runner's interface is the
boundary under test); the daemon rows and workflows are real, in a queue of the test's own.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import delete, select
from structlog.testing import capture_logs

from wfed import Engine
from wfed.clock import utc_now
from wfed.config import DaemonConfig
from wfed.daemon.heartbeat import Heartbeat
from wfed.daemon.loops import LOOP_ERRORS
from wfed.metrics import Metrics
from wfed.store import claims
from wfed.store import workflows as workflow_store
from wfed.store.database import Database
from wfed.store.rows import DaemonRow
from wfed.store.schema import daemons, workflows

# `create` (tests/integration/conftest.py): a new pending workflow's name.
CreateFn = Callable[..., Awaitable[str]]

LEASE = 30.0
CONTROL = 1.0
IDLE_INTERVAL = LEASE / 4


class FakeRunner:
    """A runner that records what the heartbeat told it."""

    def __init__(self, fence: int, lease_expires_at: datetime) -> None:
        self.fence = fence
        self.lease_expires_at = lease_expires_at
        self.told: list[str] = []

    def lose(self) -> None:
        self.told.append("lose")

    def renewed(self, lease_expires_at: datetime) -> None:
        self.lease_expires_at = lease_expires_at
        self.told.append("renewed")

    def stop(self, reason: str) -> None:
        self.told.append(f"stop: {reason}")


class Ticker:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Harness:
    """A Heartbeat of a daemon of the test's own, its runners, and its clocks."""

    def __init__(self, db: Database, daemon_id: str) -> None:
        self.now = utc_now().replace(microsecond=0)
        self.ticker = Ticker()
        self.runners: dict[int, FakeRunner] = {}
        row = DaemonRow(
            id=daemon_id,
            host="test",
            pid=1,
            version="0",
            queues=["none"],
            max_workflows=4,
            lease_seconds=round(LEASE),
            started_at=self.now,
            heartbeat_at=self.now,
        )
        self.heartbeat = Heartbeat(
            db,
            DaemonConfig(lease=LEASE, control_interval=CONTROL),
            row,
            self.runners,
            metrics=Metrics(),
            clock=lambda: self.now,
            monotonic=self.ticker,
        )
        self.id = daemon_id

    def later(self, seconds: float) -> None:
        """Move both clocks on by `seconds` (IDLE_INTERVAL: a quarter lease, when the
        leases of runners made now fall due for renewal)."""
        self.now += timedelta(seconds=seconds)
        self.ticker.now += seconds


@pytest.fixture
async def queue(engine: Engine, new_name: Callable[..., str]) -> AsyncIterator[str]:
    """A queue of this test's own; its workflows are deleted afterwards."""
    name = new_name("heartbeat")
    yield name
    async with engine.db.transaction() as conn:
        await conn.execute(delete(workflows).where(workflows.c.queue == name))


@pytest.fixture
async def harness(engine: Engine, new_name: Callable[..., str]) -> AsyncIterator[Harness]:
    """A registered daemon's heartbeat; its row is deleted afterwards."""
    harness = Harness(engine.db, new_name("daemon"))
    await harness.heartbeat.register()
    yield harness
    async with engine.db.transaction() as conn:
        await conn.execute(delete(daemons).where(daemons.c.id == harness.id))


async def held(engine: Engine, create: CreateFn, queue: str, harness: Harness) -> tuple[int, int]:
    """A workflow the harness's daemon claimed; its id and fence."""
    name = await create(["noop"], queue=queue)
    workflow_id = (await engine.get(name)).row.id
    async with engine.db.transaction() as conn:
        assert await claims.workflow_claim_by_id(
            conn, workflow_id, owner=harness.id, now=harness.now, lease=LEASE
        )
    return workflow_id, (await engine.get(name)).row.fence


async def lease_of(engine: Engine, workflow_id: int) -> datetime | None:
    async with engine.db.transaction() as conn:
        row = await workflow_store.workflow_get_by_id(conn, workflow_id)
    assert row is not None
    return row.lease_expires_at


async def heartbeat_of(engine: Engine, daemon_id: str) -> datetime | None:
    async with engine.db.transaction() as conn:
        found: datetime | None = await conn.scalar(
            select(daemons.c.heartbeat_at).where(daemons.c.id == daemon_id)
        )
    return found


async def test_a_beat_renews_every_lease_and_the_daemons_row(
    engine: Engine, create: CreateFn, queue: str, harness: Harness
) -> None:
    """A beat with workflows running extends each of their leases from the daemon's clock,
    tells each runner so, and refreshes the daemon's row, in one go."""
    ids = [await held(engine, create, queue, harness) for _ in range(2)]
    for workflow_id, fence in ids:
        harness.runners[workflow_id] = FakeRunner(fence, harness.now + timedelta(seconds=LEASE))
    harness.now += timedelta(seconds=10)

    beat = await harness.heartbeat.run_once()

    assert (beat.renewed, beat.lost, beat.refreshed) == (2, 0, True)
    expires = harness.now + timedelta(seconds=LEASE)
    for workflow_id, _ in ids:
        assert await lease_of(engine, workflow_id) == expires
        assert harness.runners[workflow_id].told == ["renewed"]
        assert harness.runners[workflow_id].lease_expires_at == expires
    assert await heartbeat_of(engine, harness.id) == harness.now


async def test_between_renewals_a_beat_only_asks_for_stop_requests(
    engine: Engine, create: CreateFn, queue: str, harness: Harness
) -> None:
    """After a renewal, the beats of the next quarter lease renew nothing and leave the
    daemon's row alone; they still pass a stop request on at once. A quarter lease after
    the renewal the next beat renews every lease again."""
    ids = [await held(engine, create, queue, harness) for _ in range(2)]
    for workflow_id, fence in ids:
        harness.runners[workflow_id] = FakeRunner(fence, harness.now + timedelta(seconds=LEASE))
    harness.later(IDLE_INTERVAL)
    assert (await harness.heartbeat.run_once()).renewed == 2
    renewed_until = harness.now + timedelta(seconds=LEASE)
    stopped_id = ids[0][0]
    async with engine.db.transaction() as conn:
        await conn.execute(
            workflows.update().where(workflows.c.id == stopped_id).values(requested="stop")
        )
    harness.now += timedelta(seconds=IDLE_INTERVAL - 1)
    harness.ticker.now += IDLE_INTERVAL - 1

    between = await harness.heartbeat.run_once()

    assert (between.renewed, between.stopped, between.refreshed) == (0, 1, False)
    assert harness.runners[stopped_id].told == ["renewed", "stop: stop requested"]
    for workflow_id, _ in ids:
        assert await lease_of(engine, workflow_id) == renewed_until
    assert await heartbeat_of(engine, harness.id) == harness.now - timedelta(
        seconds=IDLE_INTERVAL - 1
    )

    harness.now += timedelta(seconds=1)
    harness.ticker.now += 1
    due = await harness.heartbeat.run_once()

    assert (due.renewed, due.stopped, due.refreshed) == (2, 0, True)
    for workflow_id, _ in ids:
        assert await lease_of(engine, workflow_id) == harness.now + timedelta(seconds=LEASE)
    assert harness.runners[stopped_id].told.count("stop: stop requested") == 1


async def test_a_stop_is_passed_on_while_a_slow_renewal_runs_aside(
    engine: Engine, create: CreateFn, queue: str, harness: Harness
) -> None:
    """In the daemon's loop a due renewal runs beside the beats: while it waits (another
    session holds the daemon's row), the next beat still passes a stop request on; the
    renewal's outcome is taken by a beat once it is over, and the runner hears of the
    stop once."""
    if engine.db.backend == "sqlite":
        pytest.skip("SQLite: the other session's write lock would hold up every reader too")
    workflow_id, fence = await held(engine, create, queue, harness)
    runner = harness.runners[workflow_id] = FakeRunner(
        fence, harness.now + timedelta(seconds=LEASE)
    )
    async with engine.db.engine.connect() as blocker:
        await blocker.execute(
            select(daemons.c.id).where(daemons.c.id == harness.id).with_for_update()
        )
        harness.later(IDLE_INTERVAL)
        first = await harness.heartbeat.run_once(renew_aside=True)
        async with engine.db.transaction() as conn:
            await conn.execute(
                workflows.update().where(workflows.c.id == workflow_id).values(requested="stop")
            )
        harness.ticker.now += CONTROL
        second = await harness.heartbeat.run_once(renew_aside=True)
        assert (first.renewed, second.renewed, second.stopped) == (0, 0, 1)
        assert runner.told == ["stop: stop requested"]
        await blocker.rollback()

    renewed = 0
    for _ in range(500):
        harness.ticker.now += CONTROL
        renewed = (await harness.heartbeat.run_once(renew_aside=True)).renewed
        if renewed:
            break
        await asyncio.sleep(0.01)
    assert renewed == 1
    assert runner.told == ["stop: stop requested", "renewed"]
    await harness.heartbeat.stop_renewing()


async def test_a_stop_request_for_an_older_fence_is_not_passed_on(
    engine: Engine, create: CreateFn, queue: str, harness: Harness
) -> None:
    """Between renewals, a stop request read with a fence other than the runner's (the
    workflow changed hands) is not that runner's."""
    workflow_id, fence = await held(engine, create, queue, harness)
    runner = harness.runners[workflow_id] = FakeRunner(
        fence, harness.now + timedelta(seconds=LEASE)
    )
    harness.later(IDLE_INTERVAL)
    await harness.heartbeat.run_once()
    async with engine.db.transaction() as conn:
        await conn.execute(
            workflows.update()
            .where(workflows.c.id == workflow_id)
            .values(requested="stop", fence=fence + 1)
        )
    harness.ticker.now += CONTROL

    assert (await harness.heartbeat.run_once()).stopped == 0
    assert runner.told == ["renewed"]


async def test_only_leases_a_quarter_spent_are_renewed(
    engine: Engine, create: CreateFn, queue: str, harness: Harness
) -> None:
    """A beat renews the leases a quarter spent, not one just claimed (its lease is
    whole): ten thousand workflows claimed at once are not all renewed at their start."""
    (old_id, old_fence), (new_id, new_fence) = [
        await held(engine, create, queue, harness) for _ in range(2)
    ]
    harness.runners[old_id] = FakeRunner(old_fence, harness.now + timedelta(seconds=LEASE))
    harness.later(IDLE_INTERVAL)
    fresh = harness.now + timedelta(seconds=LEASE)
    harness.runners[new_id] = FakeRunner(new_fence, fresh)

    beat = await harness.heartbeat.run_once()

    assert beat.renewed == 1
    assert harness.runners[old_id].told == ["renewed"]
    assert harness.runners[new_id].told == []
    assert await lease_of(engine, old_id) == harness.now + timedelta(seconds=LEASE)


async def test_a_runner_whose_workflow_changed_hands_is_told_it_lost(
    engine: Engine, create: CreateFn, queue: str, harness: Harness
) -> None:
    """A runner whose fence is no longer the workflow's (claimed again meanwhile), or whose
    workflow another daemon holds, is told it lost it, not that its lease was renewed."""
    stale_id, fence = await held(engine, create, queue, harness)
    taken_id, taken_fence = await held(engine, create, queue, harness)
    async with engine.db.transaction() as conn:
        await conn.execute(
            workflows.update()
            .where(workflows.c.id == taken_id)
            .values(claimed_by="someone-else:1", fence=taken_fence + 1)
        )
    expires = harness.now + timedelta(seconds=LEASE)
    harness.runners[stale_id] = FakeRunner(fence - 1, expires)
    harness.runners[taken_id] = FakeRunner(taken_fence, expires)
    harness.later(IDLE_INTERVAL)

    beat = await harness.heartbeat.run_once()

    assert (beat.renewed, beat.lost) == (0, 2)
    assert harness.runners[stale_id].told == ["lose"]
    assert harness.runners[taken_id].told == ["lose"]


async def test_a_workflow_its_own_runner_ended_is_no_lost_lease(
    engine: Engine, create: CreateFn, queue: str, harness: Harness
) -> None:
    """A workflow that left `running` under its runner's own fence was ended by that
    runner (its completing commit landed, its reply may be lost): the beat neither renews
    it nor tells the runner it lost it; a workflow ended under another fence is lost."""
    own_id, own_fence = await held(engine, create, queue, harness)
    other_id, other_fence = await held(engine, create, queue, harness)
    async with engine.db.transaction() as conn:
        await conn.execute(
            workflows.update()
            .where(workflows.c.id == own_id)
            .values(state="completed", claimed_by=None, lease_expires_at=None)
        )
        await conn.execute(
            workflows.update()
            .where(workflows.c.id == other_id)
            .values(state="completed", claimed_by=None, fence=other_fence + 1)
        )
    expires = harness.now + timedelta(seconds=LEASE)
    harness.runners[own_id] = FakeRunner(own_fence, expires)
    harness.runners[other_id] = FakeRunner(other_fence, expires)
    harness.later(IDLE_INTERVAL)

    beat = await harness.heartbeat.run_once()

    assert (beat.renewed, beat.lost) == (0, 1)
    assert harness.runners[own_id].told == []
    assert harness.runners[own_id].lease_expires_at == expires
    assert harness.runners[other_id].told == ["lose"]


async def test_a_stop_request_is_passed_on_once(
    engine: Engine, create: CreateFn, queue: str, harness: Harness
) -> None:
    """A runner hears of its workflow's stop request once, however many beats see the
    request: a second stop would cut the step's graceful stop short."""
    workflow_id, fence = await held(engine, create, queue, harness)
    async with engine.db.transaction() as conn:
        await conn.execute(
            workflows.update().where(workflows.c.id == workflow_id).values(requested="stop")
        )
    runner = FakeRunner(fence, harness.now + timedelta(seconds=LEASE))
    harness.runners[workflow_id] = runner

    first = await harness.heartbeat.run_once()
    second = await harness.heartbeat.run_once()

    assert (first.stopped, second.stopped) == (1, 0)
    assert runner.told.count("stop: stop requested") == 1


async def test_a_new_runner_of_the_workflow_hears_of_the_stop_request(
    engine: Engine, create: CreateFn, queue: str, harness: Harness
) -> None:
    """The memory of who was told is per runner: a runner that took the workflow over
    from one already told is told too."""
    workflow_id, fence = await held(engine, create, queue, harness)
    async with engine.db.transaction() as conn:
        await conn.execute(
            workflows.update().where(workflows.c.id == workflow_id).values(requested="stop")
        )
    expires = harness.now + timedelta(seconds=LEASE)
    first = harness.runners[workflow_id] = FakeRunner(fence, expires)
    await harness.heartbeat.run_once()
    second = harness.runners[workflow_id] = FakeRunner(fence, expires)
    await harness.heartbeat.run_once()

    assert first.told.count("stop: stop requested") == 1
    assert second.told.count("stop: stop requested") == 1


def closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize(
    "scheme", ["mysql+asyncmy://root", "postgresql+asyncpg://root"], ids=["mariadb", "postgresql"]
)
async def test_leases_past_their_end_are_dropped_when_the_database_is_unreachable(
    scheme: str,
) -> None:
    """A beat that cannot reach the database still tells the runners whose lease ended on
    the daemon's own clock that they lost it (another owner may start), and no others."""
    db = Database(f"{scheme}@127.0.0.1:{closed_port()}/wfed")
    try:
        harness = Harness(db, "unreachable:1")
        ended = harness.runners[1] = FakeRunner(1, harness.now - timedelta(seconds=1))
        running = harness.runners[2] = FakeRunner(1, harness.now + timedelta(seconds=5))

        with pytest.raises(LOOP_ERRORS):
            await harness.heartbeat.run_once()

        assert ended.told == ["lose"]
        assert running.told == []
    finally:
        await db.dispose()


async def test_a_busy_beat_registers_a_deleted_daemon_row_again(
    engine: Engine, create: CreateFn, queue: str, harness: Harness
) -> None:
    """When the daemon's row is gone (pruned while it looked dead), the beat writes it
    again and still renews the leases."""
    workflow_id, fence = await held(engine, create, queue, harness)
    harness.runners[workflow_id] = FakeRunner(fence, harness.now + timedelta(seconds=LEASE))
    async with engine.db.transaction() as conn:
        await conn.execute(delete(daemons).where(daemons.c.id == harness.id))
    harness.later(IDLE_INTERVAL)

    beat = await harness.heartbeat.run_once()

    assert beat.renewed == 1
    assert await heartbeat_of(engine, harness.id) == harness.now


async def test_an_idle_daemon_refreshes_its_row_every_quarter_lease(
    engine: Engine, harness: Harness
) -> None:
    """Without workflows, beats write nothing until a quarter of the lease has passed
    since the row was last written; then one refreshes it."""
    registered = await heartbeat_of(engine, harness.id)
    harness.now += timedelta(seconds=5)

    harness.ticker.now += IDLE_INTERVAL - 0.5
    assert not (await harness.heartbeat.run_once()).refreshed
    assert await heartbeat_of(engine, harness.id) == registered

    harness.ticker.now += 0.5
    assert (await harness.heartbeat.run_once()).refreshed
    assert await heartbeat_of(engine, harness.id) == harness.now

    harness.ticker.now += CONTROL
    assert not (await harness.heartbeat.run_once()).refreshed


async def test_an_idle_daemon_registers_a_deleted_row_again(
    engine: Engine, harness: Harness
) -> None:
    """An idle daemon whose row was deleted registers it again at its next refresh."""
    async with engine.db.transaction() as conn:
        await conn.execute(delete(daemons).where(daemons.c.id == harness.id))
    harness.ticker.now += IDLE_INTERVAL

    assert (await harness.heartbeat.run_once()).refreshed
    assert await heartbeat_of(engine, harness.id) == harness.now


async def test_an_outage_is_tried_again_after_one_wait_of_at_most_a_quarter_lease(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every beat failing (a database away): the loop waits once between two tries,
    doubling from the control interval up to a quarter of the lease (10 s is the cap of
    the other loops), and each `heartbeat_failed` line says the wait that follows it. A
    longer wait could let a lease expire after the database came back."""
    waits: list[float] = []
    finished = asyncio.Event()

    async def fails(**_: object) -> None:
        raise TimeoutError("no answer")

    async def recorded_wait(_events: object, seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 8:
            finished.set()

    monkeypatch.setattr(harness.heartbeat, "run_once", fails)
    monkeypatch.setattr("wfed.daemon.heartbeat.wait_first", recorded_wait)
    with capture_logs() as logs:
        await harness.heartbeat.run(finished)

    quarter = LEASE / 4
    assert waits == [CONTROL, 2, 4, quarter, quarter, quarter, quarter, quarter]
    said = [line["retry_in"] for line in logs if line["event"] == "heartbeat_failed"]
    assert said == waits[1:]


async def test_an_outage_never_keeps_the_watchdog_waiting(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a systemd watchdog, the backoff of a failing heartbeat stops at the watchdog
    interval, each try telling systemd the loop is alive: a database away for any time
    must not get the daemon killed and restarted. Once a beat succeeds again, it says so."""
    waits: list[float] = []
    told: list[str] = []
    finished = asyncio.Event()
    watchdog = 2.5
    outcomes = iter([TimeoutError("no answer")] * 5 + [None])

    async def beat(**_: object) -> None:
        outcome = next(outcomes)
        if outcome is not None:
            raise outcome
        finished.set()

    async def recorded_wait(_events: object, seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(harness.heartbeat, "run_once", beat)
    monkeypatch.setattr("wfed.daemon.heartbeat.wait_first", recorded_wait)
    monkeypatch.setattr("wfed.daemon.sdnotify.watchdog_interval", lambda: watchdog)
    monkeypatch.setattr("wfed.daemon.sdnotify.notify", told.append)
    with capture_logs() as logs:
        await harness.heartbeat.run(finished)

    # The first wait, one after each failure (capped), then the usual one.
    assert waits == [CONTROL, 2, watchdog, watchdog, watchdog, watchdog, CONTROL]
    assert told == ["WATCHDOG=1"] * 6
    events = [line["event"] for line in logs]
    assert events == ["heartbeat_failed"] * 5 + ["heartbeat_recovered"]


async def test_a_renewal_that_met_an_outage_does_not_hold_the_next_beat_back(
    engine: Engine, create: CreateFn, queue: str, harness: Harness
) -> None:
    """A renewal run aside that failed while the database was away: the beat after it,
    with the database back, logs that failure and renews at once, instead of raising it
    and backing off while the leases run out."""
    workflow_id, fence = await held(engine, create, queue, harness)
    runner = harness.runners[workflow_id] = FakeRunner(
        fence, harness.now + timedelta(seconds=LEASE)
    )

    async def failed_renewal() -> None:
        raise TimeoutError("the database was away")

    harness.heartbeat._renewing = asyncio.create_task(failed_renewal())
    await asyncio.sleep(0)  # the task fails
    harness.later(IDLE_INTERVAL)
    with capture_logs() as logs:
        beat = await harness.heartbeat.run_once()
    assert beat.renewed == 1
    assert runner.told == ["renewed"]
    assert [line["event"] for line in logs if line["log_level"] == "warning"] == [
        "lease_renewal_failed"
    ]
