"""The daemon as operators run it: real `wfed` processes, real signals, real databases."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from daemon_harness import (
    DaemonFactory,
    DaemonProcess,
    insert_workflows,
    journal_lines,
    wait_for_journal,
    wait_until,
)
from sqlalchemy import text
from sqlalchemy.engine import make_url

from wfed import Engine, StepState, WorkflowState

# The daemons' timing in the tests below that hold a daemon to it (seconds).
LEASE = 2.0
POLL_INTERVAL = 0.1
CONTROL_INTERVAL = 0.2
# What a process-level bound adds to the contract: process start-up, the test's own
# polling, a loaded machine. Generous, so that only a broken contract fails the test.
PROCESS_MARGIN = 5.0


def _state_is(engine: Engine, name: str, *states: WorkflowState) -> Any:
    async def check() -> bool:
        return (await engine.get(name)).state in states

    return check


async def _create(engine: Engine, name: str, queue: str, journal: Path, steps: list[Any]) -> None:
    await engine.create_workflow(name, {"journal": str(journal)}, steps, queue=queue)


async def test_two_daemons_run_200_plain_sql_workflows_exactly_once(
    engine: Engine, start_daemon: DaemonFactory, queue: str, journal: Path, schema: str
) -> None:
    """Two daemons share 200 workflows enqueued with plain SQL: all complete, and every
    step ran exactly once."""
    rows = [
        {
            "name": f"{queue}-{i}",
            "queue": queue,
            "context": {"journal": str(journal)},
            "steps": [{"step": "mark", "args": {"tag": f"w{i}-s{p}"}} for p in range(3)],
        }
        for i in range(200)
    ]
    await insert_workflows(engine, rows)
    first = start_daemon(schema, queue=queue)
    second = start_daemon(schema, queue=queue)

    async def all_completed() -> bool:
        async with engine.db.engine.connect() as conn:
            done = await conn.scalar(
                text("SELECT COUNT(*) FROM workflows WHERE queue = :q AND state = 'completed'"),
                {"q": queue},
            )
        return done == 200

    await wait_until(all_completed, limit=120, what="200 completed workflows")
    tags = [line.split()[1] for line in journal_lines(journal)]
    assert sorted(tags) == sorted(f"w{i}-s{p}" for i in range(200) for p in range(3))
    async with engine.db.engine.connect() as conn:
        attempts = (
            await conn.execute(
                text(
                    "SELECT s.attempts, COUNT(*) FROM workflow_steps s "
                    "JOIN workflows w ON w.id = s.workflow_id WHERE w.queue = :q "
                    "GROUP BY s.attempts"
                ),
                {"q": queue},
            )
        ).all()
    assert [tuple(row) for row in attempts] == [(1, 600)]
    assert first.proc.poll() is None
    assert second.proc.poll() is None


async def test_pause_lets_the_running_step_finish_and_starts_no_other(
    engine: Engine, start_daemon: DaemonFactory, queue: str, journal: Path, schema: str
) -> None:
    """A pause during a running step: that step completes, no later step starts, the
    workflow is paused; resume completes it."""
    name = f"{queue}-pause"
    steps = [
        {"step": "slow", "args": {"tag": "a", "seconds": 1.0}},
        {"step": "mark", "args": {"tag": "b"}},
    ]
    await _create(engine, name, queue, journal, steps)
    start_daemon(schema, queue=queue)
    await wait_for_journal(journal, "start a")
    await engine.pause(name, reason="change window closed")
    await wait_until(_state_is(engine, name, WorkflowState.PAUSED), what="paused")
    workflow = await engine.get(name)
    assert [s.state for s in workflow.steps] == [StepState.COMPLETED, StepState.PENDING]
    assert workflow.current_step == 1
    assert workflow.halt_reason is not None
    assert "change window closed" in workflow.halt_reason
    assert [line.split()[:2] for line in journal_lines(journal)] == [
        ["start", "a"],
        ["end", "a"],
    ]
    await engine.resume(name)
    await wait_until(_state_is(engine, name, WorkflowState.COMPLETED), what="completed")
    assert any(line.startswith("ran b") for line in journal_lines(journal))


async def test_stop_cancels_a_long_step(
    engine: Engine, start_daemon: DaemonFactory, queue: str, journal: Path, schema: str
) -> None:
    """A stop during a 60 s step cancels it within the control interval (plus a process
    margin): step and workflow are `stopped`, and the next step never starts."""
    name = f"{queue}-stop"
    steps = [
        {"step": "slow", "args": {"tag": "long", "seconds": 60}},
        {"step": "mark", "args": {"tag": "never"}},
    ]
    await _create(engine, name, queue, journal, steps)
    start_daemon(schema, queue=queue, control_interval=CONTROL_INTERVAL)
    await wait_for_journal(journal, "start long")
    await engine.stop(name, reason="wrong servers")
    took = await wait_until(
        _state_is(engine, name, WorkflowState.STOPPED), limit=60, what="stopped"
    )
    assert took < CONTROL_INTERVAL + PROCESS_MARGIN, f"stopped after {took:.3f} s"
    workflow = await engine.get(name)
    assert [s.state for s in workflow.steps] == [StepState.STOPPED, StepState.PENDING]
    assert workflow.row.claimed_by is None
    assert not any(line.startswith(("end long", "ran never")) for line in journal_lines(journal))
    kinds = [event.kind for event in await engine.history(name)]
    assert kinds[-2:] == ["stop_requested", "stopped"]


async def test_kill_9_during_idempotent_step_is_recovered_by_another_daemon(
    engine: Engine, start_daemon: DaemonFactory, queue: str, journal: Path, schema: str
) -> None:
    """kill -9 during an idempotent step: once the lease has run out (within lease + poll
    + control interval, plus a process margin), a second daemon re-runs that step
    (attempts 2) and finishes the workflow; other steps ran once."""
    name = f"{queue}-kill-idem"
    steps = [
        {"step": "mark", "args": {"tag": "a"}},
        {"step": "slow_idempotent", "args": {"tag": "b", "seconds": 1.0}},
        {"step": "mark", "args": {"tag": "c"}},
    ]
    timing = {"lease": LEASE, "poll_interval": POLL_INTERVAL, "control_interval": CONTROL_INTERVAL}
    await _create(engine, name, queue, journal, steps)
    victim = start_daemon(schema, queue=queue, **timing)
    await wait_for_journal(journal, "start b")
    victim.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    victim.wait()
    start_daemon(schema, queue=queue, **timing)

    async def b_started_again() -> bool:
        return sum(line.startswith("start b") for line in journal_lines(journal)) >= 2

    await wait_until(b_started_again, limit=60, what="step b started by the second daemon")
    recovered = time.monotonic() - killed_at
    bound = LEASE + POLL_INTERVAL + CONTROL_INTERVAL + PROCESS_MARGIN
    assert recovered < bound, f"recovered {recovered:.3f} s after kill -9"
    await wait_until(_state_is(engine, name, WorkflowState.COMPLETED), limit=30, what="completed")
    workflow = await engine.get(name)
    assert [s.attempts for s in workflow.steps] == [1, 2, 1]
    starts = [line for line in journal_lines(journal) if line.startswith("start b")]
    assert len(starts) == 2
    assert sum(line.startswith("ran a") for line in journal_lines(journal)) == 1
    assert sum(line.startswith("ran c") for line in journal_lines(journal)) == 1


async def test_kill_9_during_non_idempotent_step_puts_workflow_in_error(
    engine: Engine, start_daemon: DaemonFactory, queue: str, journal: Path, schema: str
) -> None:
    """kill -9 during a non-idempotent step: the recovering daemon never re-runs it; the
    workflow goes to `error` saying it was interrupted and what to do."""
    name = f"{queue}-kill"
    steps = [
        {"step": "mark", "args": {"tag": "a"}},
        {"step": "slow", "args": {"tag": "b", "seconds": 1.0}},
        {"step": "mark", "args": {"tag": "c"}},
    ]
    await _create(engine, name, queue, journal, steps)
    victim = start_daemon(schema, queue=queue, lease=2.0)
    await wait_for_journal(journal, "start b")
    victim.signal(signal.SIGKILL)
    victim.wait()
    rescuer = start_daemon(schema, queue=queue, lease=2.0)
    await wait_until(_state_is(engine, name, WorkflowState.ERROR), limit=30, what="error")
    workflow = await engine.get(name)
    assert workflow.last_error is not None
    assert "interrupted" in workflow.last_error
    assert "wfectl retry" in workflow.last_error
    assert [s.state for s in workflow.steps] == [
        StepState.COMPLETED,
        StepState.ERROR,
        StepState.PENDING,
    ]
    assert [s.attempts for s in workflow.steps] == [1, 1, 0]
    assert sum(line.startswith("start b") for line in journal_lines(journal)) == 1
    assert rescuer.proc.poll() is None


def sqlite_writable(url: str) -> bool:
    """Whether a writer can take the SQLite file's write lock at once."""
    with contextlib.closing(sqlite3.connect(make_url(url).database or "", timeout=0.2)) as db:
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return False
        db.rollback()
    return True


