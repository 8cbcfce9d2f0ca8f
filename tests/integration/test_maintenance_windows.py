"""Maintenance windows on the real databases, driven by the daemon's own services — the
claimer, the runners it starts and the chore that resumes window-paused workflows — each
one `run_once` at a time on an injected clock (no waiting for a Saturday).

The windows are `sat 02:00-05:00 Europe/Paris`: 01:00 to 04:00 UTC in December. Every
test works in a queue of its own, whose workflows and events are deleted afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select, text
from stepmods import held

from wfed import Engine, InvalidDefinition, WorkflowState
from wfed.config import DaemonConfig
from wfed.daemon.claimer import Claimer
from wfed.daemon.window_resumer import WindowResumer
from wfed.engine.runner import WorkflowRunner
from wfed.engine.turn import Outcome, RunResult
from wfed.metrics import Metrics
from wfed.states import StepState
from wfed.steps.registry import StepRegistry
from wfed.store.rows import WorkflowRow
from wfed.store.schema import workflow_events, workflow_locks, workflows
from wfed.windows import QueueWindows

CreateFn = Callable[..., Awaitable[str]]

SPEC = "sat 02:00-05:00 Europe/Paris"
DAEMON = "windows-test:1"
FRIDAY_NOON = datetime(2026, 12, 4, 12, 0)
OPENING = datetime(2026, 12, 5, 1, 0)  # Saturday 02:00 in Paris
CLOSING = datetime(2026, 12, 5, 4, 0)  # Saturday 05:00 in Paris
NEXT_OPENING = datetime(2026, 12, 12, 1, 0)
STEP_MODULES = ["stepmods.basic", "stepmods.held"]


class FakeClock:
    """Naive UTC time that moves only when a test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class NoSlots:
    """The daemon's slots as the claimer sees them: none held; `run_once` is told how
    many are free."""

    def __init__(self) -> None:
        self.freed = asyncio.Event()

    def free(self) -> int:
        return 0

    def held(self) -> list[int]:
        return []


class Daemon:
    """What a daemon runs for windows, on `clock`: its claimer (runners made as the
    supervisor makes them) and the chore that resumes window-paused workflows."""

    def __init__(
        self,
        engine: Engine,
        queue: str | list[str],
        clock: FakeClock,
        queue_windows: dict[str, list[str]] | None = None,
    ) -> None:
        queues = [queue] if isinstance(queue, str) else queue
        self.engine = engine
        self.clock = clock
        self.queue_windows = QueueWindows.parse(queue_windows or {})
        self.registry = StepRegistry.from_modules(STEP_MODULES)
        self.claimed: list[WorkflowRow] = []
        monotonic = iter(range(1000, 10**6, 1000))
        self.claimer = Claimer(
            engine.db,
            DaemonConfig(queues=queues, poll_interval=1.0, lease=30.0),
            daemon_id=DAEMON,
            slots=NoSlots(),
            start=self.claimed.append,
            metrics=Metrics(),
            clock=clock,
            monotonic=lambda: float(next(monotonic)),
            queue_windows=self.queue_windows,
        )
        self.resumer = WindowResumer(
            engine.db, queues, self.queue_windows, daemon_id=DAEMON, clock=clock
        )

    async def claim(self) -> list[WorkflowRow]:
        """One claimer pass with slots to spare: what it claimed (pending work)."""
        self.claimed.clear()
        await self.claimer.run_once(8)
        return list(self.claimed)

    def runner(self, row: WorkflowRow) -> WorkflowRunner:
        return WorkflowRunner(
            self.engine.db,
            self.registry,
            row,
            actor=DAEMON,
            lease_seconds=30.0,
            clock=self.clock,
            queue_windows=self.queue_windows,
        )

    async def claim_and_run(self) -> list[RunResult]:
        """Claim, and run every claimed workflow's turn to its end."""
        return [await self.runner(row).run() for row in await self.claim()]


@pytest.fixture
async def engine(
    database_url: str, make_engine: Callable[..., Engine], clock: Callable[[], datetime]
) -> Engine:
    """The suite's `engine`, also knowing the step that runs until released."""
    return make_engine(database_url, clock=clock, step_modules=STEP_MODULES)


