"""Schedules on the real databases: the operators' operations through the Engine, and
firing through the daemon's scheduler (`Scheduler.run_once`) with an injected clock —
on time, caught up once or skipped after missed ticks, across daylight-saving nights,
and by several schedulers at once, each on its own connections, with every tick
enqueued exactly once."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from wfed import Engine, WorkflowState
from wfed.config import SchedulesConfig, parse_config
from wfed.daemon.scheduler import RECHECK, Scheduler
from wfed.engine.schedule_firing import Fired
from wfed.engine.schedule_times import InvalidSchedule
from wfed.engine.schedules import ScheduleExists, ScheduleNotFound
from wfed.errors import InvalidDefinition
from wfed.metrics import Metrics
from wfed.steps.registry import StepRegistry
from wfed.store import schedules as schedule_store
from wfed.store.database import Database
from wfed.store.schema import schedule_fires, schedules, workflow_events, workflows

PARIS = "Europe/Paris"
# As tests/integration/conftest.py's (not imported by name: another directory's conftest
# may hold that module name when several directories are collected together).
STEP_MODULES = ["stepmods.basic"]
EngineFactory = Callable[..., Engine]


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class SettableClock:
    """A clock that reads what the test set: naive UTC."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> SettableClock:  # replaces the integration tests' real clock
    """The engine's and the schedulers' clock, set by each test."""
    return SettableClock(datetime(2026, 5, 1, 12, 0, 0))


@pytest.fixture
async def scheduled(engine: Engine) -> AsyncIterator[Callable[[], str]]:
    """`scheduled()`: a new schedule name. After the test, the schedules of those names
    are removed, with their fired ticks and the workflows and events they made."""
    names: list[str] = []

    def new() -> str:
        name = unique_name("sched")
        names.append(name)
        return name

    yield new
    async with engine.db.transaction() as conn:
        for name in names:
            made = f"{name}-%"
            await conn.execute(
                delete(workflow_events).where(workflow_events.c.workflow_name.like(made))
            )
            await conn.execute(delete(workflows).where(workflows.c.name.like(made)))
            await schedule_store.schedule_delete(conn, name)


def scheduler(
    db: Database,
    clock: SettableClock,
    daemon_id: str = "daemon-a",
    *,
    catchup: str = "once",
    registry: StepRegistry | None = None,
) -> Scheduler:
    return Scheduler(
        db,
        registry or StepRegistry.from_modules(STEP_MODULES),
        SchedulesConfig(catchup=catchup),  # type: ignore[arg-type]
        daemon_id=daemon_id,
        interval=1.0,
        lease=30.0,
        metrics=Metrics(),
        clock=clock,
    )


async def made_by(engine: Engine, name: str) -> list[str]:
    """The workflows of schedule `name`, by name."""
    async with engine.db.transaction() as conn:
        found = await conn.scalars(
            select(workflows.c.name).where(workflows.c.name.like(f"{name}-%")).order_by("name")
        )
        return list(found.all())


async def fired_ticks(engine: Engine, name: str) -> list[datetime]:
    async with engine.db.transaction() as conn:
        row = await schedule_store.schedule_get(conn, name)
        assert row is not None
        return [tick for tick, _ in await schedule_store.schedule_fires_of(conn, row.id)]


async def column_of(engine: Engine, workflow: str, column: str) -> Any:
    """One column of a workflow's row (`locks`, `windows`)."""
    async with engine.db.transaction() as conn:
        return await conn.scalar(select(workflows.c[column]).where(workflows.c.name == workflow))


async def schedule_row(engine: Engine, name: str) -> schedule_store.ScheduleRow:
    async with engine.db.transaction() as conn:
        row = await schedule_store.schedule_get(conn, name)
    assert row is not None
    return row


# -- the operators' operations -------------------------------------------------------