async def freeze_outside_a_write(daemon: DaemonProcess, url: str) -> None:
    """SIGSTOP `daemon`. On SQLite a daemon frozen inside a write transaction would hold
    the file's lock, and no other daemon could start (docs/operations.md, "A daemon
    stalls"): there it is let run a moment and frozen again until it holds none."""
    for _ in range(100):
        daemon.signal(signal.SIGSTOP)
        if make_url(url).get_backend_name() != "sqlite" or sqlite_writable(url):
            return
        daemon.signal(signal.SIGCONT)
        await asyncio.sleep(0.02)
    raise AssertionError("the daemon held the SQLite write lock at every freeze")


async def test_fencing_a_resumed_daemon_cannot_overwrite_the_new_owner(
    engine: Engine, start_daemon: DaemonFactory, queue: str, journal: Path, schema: str
) -> None:
    """SIGSTOP a daemon mid-step past its lease, let another take the workflow over and
    finish it, SIGCONT the first: its late writes change nothing."""
    name = f"{queue}-fence"
    steps = [
        {"step": "slow_idempotent", "args": {"tag": "b", "seconds": 1.0}},
        {"step": "mark", "args": {"tag": "c"}},
    ]
    await _create(engine, name, queue, journal, steps)
    frozen = start_daemon(schema, queue=queue, lease=1.5)
    await wait_for_journal(journal, "start b")
    await freeze_outside_a_write(frozen, schema)
    successor = start_daemon(schema, queue=queue, lease=1.5)
    await wait_until(_state_is(engine, name, WorkflowState.COMPLETED), limit=30, what="completed")
    before = await engine.get(name)
    events_before = await engine.history(name)
    frozen.signal(signal.SIGCONT)
    lost = frozen.wait_for_log("lease_lost", timeout=30)
    assert "step 0 'slow_idempotent', not recorded" in lost.get("discarded", ""), lost
    after = await engine.get(name)
    assert after.row == before.row
    assert after.steps == before.steps
    assert await engine.history(name) == events_before
    assert after.context["b_by"] == successor.pid
    assert after.context["c_by"] == successor.pid
    assert [s.attempts for s in after.steps] == [2, 1]
    assert frozen.proc.poll() is None


