"""PostgreSQL wake-ups, with real daemons: the `workflows` trigger notifies, a daemon that
LISTENs claims new work and passes on a stop request at once, far sooner than its poll
(two minutes here, so that only a wake-up can explain a prompt start), and it listens
again after its listening session is killed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from daemon_harness import DaemonFactory, DaemonProcess, insert_workflows, wait_until
from sqlalchemy import text

from wfed import Engine, WorkflowState
from wfed.store import wakeups as wakeup_store

SLOW_POLL = 120.0
"""Poll and control intervals: without a wake-up, nothing would happen within the test."""
WITHIN = 30.0
"""What a woken daemon gets to act (it takes milliseconds; a loaded machine is slow)."""


async def test_the_trigger_notifies_inserts_requests_and_work_made_pending_again(
    schema_postgresql: str, make_engine: Callable[..., Engine], queue: str
) -> None:
    """A plain SQL INSERT notifies `pending QUEUE`; a stop request on a running workflow
    `request ID`; a workflow made pending again `pending QUEUE`; other updates nothing."""
    engine = make_engine(schema_postgresql)
    heard: list[str] = []
    arrived = asyncio.Event()

    def on_message(payload: str) -> None:
        heard.append(payload)
        arrived.set()

    listening = await wakeup_store.listen(engine.db, on_message)
    try:

        async def next_payloads() -> list[str]:
            await asyncio.wait_for(arrived.wait(), WITHIN)
            await asyncio.sleep(0)  # notifications of one transaction come together
            got = list(heard)
            heard.clear()
            arrived.clear()
            return got

        name = f"{queue}-pg"
        await insert_workflows(
            engine, [{"name": name, "steps": ["noop"], "context": {}, "queue": queue}]
        )
        assert await next_payloads() == [f"pending {queue}"]
        async with engine.db.transaction() as conn:
            workflow_id = await conn.scalar(
                text("UPDATE workflows SET state = 'running' WHERE name = :n RETURNING id"),
                {"n": name},
            )
            await conn.execute(
                text("UPDATE workflows SET priority = 5 WHERE name = :n"), {"n": name}
            )
            await conn.execute(
                text("UPDATE workflows SET requested = 'stop' WHERE name = :n"), {"n": name}
            )
        assert await next_payloads() == [f"request {workflow_id}"]
        async with engine.db.transaction() as conn:
            await conn.execute(
                text("UPDATE workflows SET state = 'pending', requested = NULL WHERE name = :n"),
                {"n": name},
            )
        assert await next_payloads() == [f"pending {queue}"]
    finally:
        await listening.close()
        async with engine.db.transaction() as conn:
            await conn.execute(text("DELETE FROM workflows WHERE queue = :q"), {"q": queue})


def slow_daemon(start_daemon: DaemonFactory, url: str, queue: str) -> DaemonProcess:
    daemon = start_daemon(
        url,
        queue=queue,
        poll_interval=SLOW_POLL,
        control_interval=SLOW_POLL,
        lease=2 * SLOW_POLL,
    )
    daemon.wait_for_log("listening")
    return daemon


async def state_of(engine: Engine, name: str) -> WorkflowState:
    return (await engine.get(name)).state


async def test_a_listening_daemon_claims_at_once_and_stops_at_once(
    schema_postgresql: str,
    make_engine: Callable[..., Engine],
    start_daemon: DaemonFactory,
    queue: str,
) -> None:
    """With a two-minute poll and control interval, a workflow inserted by plain SQL
    completes, and a stop request cuts a long step short, each within seconds; after its
    listening session is killed, the daemon listens again and still claims at once."""
    engine = make_engine(schema_postgresql, step_modules=["stepmods.journal"])
    daemon = slow_daemon(start_daemon, schema_postgresql, queue)
    try:
        quick = f"{queue}-quick"
        await insert_workflows(
            engine,
            [
                {
                    "name": quick,
                    "steps": [{"step": "sleep", "args": {"seconds": 0}}],
                    "context": {},
                    "queue": queue,
                }
            ],
        )

        async def completed(name: str) -> bool:
            return await state_of(engine, name) is WorkflowState.COMPLETED

        await wait_until(lambda: completed(quick), limit=WITHIN, what="the quick one completed")

        long = f"{queue}-long"
        await engine.create_workflow(
            long, {}, [{"step": "sleep", "args": {"seconds": 3600}}], queue=queue
        )

        async def running() -> bool:
            workflow = await engine.get(long)
            return bool(workflow.steps) and workflow.steps[0].state.value == "running"

        await wait_until(running, limit=WITHIN, what="the long step is running")
        await engine.stop(long, reason="wake-up test")

        async def stopped() -> bool:
            return await state_of(engine, long) is WorkflowState.STOPPED

        await wait_until(stopped, limit=WITHIN, what="the stop request was honoured")

        # Kill the listening session: the daemon listens again, and is woken again.
        async with engine.db.transaction() as conn:
            killed = await conn.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = :app AND datname = current_database()"
                ),
                {"app": wakeup_store.APPLICATION_NAME},
            )
        assert killed >= 1

        async def listening_again() -> bool:
            return len(daemon.events("listening")) >= 2

        await wait_until(listening_again, limit=WITHIN, what="the daemon listens again")
        assert daemon.events("listen_dropped")
        again = f"{queue}-again"
        await insert_workflows(
            engine,
            [
                {
                    "name": again,
                    "steps": [{"step": "sleep", "args": {"seconds": 0}}],
                    "context": {},
                    "queue": queue,
                }
            ],
        )
        await wait_until(lambda: completed(again), limit=WITHIN, what="claimed after relisten")
        assert json.dumps(daemon.events("side_loop_crashed")) == "[]"
    finally:
        daemon.kill()