async def test_add_list_pause_resume_remove(
    engine: Engine, clock: SettableClock, scheduled: Callable[[], str], new_name: Any
) -> None:
    """A schedule is added active with its first tick after now (UTC of the local time),
    listed, paused and resumed by a named actor (resuming starts from the next tick
    after now), and removed."""
    name = scheduled()
    queue = new_name("q")
    view = await engine.add_schedule(
        name, "0 2 * * *", PARIS, steps=["noop"], context={"k": 1}, queue=queue, priority=3
    )
    assert view.row.state == "active"
    assert view.row.next_fire_at == datetime(2026, 5, 2, 0, 0)  # 02:00 CEST
    assert view.row.created_by == "tester@host"
    document = {v.name: v.to_json() for v in await engine.schedules()}[name]
    assert document["next_fire_local"] == "2026-05-02T02:00:00+02:00"
    assert (document["queue"], document["priority"], document["steps"]) == (queue, 3, 1)
    assert document["catchup"] == "once"

    paused = await engine.pause_schedule(name)
    assert (paused.row.state, paused.row.updated_by) == ("paused", "tester@host")
    clock.now = datetime(2026, 5, 4, 12, 0)
    resumed = await engine.resume_schedule(name)
    assert resumed.row.state == "active"
    assert resumed.row.next_fire_at == datetime(2026, 5, 5, 0, 0)

    await engine.remove_schedule(name)
    with pytest.raises(ScheduleNotFound):
        await engine.schedule(name)
    with pytest.raises(ScheduleNotFound):
        await engine.remove_schedule(name)


async def test_the_configured_catchup_reaches_an_engine_made_from_the_config(
    database_url: str, scheduled: Callable[[], str]
) -> None:
    """`Engine.from_config` gives the Python API the `[schedules] catchup` setting: a
    schedule that names no policy of its own follows it."""
    config = parse_config(
        {
            "database": {"url": database_url},
            "steps": {"modules": ["wfed.examples"]},
            "schedules": {"catchup": "skip"},
        }
    )
    async with Engine.from_config(config=config) as configured:
        name = scheduled()
        view = await configured.add_schedule(name, "0 2 * * *", PARIS, steps=["sleep"])
        assert view.catchup == "skip"
        assert [v.catchup for v in await configured.schedules() if v.name == name] == ["skip"]


async def test_next_ticks_in_local_time_and_utc(
    engine: Engine, clock: SettableClock, scheduled: Callable[[], str]
) -> None:
    """`next_ticks` gives the coming runs in the schedule's zone and in UTC, across the
    spring-forward day (02:30 does not exist: 03:00 CEST)."""
    clock.now = datetime(2026, 3, 27, 12, 0)
    name = scheduled()
    await engine.add_schedule(name, "30 2 * * *", PARIS, steps=["noop"])
    ticks = await engine.next_ticks(name, 3)
    assert [t.to_json() for t in ticks] == [
        {"utc": "2026-03-28T01:30:00.000Z", "local": "2026-03-28T02:30:00+01:00"},
        {"utc": "2026-03-29T01:00:00.000Z", "local": "2026-03-29T03:00:00+02:00"},
        {"utc": "2026-03-30T00:30:00.000Z", "local": "2026-03-30T02:30:00+02:00"},
    ]