async def test_sigterm_lets_the_step_finish_and_hands_the_workflow_back(
    engine: Engine, start_daemon: DaemonFactory, queue: str, journal: Path, schema: str
) -> None:
    """SIGTERM mid-step: the step completes, the workflow is pending and unowned when the
    daemon exits 0, and another daemon finishes it."""
    name = f"{queue}-term"
    steps = [
        {"step": "slow", "args": {"tag": "b", "seconds": 1.0}},
        {"step": "mark", "args": {"tag": "c"}},
    ]
    await _create(engine, name, queue, journal, steps)
    leaving = start_daemon(schema, queue=queue, shutdown_grace=30)
    await wait_for_journal(journal, "start b")
    leaving.signal(signal.SIGTERM)
    assert leaving.wait(timeout=30) == 0
    workflow = await engine.get(name)
    assert workflow.state is WorkflowState.PENDING
    assert workflow.row.claimed_by is None
    assert workflow.current_step == 1
    assert [s.state for s in workflow.steps] == [StepState.COMPLETED, StepState.PENDING]
    async with engine.db.engine.connect() as conn:
        registered = await conn.scalar(
            text("SELECT COUNT(*) FROM daemons WHERE pid = :pid"), {"pid": leaving.pid}
        )
    assert registered == 0
    start_daemon(schema, queue=queue)
    await wait_until(_state_is(engine, name, WorkflowState.COMPLETED), what="completed")
    assert (await engine.get(name)).steps[1].attempts == 1