@pytest.fixture
async def queue(engine: Engine, new_name: Callable[..., str]) -> AsyncIterator[str]:
    """A queue of this test's own; its workflows and their events go afterwards."""
    name = new_name("windows")
    yield name
    async with engine.db.transaction() as conn:
        mine = workflows.c.queue.in_([name, f"{name}-maint"])
        names = select(workflows.c.name).where(mine)
        await conn.execute(
            delete(workflow_events).where(workflow_events.c.workflow_name.in_(names))
        )
        await conn.execute(delete(workflows).where(mine))


async def events(engine: Engine, name: str) -> list[Any]:
    return list(await engine.history(name))


async def test_a_queue_outside_its_windows_is_not_claimed_until_they_open(
    engine: Engine, create: CreateFn, queue: str
) -> None:
    """A queue whose windows are all closed is not claimed from; at the opening its
    workflow is claimed and runs to the end."""
    name = await create(["noop", "noop"], queue=queue)
    clock = FakeClock(FRIDAY_NOON)
    daemon = Daemon(engine, queue, clock, {queue: [SPEC]})

    assert await daemon.claim() == []
    clock.now = CLOSING
    assert await daemon.claim() == []
    assert (await engine.get(name)).state is WorkflowState.PENDING

    clock.now = OPENING
    results = await daemon.claim_and_run()
    assert [result.outcome for result in results] == [Outcome.COMPLETED]
    assert (await engine.get(name)).state is WorkflowState.COMPLETED


async def test_a_daemon_of_several_queues_claims_only_from_those_open(
    engine: Engine, create: CreateFn, queue: str
) -> None:
    """Of a daemon's queues, only those whose windows are open are claimed from, on the
    first pass and on the idle passes after it; the others' work waits for the opening."""
    maint = f"{queue}-maint"
    in_maint = await create(["noop"], queue=maint)
    in_default = await create(["noop"], queue=queue)
    clock = FakeClock(FRIDAY_NOON)
    daemon = Daemon(engine, [queue, maint], clock, {maint: [SPEC]})

    async def claimed_and_run() -> list[str]:
        rows = await daemon.claim()
        for row in rows:
            await daemon.runner(row).run()
        return [row.name for row in rows]

    assert await claimed_and_run() == [in_default]
    assert await claimed_and_run() == []
    late = await create(["noop"], queue=queue)
    assert await claimed_and_run() == [late]
    assert (await engine.get(in_maint)).state is WorkflowState.PENDING

    clock.now = OPENING
    assert await claimed_and_run() == [in_maint]


async def test_claimed_outside_its_own_windows_waits_pending_until_the_next_opening(
    engine: Engine,
    create: CreateFn,
    queue: str,
    make_engine: Callable[..., Engine],
    database_url: str,
) -> None:
    """A workflow claimed outside its own windows goes back to pending with run_after at
    the next opening, in the claim's first transaction, its step not started, with a
    `window_wait` event; it is not claimed again before the opening, and runs then."""
    name = await create(["noop", "noop"], queue=queue, windows=[SPEC])
    clock = FakeClock(FRIDAY_NOON)
    daemon = Daemon(engine, queue, clock)

    results = await daemon.claim_and_run()

    assert [result.outcome for result in results] == [Outcome.RELEASED]
    workflow = await engine.get(name)
    assert workflow.state is WorkflowState.PENDING
    assert workflow.row.run_after == OPENING
    assert workflow.row.claimed_by is None
    assert [(s.state, s.attempts) for s in workflow.steps] == [(StepState.PENDING, 0)] * 2
    wait = (await events(engine, name))[-1]
    assert wait.kind == "window_wait"
    assert wait.actor == DAEMON
    assert wait.detail["opens_at"] == "2026-12-05T01:00:00.000Z"
    assert "2026-12-05 01:00 UTC" in (wait.reason or "")

    # `show` says when the window opens (from the Engine's clock).
    shown = await make_engine(database_url, clock=clock).get(name)
    document = shown.to_json()
    assert document["windows"] == [SPEC]
    assert document["window_open"] is False
    assert document["window_opens_at"] == "2026-12-05T01:00:00.000Z"

    clock.now = OPENING - timedelta(seconds=1)
    assert await daemon.claim() == []
    clock.now = OPENING
    assert [r.outcome for r in await daemon.claim_and_run()] == [Outcome.COMPLETED]