@pytest.mark.parametrize(
    ("cron", "timezone", "options", "error", "message"),
    [
        ("0 2 * *", PARIS, {"steps": ["noop"]}, InvalidSchedule, "5 fields"),
        ("0 2 * * *", "Paris", {"steps": ["noop"]}, InvalidSchedule, "unknown time zone"),
        ("0 2 * * *", PARIS, {"steps": ["no_such_step"]}, InvalidDefinition, "unknown step"),
        ("0 2 * * *", PARIS, {"steps": []}, InvalidDefinition, "empty list"),
        ("0 2 * * *", PARIS, {}, InvalidSchedule, "either steps or a runbook"),
        ("0 2 * * *", PARIS, {"steps": ["noop"], "catchup": "all"}, InvalidSchedule, "catchup"),
        ("0 2 * * *", PARIS, {"steps": ["noop"], "locks": [""]}, InvalidDefinition, "locks"),
        (
            "0 2 * * *",
            PARIS,
            {"steps": ["noop"], "windows": ["someday"]},
            InvalidDefinition,
            "wind",
        ),
    ],
)
async def test_a_bad_schedule_is_refused_and_nothing_written(
    engine: Engine,
    scheduled: Callable[[], str],
    cron: str,
    timezone: str,
    options: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    """A bad expression, zone, definition or policy is refused naming it; no row."""
    name = scheduled()
    with pytest.raises(error, match=message):
        await engine.add_schedule(name, cron, timezone, **options)
    with pytest.raises(ScheduleNotFound):
        await engine.schedule(name)


async def test_a_duplicate_name_is_refused(engine: Engine, scheduled: Callable[[], str]) -> None:
    """Schedule names are unique: a second `add` of a name is ScheduleExists."""
    name = scheduled()
    await engine.add_schedule(name, "0 2 * * *", steps=["noop"])
    with pytest.raises(ScheduleExists):
        await engine.add_schedule(name, "0 3 * * *", steps=["noop"])
    assert (await engine.schedule(name)).row.cron == "0 2 * * *"


RUNBOOK = """
name = "ignored-{{key}}"
queue = "{queue}"
priority = 4
locks = ["cluster:{{key}}"]
windows = ["sat 02:00-05:00 Europe/Paris"]

[params.key]
type = "string"

[context]
key = "{{key}}"

[[steps]]
step = "noop"
"""


async def test_a_runbook_is_rendered_at_add_and_its_provenance_rides_each_tick(
    engine: Engine,
    clock: SettableClock,
    scheduled: Callable[[], str],
    tmp_path: Path,
    new_name: Any,
) -> None:
    """A runbook schedule holds the runbook rendered with its parameters; each workflow it
    enqueues records the file's path and sha256, the parameters and the schedule."""
    path = tmp_path / "nightly.toml"
    path.write_text(RUNBOOK.format(queue=new_name("q")))
    name = scheduled()
    view = await engine.add_schedule(
        name, "0 2 * * *", PARIS, runbook=str(path), params={"key": "v"}
    )
    template = view.template
    assert template is not None
    assert (template.steps, template.context, template.priority) == (
        [{"step": "noop"}],
        {"key": "v"},
        4,
    )
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    assert template.provenance == {
        "runbook": str(path.resolve()),
        "sha256": sha256,
        "params": {"key": "v"},
    }

    clock.now = datetime(2026, 5, 2, 0, 0, 3)
    fired = await scheduler(engine.db, clock).run_once()
    assert fired.enqueued == [f"{name}-20260502T0000Z"]
    workflow = await engine.get(fired.enqueued[0])
    assert (workflow.context, workflow.row.priority) == ({"key": "v"}, 4)
    assert await column_of(engine, workflow.name, "locks") == ["cluster:v"]
    assert await column_of(engine, workflow.name, "windows") == ["sat 02:00-05:00 Europe/Paris"]
    created = (await engine.history(workflow.name))[0]
    assert created.kind == "created"
    assert created.actor == "daemon-a"
    assert created.detail["runbook"] == str(path.resolve())
    assert created.detail["sha256"] == sha256
    assert created.detail["params"] == {"key": "v"}
    assert created.detail["schedule"] == name
    assert created.detail["tick_at"] == "2026-05-02T00:00:00Z"


# -- firing ------------------------------------------------------------------------------


async def test_a_due_tick_fires_once_and_the_schedule_moves_on(
    engine: Engine, clock: SettableClock, scheduled: Callable[[], str], new_name: Any
) -> None:
    """Before its tick nothing fires; at it, one pending workflow named after the tick,
    with its steps and concurrency keys, and a `schedule_fires` row; polling again
    enqueues nothing more."""
    name = scheduled()
    queue = new_name("q")
    await engine.add_schedule(
        name,
        "0 2 * * *",
        PARIS,
        steps=["noop", "noop"],
        queue=queue,
        locks=[f"{name}:web", f"{name}:db"],
        windows=["mon-fri 01:00-06:00 UTC"],
    )
    service = scheduler(engine.db, clock)

    clock.now = datetime(2026, 5, 1, 23, 59, 59)
    assert (await service.run_once()).enqueued == []
    clock.now = datetime(2026, 5, 2, 0, 0, 1)
    assert (await service.run_once()).enqueued == [f"{name}-20260502T0000Z"]
    assert (await service.run_once()).enqueued == []

    workflow = await engine.get(f"{name}-20260502T0000Z")
    assert workflow.state is WorkflowState.PENDING
    assert await column_of(engine, workflow.name, "locks") == [f"{name}:db", f"{name}:web"]
    assert await column_of(engine, workflow.name, "windows") == ["mon-fri 01:00-06:00 UTC"]
    assert workflow.row.queue == queue
    assert [step.step for step in workflow.steps] == ["noop", "noop"]
    assert await fired_ticks(engine, name) == [datetime(2026, 5, 2, 0, 0)]
    row = await schedule_row(engine, name)
    assert row.last_fired_at == datetime(2026, 5, 2, 0, 0)
    assert row.next_fire_at == datetime(2026, 5, 3, 0, 0)
    assert await made_by(engine, name) == [f"{name}-20260502T0000Z"]


async def test_a_poll_says_when_the_next_tick_is_and_the_scheduler_sleeps_till_then(
    engine: Engine, clock: SettableClock, scheduled: Callable[[], str]
) -> None:
    """A poll with nothing due tells when the next tick comes; the scheduler waits until
    then (at least its interval, at most RECHECK); a poll that fired asks to look again
    at once. An idle daemon so costs a query every RECHECK seconds, not every second."""
    name = scheduled()
    await engine.add_schedule(name, "0 2 * * *", PARIS, steps=["noop"])
    service = scheduler(engine.db, clock)
    tick = datetime(2026, 5, 2, 0, 0)

    clock.now = tick - timedelta(seconds=5)
    before = await service.run_once()
    assert before.enqueued == []
    assert before.next_due is not None
    assert before.next_due <= tick
    assert service.wait_after(before) <= 5.0
    clock.now = tick + timedelta(seconds=1)
    at = await service.run_once()
    assert at.enqueued == [f"{name}-20260502T0000Z"]
    assert at.next_due == clock.now
    assert service.wait_after(at) == service.interval
    assert service.wait_after(Fired()) == RECHECK
    assert service.wait_after(Fired(next_due=clock.now + timedelta(hours=1))) == RECHECK
    assert service.wait_after(Fired(next_due=clock.now + timedelta(seconds=7))) == 7.0


async def test_catchup_once_fires_only_the_latest_missed_tick(
    engine: Engine, clock: SettableClock, scheduled: Callable[[], str]
) -> None:
    """Three nightly ticks missed (no daemon ran): `once` enqueues the latest one only,
    and the schedule goes on from the next night."""
    name = scheduled()
    await engine.add_schedule(name, "0 2 * * *", PARIS, steps=["noop"], queue=name)
    clock.now = datetime(2026, 5, 4, 9, 0)
    fired = await scheduler(engine.db, clock, catchup="once").run_once()
    assert fired.enqueued == [f"{name}-20260504T0000Z"]
    assert await made_by(engine, name) == [f"{name}-20260504T0000Z"]
    assert (await schedule_row(engine, name)).next_fire_at == datetime(2026, 5, 5, 0, 0)


async def test_catchup_skip_fires_no_missed_tick(
    engine: Engine, clock: SettableClock, scheduled: Callable[[], str]
) -> None:
    """With `skip` (the schedule's own policy over the daemon's `once`), missed ticks
    enqueue nothing and the schedule goes on from the next tick to come; that one fires."""
    name = scheduled()
    await engine.add_schedule(name, "0 2 * * *", PARIS, steps=["noop"], queue=name, catchup="skip")
    clock.now = datetime(2026, 5, 4, 9, 0)
    service = scheduler(engine.db, clock, catchup="once")
    fired = await service.run_once()
    assert (fired.enqueued, fired.skipped) == ([], 1)
    assert (await schedule_row(engine, name)).next_fire_at == datetime(2026, 5, 5, 0, 0)
    clock.now = datetime(2026, 5, 5, 0, 0, 2)
    assert (await service.run_once()).enqueued == [f"{name}-20260505T0000Z"]


async def test_a_tick_late_within_the_grace_is_on_time_even_with_skip(
    engine: Engine, clock: SettableClock, scheduled: Callable[[], str]
) -> None:
    """A tick found 30 s late (a poll, a busy database) is not missed: it fires under
    `skip` too."""
    name = scheduled()
    await engine.add_schedule(name, "0 2 * * *", PARIS, steps=["noop"], queue=name)
    clock.now = datetime(2026, 5, 2, 0, 0, 30)
    fired = await scheduler(engine.db, clock, catchup="skip").run_once()
    assert fired.enqueued == [f"{name}-20260502T0000Z"]


async def test_a_paused_schedule_fires_nothing_and_resumes_from_now(
    engine: Engine, clock: SettableClock, scheduled: Callable[[], str]
) -> None:
    """Paused, a schedule's ticks pass without firing; resumed, it fires from the next
    tick after the resume (the pause's ticks are not caught up)."""
    name = scheduled()
    await engine.add_schedule(name, "0 2 * * *", PARIS, steps=["noop"], queue=name)
    await engine.pause_schedule(name)
    service = scheduler(engine.db, clock)
    clock.now = datetime(2026, 5, 3, 9, 0)
    assert (await service.run_once()).enqueued == []
    await engine.resume_schedule(name)
    assert (await service.run_once()).enqueued == []
    clock.now = datetime(2026, 5, 4, 0, 0, 1)
    assert (await service.run_once()).enqueued == [f"{name}-20260504T0000Z"]


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        # Spring forward: 02:30 does not exist on 2026-03-29; it fires at 03:00 CEST.
        (datetime(2026, 3, 28, 22, 0), datetime(2026, 3, 29, 3, 0), "20260329T0100Z"),
        # Fall back: 02:30 happens twice on 2026-10-25; it fires at the first (CEST).
        (datetime(2026, 10, 24, 22, 0), datetime(2026, 10, 25, 4, 0), "20261025T0030Z"),
    ],
    ids=["spring-forward", "fall-back"],
)
async def test_a_daylight_saving_night_fires_the_job_once(
    engine: Engine,
    clock: SettableClock,
    scheduled: Callable[[], str],
    start: datetime,
    end: datetime,
    expected: str,
) -> None:
    """A 02:30 Paris job, polled every five minutes through a night when the clocks
    change, enqueues exactly one workflow that night, at the documented instant."""
    clock.now = start
    name = scheduled()
    await engine.add_schedule(name, "30 2 * * *", PARIS, steps=["noop"], queue=name)
    service = scheduler(engine.db, clock)
    enqueued: list[str] = []
    while clock.now <= end:
        enqueued += (await service.run_once()).enqueued
        clock.now += timedelta(minutes=5)
    assert enqueued == [f"{name}-{expected}"]
    assert await made_by(engine, name) == [f"{name}-{expected}"]