async def test_sigterm_past_the_grace_interrupts_the_step(
    engine: Engine, start_daemon: DaemonFactory, queue: str, journal: Path, schema: str
) -> None:
    """A step still running when the shutdown grace ends is cancelled and treated as
    interrupted: the workflow is handed back at once, and the next daemon puts the
    non-idempotent step in error."""
    name = f"{queue}-grace"
    steps = [{"step": "slow", "args": {"tag": "b", "seconds": 60}}]
    await _create(engine, name, queue, journal, steps)
    leaving = start_daemon(schema, queue=queue, shutdown_grace=0.5, lease=30)
    await wait_for_journal(journal, "start b")
    leaving.signal(signal.SIGTERM)
    assert leaving.wait(timeout=30) == 0
    workflow = await engine.get(name)
    assert workflow.state is WorkflowState.PENDING
    assert workflow.row.claimed_by is None
    start_daemon(schema, queue=queue, lease=30)
    await wait_until(_state_is(engine, name, WorkflowState.ERROR), what="error")
    assert "interrupted" in ((await engine.get(name)).last_error or "")


async def test_sigterm_past_the_grace_does_not_wait_for_a_step_thread(
    engine: Engine, start_daemon: DaemonFactory, queue: str, journal: Path, schema: str
) -> None:
    """A plain `def` step still running in its worker thread when the grace ends cannot be
    cancelled: the daemon hands its workflow back and exits (0) without waiting for the
    thread, so the step does not go on running in a daemon that has stopped."""
    name = f"{queue}-thread"
    steps = [{"step": "slow_in_thread", "args": {"tag": "b", "seconds": 120}}]
    await _create(engine, name, queue, journal, steps)
    leaving = start_daemon(schema, queue=queue, shutdown_grace=0.5, lease=30)
    await wait_for_journal(journal, "start b")
    leaving.signal(signal.SIGTERM)
    assert leaving.wait(timeout=60) == 0  # long before the step's 120 s
    assert not [line for line in journal_lines(journal) if line.startswith("end b")]
    assert leaving.events("step_threads_abandoned")[0]["threads"] == 1
    workflow = await engine.get(name)
    assert workflow.state is WorkflowState.PENDING
    assert workflow.row.claimed_by is None


async def test_bad_rows_go_to_error_while_good_rows_flow(
    engine: Engine, start_daemon: DaemonFactory, queue: str, journal: Path, schema: str
) -> None:
    """Rows the daemon cannot run go to `error` naming the problem; valid rows around
    them complete and the daemon stays up."""
    context = {"journal": str(journal)}
    bad = {
        f"{queue}-unknown": (["no_such_step"], context, "unknown step 'no_such_step'"),
        f"{queue}-notlist": ({"step": "mark"}, context, "non-empty JSON list"),
        f"{queue}-empty": ([], context, "empty"),
        f"{queue}-ctx": ([{"step": "mark", "args": {"tag": "x"}}], [1, 2], "JSON object"),
        f"{queue}-args": ([{"step": "slow", "args": {"seconds": "soon"}}], context, "seconds"),
    }
    good = [f"{queue}-good-{i}" for i in range(5)]
    rows = [
        {"name": n, "queue": queue, "steps": steps, "context": ctx}
        for n, (steps, ctx, _) in bad.items()
    ]
    rows += [
        {
            "name": n,
            "queue": queue,
            "steps": [{"step": "mark", "args": {"tag": n}}],
            "context": context,
        }
        for n in good
    ]
    await insert_workflows(engine, rows)
    daemon = start_daemon(schema, queue=queue)
    for n in good:
        await wait_until(_state_is(engine, n, WorkflowState.COMPLETED), what=f"{n} completed")
    for n, (_, _, expected) in bad.items():
        await wait_until(_state_is(engine, n, WorkflowState.ERROR), what=f"{n} in error")
        message = (await engine.get(n)).last_error or ""
        assert expected in message, message
    assert daemon.proc.poll() is None