async def test_waiting_for_its_window_holds_no_concurrency_key(
    engine: Engine, create: CreateFn, queue: str
) -> None:
    """A workflow claimed outside its windows before any step ran gives back the key
    slots its claim took, in the same transaction: another workflow on the same key
    runs meanwhile."""
    key = f"cluster:{queue}"
    waiting = await create(["noop"], queue=queue, windows=[SPEC], locks=[key], priority=5)
    daemon = Daemon(engine, queue, FakeClock(FRIDAY_NOON))
    assert [r.outcome for r in await daemon.claim_and_run()] == [Outcome.RELEASED]
    async with engine.db.transaction() as conn:
        held = (
            await conn.execute(
                select(workflow_locks.c.lock_key).where(workflow_locks.c.lock_key == key)
            )
        ).all()
    assert held == []

    other = await create(["noop"], queue=queue, locks=[key])
    assert [r.outcome for r in await daemon.claim_and_run()] == [Outcome.COMPLETED]
    assert (await engine.get(other)).state is WorkflowState.COMPLETED
    assert (await engine.get(waiting)).state is WorkflowState.PENDING


async def test_a_closing_window_pauses_after_the_current_step_and_the_next_opening_resumes(
    engine: Engine, create: CreateFn, queue: str
) -> None:
    """The window closes while step 0 runs: the step runs to its end, step 1 does not
    start, the workflow is paused naming the window (`window_paused` set). The chore
    leaves it paused until the next opening, then resumes it (an event by the daemon),
    and it runs on from step 1 without running step 0 again."""
    key = f"{queue}-held"
    started, release = held.hold(key)
    name = await create(
        [{"step": "held", "args": {"key": key}}, "noop"], queue=queue, windows=[SPEC]
    )
    clock = FakeClock(CLOSING - timedelta(seconds=10))
    daemon = Daemon(engine, queue, clock)
    [row] = await daemon.claim()
    turn = asyncio.create_task(daemon.runner(row).run())
    await started.wait()

    clock.now = CLOSING + timedelta(seconds=1)
    release.set()
    result = await turn

    assert result.outcome is Outcome.PAUSED
    assert held.FINISHED[key] == 1
    workflow = await engine.get(name)
    assert workflow.state is WorkflowState.PAUSED
    assert workflow.row.window_paused == SPEC
    assert workflow.current_step == 1
    assert [s.state for s in workflow.steps] == [StepState.COMPLETED, StepState.PENDING]
    assert workflow.steps[1].attempts == 0
    paused = (await events(engine, name))[-1]
    assert paused.kind == "paused"
    assert paused.actor == DAEMON
    assert f"maintenance window {SPEC!r} closed" in (paused.reason or "")
    assert workflow.halt_reason is not None
    assert SPEC in workflow.halt_reason

    clock.now = CLOSING + timedelta(hours=1)
    done = await daemon.resumer.run_once()
    assert done.resumed == []
    assert done.next_opening == NEXT_OPENING
    assert (await engine.get(name)).state is WorkflowState.PAUSED

    clock.now = NEXT_OPENING
    done = await daemon.resumer.run_once()
    assert done.resumed == [name]
    resumed = await engine.get(name)
    assert resumed.state is WorkflowState.PENDING
    assert resumed.row.window_paused is None
    event = (await events(engine, name))[-1]
    assert (event.kind, event.actor, event.detail) == ("resumed", DAEMON, {"window": SPEC})

    assert [r.outcome for r in await daemon.claim_and_run()] == [Outcome.COMPLETED]
    assert held.FINISHED[key] == 1


async def test_an_operators_pause_of_a_window_paused_workflow_keeps_it_paused(
    engine: Engine, create: CreateFn, queue: str
) -> None:
    """`pause` on a workflow a window's closing paused makes it the operator's pause
    (event with actor and reason, `window_paused` cleared): the next opening leaves it
    paused, and only `resume` runs it again."""
    name = await create(["noop", "noop"], queue=queue, windows=[SPEC])
    clock = FakeClock(CLOSING)
    daemon = Daemon(engine, queue, clock)
    await _window_paused(engine, name, SPEC)

    await engine.pause(name, reason="keep it for the change freeze")

    workflow = await engine.get(name)
    assert workflow.state is WorkflowState.PAUSED
    assert workflow.row.window_paused is None
    event = (await events(engine, name))[-1]
    assert (event.kind, event.actor, event.reason) == (
        "paused",
        "tester@host",
        "keep it for the change freeze",
    )
    clock.now = NEXT_OPENING
    assert (await daemon.resumer.run_once()).resumed == []
    assert (await engine.get(name)).state is WorkflowState.PAUSED