async def test_a_schedule_inserted_by_sql_starts_at_its_next_tick(
    engine: Engine, clock: SettableClock, scheduled: Callable[[], str]
) -> None:
    """A schedule inserted with plain SQL (no next tick) gets its next tick from the first
    daemon that sees it, without firing; the tick then fires as any other."""
    name = scheduled()
    async with engine.db.transaction() as conn:
        await conn.execute(
            insert(schedules).values(
                name=name,
                cron="*/15 * * * *",
                template={"steps": ["noop"], "queue": name},
                created_by="dba",
            )
        )
    service = scheduler(engine.db, clock)
    clock.now = datetime(2026, 5, 1, 12, 7)
    assert (await service.run_once()).enqueued == []
    assert (await schedule_row(engine, name)).next_fire_at == datetime(2026, 5, 1, 12, 15)
    clock.now = datetime(2026, 5, 1, 12, 15, 1)
    assert (await service.run_once()).enqueued == [f"{name}-20260501T1215Z"]


async def test_a_tick_whose_workflow_name_is_taken_is_passed_over(
    engine: Engine, clock: SettableClock, scheduled: Callable[[], str]
) -> None:
    """If a workflow already has the tick's name, the tick is skipped (not retried at
    every poll) and the next one fires."""
    name = scheduled()
    await engine.add_schedule(name, "0 * * * *", "UTC", steps=["noop"], queue=name)
    await engine.create_workflow(f"{name}-20260501T1300Z", None, ["noop"], queue=name)
    service = scheduler(engine.db, clock)
    clock.now = datetime(2026, 5, 1, 13, 0, 1)
    fired = await service.run_once()
    assert (fired.enqueued, fired.skipped) == ([], 1)
    assert (await schedule_row(engine, name)).next_fire_at == datetime(2026, 5, 1, 14, 0)
    clock.now = datetime(2026, 5, 1, 14, 0, 1)
    assert (await service.run_once()).enqueued == [f"{name}-20260501T1400Z"]