async def test_a_step_that_exits_fails_and_the_daemon_runs_on(
    engine: Engine, start_daemon: DaemonFactory, queue: str, journal: Path, schema: str
) -> None:
    """A step calling sys.exit (code 0: systemd would not even restart the daemon) or
    raising KeyboardInterrupt fails like any step; the daemon stays up, and the workflows
    beside them, and those enqueued after them, complete."""
    context = {"journal": str(journal)}
    bad = {
        f"{queue}-exit": ({"step": "exit", "args": {"code": 0}}, "the step raised SystemExit: 0"),
        f"{queue}-interrupt": ("interrupt", "the step raised KeyboardInterrupt"),
    }
    rows = [
        {
            "name": n,
            "queue": queue,
            "steps": [step, {"step": "mark", "args": {"tag": n}}],
            "context": context,
        }
        for n, (step, _) in bad.items()
    ]
    rows += [
        {
            "name": f"{queue}-beside-{i}",
            "queue": queue,
            "steps": [{"step": "slow", "args": {"tag": f"b{i}", "seconds": 0.5}}],
            "context": context,
        }
        for i in range(3)
    ]
    await insert_workflows(engine, rows)
    daemon = start_daemon(schema, queue=queue)
    for n, (_, expected) in bad.items():
        await wait_until(_state_is(engine, n, WorkflowState.ERROR), what=f"{n} in error")
        message = (await engine.get(n)).last_error or ""
        assert expected in message, message
    for i in range(3):
        name = f"{queue}-beside-{i}"
        await wait_until(_state_is(engine, name, WorkflowState.COMPLETED), what=f"{name} done")
    later = f"{queue}-later"
    await _create(engine, later, queue, journal, [{"step": "mark", "args": {"tag": "later"}}])
    await wait_until(_state_is(engine, later, WorkflowState.COMPLETED), what="a later workflow")
    assert daemon.proc.poll() is None


async def test_a_row_inserted_running_without_a_lease_is_recovered(
    engine: Engine, start_daemon: DaemonFactory, queue: str, journal: Path, schema: str
) -> None:
    """A row an INSERT made `running` with no lease, or with one no daemon could have
    given (year 9999), is taken over like one whose owner's lease expired: it runs to
    completion, and a stop requested on another such row is honoured, instead of both
    waiting forever. A row whose lease is a plausible hour away is left to its owner."""
    context = json.dumps({"journal": str(journal)})
    runs, stops = f"{queue}-inserted-running", f"{queue}-inserted-stop"
    forever, held = f"{queue}-lease-9999", f"{queue}-lease-hour"
    in_an_hour = datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=1)
    async with engine.db.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO workflows (name, steps, context, queue, state, requested, "
                "claimed_by, lease_expires_at) "
                "VALUES (:name, :steps, :context, :queue, 'running', :requested, :owner, :lease)"
            ),
            [
                {
                    "name": name,
                    "steps": json.dumps([{"step": "mark", "args": {"tag": name}}]),
                    "context": context,
                    "queue": queue,
                    "requested": requested,
                    "owner": owner,
                    "lease": lease,
                }
                for name, requested, owner, lease in (
                    (runs, None, None, None),
                    (stops, "stop", None, None),
                    (forever, None, "ghost:1", datetime(9999, 12, 31)),
                    (held, None, "ghost:2", in_an_hour),
                )
            ],
        )
    start_daemon(schema, queue=queue, lease=LEASE)
    for name in (runs, forever):
        await wait_until(_state_is(engine, name, WorkflowState.COMPLETED), what=f"{name} done")
    await wait_until(_state_is(engine, stops, WorkflowState.STOPPED), what=f"{stops} stopped")
    ran = sorted(line.split()[1] for line in journal_lines(journal))
    assert ran == sorted([runs, forever])
    assert (await engine.get(held)).state is WorkflowState.RUNNING
    async with engine.db.engine.begin() as conn:  # nobody else's test meets a held row
        await conn.execute(text("DELETE FROM workflows WHERE name = :name"), {"name": held})


async def test_daemon_refuses_to_start_without_the_schema(
    start_daemon: DaemonFactory, tmp_path: Path, queue: str
) -> None:
    """On a database without the wfed schema the daemon exits 1 telling the operator to
    run `wfectl db upgrade`."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    daemon = start_daemon(url, queue=queue, wait_ready=False)
    assert daemon.wait(timeout=30) == 1
    output = daemon.log_path.read_text()
    assert "wfectl db upgrade" in output
    assert "Traceback" not in output