async def test_an_operators_resume_outside_the_window_waits_for_the_opening(
    engine: Engine, create: CreateFn, queue: str
) -> None:
    """An operator's resume of a window-paused workflow clears `window_paused`; outside
    its window the claim hands it back until the next opening."""
    name = await create(["noop"], queue=queue, windows=[SPEC])
    clock = FakeClock(CLOSING + timedelta(hours=1))
    daemon = Daemon(engine, queue, clock)
    await _window_paused(engine, name, SPEC)

    await engine.resume(name, reason="ready")

    assert (await engine.get(name)).row.window_paused is None
    assert [r.outcome for r in await daemon.claim_and_run()] == [Outcome.RELEASED]
    assert (await engine.get(name)).row.run_after == NEXT_OPENING


async def test_a_pause_request_waiting_when_the_window_closes_is_the_operators(
    engine: Engine, create: CreateFn, queue: str
) -> None:
    """An operator asked a running workflow to pause, and its window closed during the
    same step: the operator's pause is honoured (`window_paused` stays NULL, the event
    names the operator), so the next opening does not resume it."""
    key = f"{queue}-held"
    started, release = held.hold(key)
    name = await create(
        [{"step": "held", "args": {"key": key}}, "noop"], queue=queue, windows=[SPEC]
    )
    clock = FakeClock(CLOSING - timedelta(seconds=10))
    daemon = Daemon(engine, queue, clock)
    [row] = await daemon.claim()
    turn = asyncio.create_task(daemon.runner(row).run())
    await started.wait()

    await engine.pause(name, reason="hold on")
    clock.now = CLOSING + timedelta(seconds=1)
    release.set()

    assert (await turn).outcome is Outcome.PAUSED
    workflow = await engine.get(name)
    assert workflow.state is WorkflowState.PAUSED
    assert workflow.row.window_paused is None
    paused = (await events(engine, name))[-1]
    assert paused.kind == "paused"
    assert paused.detail.get("requested_by") == "tester@host"
    assert paused.reason == "hold on"
    clock.now = NEXT_OPENING
    assert (await daemon.resumer.run_once()).resumed == []


async def test_clearing_the_windows_of_a_waiting_workflow_lets_it_run_now(
    engine: Engine, create: CreateFn, queue: str
) -> None:
    """An operator clears the windows of a workflow handed back until its window opens:
    its wait (`run_after`) goes with them, recorded with the operator, and the next
    claim runs it."""
    name = await create(["noop"], queue=queue, windows=[SPEC])
    daemon = Daemon(engine, queue, FakeClock(FRIDAY_NOON))
    assert [r.outcome for r in await daemon.claim_and_run()] == [Outcome.RELEASED]

    await engine.set_windows(name, [], reason="approved outside the window")

    workflow = await engine.get(name)
    assert (workflow.row.windows, workflow.row.run_after) == (None, None)
    event = (await events(engine, name))[-1]
    assert (event.kind, event.actor, event.reason) == (
        "windows_set",
        "tester@host",
        "approved outside the window",
    )
    assert event.detail == {"windows": [], "before": [SPEC]}
    assert [r.outcome for r in await daemon.claim_and_run()] == [Outcome.COMPLETED]


async def test_new_windows_of_a_window_paused_workflow_decide_its_resumption(
    engine: Engine, create: CreateFn, queue: str
) -> None:
    """A window-paused workflow given windows open now is resumed by the next pass of
    the chore; a spec that cannot be read is refused, naming it."""
    name = await create(["noop"], queue=queue, windows=[SPEC])
    clock = FakeClock(CLOSING + timedelta(hours=1))
    daemon = Daemon(engine, queue, clock)
    await _window_paused(engine, name, SPEC)
    assert (await daemon.resumer.run_once()).resumed == []

    await engine.set_windows(name, ["daily 00:00-24:00"])

    assert (await engine.get(name)).row.window_paused == SPEC
    assert (await daemon.resumer.run_once()).resumed == [name]
    with pytest.raises(InvalidDefinition, match="cannot read window 'whenever'"):
        await engine.set_windows(name, ["whenever"])