# -- a fleet -----------------------------------------------------------------------------

SCHEDULERS = 4
SECONDS = 60


async def test_schedulers_racing_enqueue_every_tick_exactly_once(
    engine: Engine,
    make_engine: EngineFactory,
    database_url: str,
    clock: SettableClock,
    scheduled: Callable[[], str],
) -> None:
    """Four schedulers, each with its own connections (as four daemons), poll at the same
    moments a schedule that ticks every second, for a minute of injected time — and once
    after a 30-second gap with 30 ticks due at once: every tick is enqueued exactly once,
    as the database tells (workflows, fired ticks), and the schedulers' own counts agree."""
    name = scheduled()
    clock.now = datetime(2026, 5, 1, 12, 0, 0)
    await engine.add_schedule(name, "* * * * * *", "UTC", steps=["noop"], queue=name)
    registry = StepRegistry.from_modules(STEP_MODULES)
    fleet = [make_engine(database_url) for _ in range(SCHEDULERS)]
    services = [
        scheduler(member.db, clock, f"daemon-{index}", registry=registry)
        for index, member in enumerate(fleet)
    ]
    enqueued: list[str] = []
    taken = 0

    async def poll_together() -> None:
        nonlocal taken
        for fired in await asyncio.gather(*(service.run_once() for service in services)):
            enqueued.extend(fired.enqueued)
            taken += fired.taken

    for _ in range(SECONDS):
        clock.now += timedelta(seconds=1)
        await poll_together()
    clock.now += timedelta(seconds=30)
    await poll_together()

    expected = [
        f"{name}-{(datetime(2026, 5, 1, 12, 0, 1) + timedelta(seconds=s)):%Y%m%dT%H%M%S}Z"
        for s in range(SECONDS + 30)
    ]
    assert sorted(enqueued) == expected
    assert await made_by(engine, name) == expected
    ticks = await fired_ticks(engine, name)
    assert len(ticks) == len(set(ticks)) == SECONDS + 30
    schedule_id = (await schedule_row(engine, name)).id
    async with engine.db.transaction() as conn:
        events = await conn.scalar(
            select(func.count())
            .select_from(workflow_events)
            .where(workflow_events.c.workflow_name.like(f"{name}-%"))
        )
        firers = await conn.scalars(
            select(schedule_fires.c.fired_by)
            .distinct()
            .where(schedule_fires.c.schedule_id == schedule_id)
        )
        fired_by = set(firers.all())
    assert events == SECONDS + 30  # one `created` event per workflow
    assert fired_by <= {f"daemon-{index}" for index in range(SCHEDULERS)}
    # Every scheduler that did not fire a tick it saw due found it taken.
    assert taken <= (SCHEDULERS - 1) * (SECONDS + 30)


async def test_the_database_refuses_a_second_fire_of_a_tick(
    engine: Engine, scheduled: Callable[[], str]
) -> None:
    """The primary key of `schedule_fires`, not a check in Python, refuses a second row
    for the same (schedule, tick): what a daemon that lost the race runs into."""
    name = scheduled()
    await engine.add_schedule(name, "0 2 * * *", steps=["noop"], queue=name)
    schedule_id = (await schedule_row(engine, name)).id
    tick = datetime(2026, 5, 2, 2, 0)
    row = {"schedule_id": schedule_id, "tick_at": tick, "workflow_name": "a", "fired_by": "a"}
    async with engine.db.transaction() as conn:
        await conn.execute(insert(schedule_fires).values(**row))
    with pytest.raises(IntegrityError):
        async with engine.db.transaction() as conn:
            await conn.execute(insert(schedule_fires).values(**{**row, "fired_by": "b"}))
    assert await fired_ticks(engine, name) == [tick]


async def test_a_database_error_the_scheduler_cannot_wait_out_does_not_stop_it(
    tmp_path: Path, clock: SettableClock
) -> None:
    """On a database without the schedules' table (or without their grants), a poll
    fails; the scheduler's loop logs and counts it and carries on until told to stop,
    rather than taking the daemon's other services down with it."""
    path = tmp_path / "no-schema.db"
    path.touch()  # a database without wfed's tables
    db = Database(f"sqlite+aiosqlite:///{path}")
    service = scheduler(db, clock)
    try:
        with pytest.raises(DBAPIError):
            await service.run_once()
        errors = service.metrics.database_errors.labels("OperationalError")
        before = errors._value.get()
        stopping = asyncio.Event()
        loop = asyncio.create_task(service.run(stopping))
        for _ in range(500):
            if errors._value.get() > before or loop.done():
                break
            await asyncio.sleep(0.01)
        assert not loop.done()
        assert errors._value.get() == before + 1
        stopping.set()
        await asyncio.wait_for(loop, 5)
    finally:
        await db.dispose()