async def test_own_windows_that_never_meet_the_queues_are_an_error(
    engine: Engine, create: CreateFn, queue: str
) -> None:
    """Own windows that never overlap the queue's: claimed in the queue's window, the
    workflow goes to error naming both, rather than waiting for ever."""
    name = await create(["noop"], queue=queue, windows=[SPEC])
    daemon = Daemon(
        engine, queue, FakeClock(datetime(2026, 12, 5, 10, 30)), {queue: ["sat 10:00-11:00"]}
    )

    [result] = await daemon.claim_and_run()

    assert result.outcome is Outcome.ERROR
    failed = await engine.get(name)
    assert failed.state is WorkflowState.ERROR
    assert "never overlap its queue's" in (failed.last_error or "")
    assert SPEC in (failed.last_error or "")


@pytest.mark.parametrize(
    ("windows", "names"),
    [
        ("sat 02:00-05:00", "must be a list of strings"),
        ({"sat": "02:00"}, "must be a list of strings"),
        (42, "must be a list of strings"),
        (["every saturday"], "cannot read window 'every saturday'"),
        (["sat 02:00-05:00 Mars/Olympus"], "unknown time zone 'Mars/Olympus'"),
        ([SPEC] * 5000, "5000 windows given; at most 32"),
        (["sat 02:00-05:00 " + "x" * 5000], "longer than 100 characters"),
    ],
)
async def test_hostile_windows_send_that_workflow_alone_to_error(
    engine: Engine, create: CreateFn, queue: str, windows: Any, names: str
) -> None:
    """A row whose `windows` cannot be read (written by plain SQL) goes to error with a
    short last_error naming the problem; a good workflow claimed with it runs."""
    good = await create(["noop"], queue=queue)
    bad = await create(["noop"], queue=queue)
    async with engine.db.transaction() as conn:
        await conn.execute(
            workflows.update().where(workflows.c.name == bad).values(windows=windows)
        )
    daemon = Daemon(engine, queue, FakeClock(OPENING))

    await daemon.claim_and_run()

    failed = await engine.get(bad)
    assert failed.state is WorkflowState.ERROR
    assert (failed.last_error or "").startswith("invalid workflow: windows: ")
    assert names in (failed.last_error or "")
    assert len(failed.last_error or "") < 400
    assert (await engine.get(good)).state is WorkflowState.COMPLETED


async def test_windows_that_are_not_json_send_the_workflow_to_error(
    engine: Engine, create: CreateFn, queue: str, database_url: str
) -> None:
    """SQLite takes any text into a JSON column: a `windows` that is not JSON is named as
    such in last_error (the other databases refuse it at the INSERT)."""
    if not database_url.startswith("sqlite"):
        pytest.skip("only SQLite stores text that is not JSON in a JSON column")
    name = await create(["noop"], queue=queue)
    async with engine.db.transaction() as conn:
        await conn.execute(
            text("UPDATE workflows SET windows = :bad WHERE name = :name"),
            {"bad": "[sat 02:00-05:00", "name": name},
        )
    await Daemon(engine, queue, FakeClock(OPENING)).claim_and_run()
    failed = await engine.get(name)
    assert failed.state is WorkflowState.ERROR
    assert (failed.last_error or "").startswith(
        "invalid workflow: windows: text that is not valid JSON ('[sat 02:00-05:00')"
    )


async def test_create_checks_and_stores_windows(
    engine: Engine, create: CreateFn, queue: str
) -> None:
    """`create_workflow(windows=…)` refuses a spec it cannot read, naming it, and stores
    the ones it can as given."""
    with pytest.raises(InvalidDefinition, match=r"windows: .*unknown time zone 'Moon/Base'"):
        await create(["noop"], queue=queue, windows=["sat 02:00-05:00 Moon/Base"])
    name = await create(["noop"], queue=queue, windows=[SPEC, "daily 22:00-02:00 UTC"])
    assert (await engine.get(name)).row.windows == [SPEC, "daily 22:00-02:00 UTC"]


async def _window_paused(engine: Engine, name: str, window: str) -> None:
    """Put `name` in the state a window's closing leaves it in (paused, window named)."""
    async with engine.db.transaction() as conn:
        await conn.execute(
            workflows.update()
            .where(workflows.c.name == name)
            .values(state=WorkflowState.PAUSED.value, window_paused=window)
        )