async def test_unusable_schedule_rows_are_paused_and_the_others_still_fire(
    sqlite_url: str, make_engine: EngineFactory, clock: SettableClock
) -> None:
    """Rows a daemon cannot use — a bad cron expression, a template that is not JSON, a
    next tick that is no timestamp (SQLite stores anything) — are paused, each once, and
    a good schedule beside them fires as usual."""
    engine = make_engine(sqlite_url, clock=clock)
    good, bad_cron, bad_template, bad_time = (unique_name("sched") for _ in range(4))
    await engine.add_schedule(good, "0 * * * *", steps=["noop"], queue=good)
    rows = [
        (bad_cron, "every day", '{"steps": ["noop"]}', "2026-05-01 12:30:00"),
        (bad_template, "0 * * * *", "{not json", "2026-05-01 12:30:00"),
        (bad_time, "0 * * * *", '{"steps": ["noop"]}', "1st of May"),
    ]
    try:
        async with engine.db.transaction() as conn:
            for name, cron, template, next_fire_at in rows:
                await conn.execute(
                    text(
                        "INSERT INTO schedules (name, cron, template, next_fire_at, created_by)"
                        " VALUES (:name, :cron, :template, :next_fire_at, 'dba')"
                    ),
                    {
                        "name": name,
                        "cron": cron,
                        "template": template,
                        "next_fire_at": next_fire_at,
                    },
                )
        clock.now = datetime(2026, 5, 1, 13, 0, 1)
        fired = await scheduler(engine.db, clock).run_once()
        assert fired.enqueued == [f"{good}-20260501T1300Z"]
        states = {view.name: view.row.state for view in await engine.schedules()}
        assert [states[name] for name, *_ in rows] == ["paused"] * 3
        assert states[good] == "active"
        assert (await scheduler(engine.db, clock).run_once()).enqueued == []
    finally:
        async with engine.db.transaction() as conn:
            await conn.execute(
                delete(workflow_events).where(workflow_events.c.workflow_name.like(f"{good}-%"))
            )
            await conn.execute(delete(workflows).where(workflows.c.name.like(f"{good}-%")))
            for name in (good, bad_cron, bad_template, bad_time):
                await schedule_store.schedule_delete(conn, name)
