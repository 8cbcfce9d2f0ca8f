"""An idle daemon: it keeps looking alive, comes back if its row is removed, and still
picks up work as soon as it appears (its polls only ask whether there is any)."""

from __future__ import annotations

from daemon_harness import DaemonFactory, insert_workflows, wait_until
from sqlalchemy import delete, select

from wfed import Engine, WorkflowState
from wfed.clock import utc_now
from wfed.store.schema import daemons


async def _heartbeat(engine: Engine, daemon_id: str):
    async with engine.db.engine.connect() as conn:
        return await conn.scalar(select(daemons.c.heartbeat_at).where(daemons.c.id == daemon_id))


async def test_idle_daemon_stays_alive_and_reregisters(
    engine: Engine, start_daemon: DaemonFactory, queue: str, schema: str
) -> None:
    """With nothing to run, the daemon still refreshes its row (well within its lease);
    when its row is deleted (as a prune of a daemon that looked dead would), it
    registers again and logs `daemon_reregistered`."""
    daemon = start_daemon(schema, queue=queue, lease=2.0, control_interval=0.2)
    daemon_id = daemon.wait_for_log("daemon_started")["daemon"]
    first = await _heartbeat(engine, daemon_id)
    assert first is not None

    async def refreshed() -> bool:
        latest = await _heartbeat(engine, daemon_id)
        return latest is not None and latest > first

    await wait_until(refreshed, what="the idle daemon's heartbeat")

    async with engine.db.engine.begin() as conn:
        await conn.execute(delete(daemons).where(daemons.c.id == daemon_id))

    async def back() -> bool:
        return await _heartbeat(engine, daemon_id) is not None

    await wait_until(back, what="the daemon's row registered again")
    assert daemon.events("daemon_reregistered")
    assert (utc_now() - await _heartbeat(engine, daemon_id)).total_seconds() < 2.0


async def test_idle_daemon_claims_work_enqueued_later(
    engine: Engine, start_daemon: DaemonFactory, queue: str, schema: str
) -> None:
    """A daemon whose polls found its queue empty claims and runs a workflow inserted by
    SQL afterwards — again after each one completed and the queue was empty again."""
    daemon = start_daemon(schema, queue=queue)
    daemon.wait_for_log("daemon_started")
    for round_ in range(3):
        name = f"{queue}-late-{round_}"
        await insert_workflows(
            engine,
            [
                {
                    "name": name,
                    "steps": [{"step": "sleep", "args": {"seconds": 0}}],
                    "context": {},
                    "queue": queue,
                }
            ],
        )

        async def done(name: str = name) -> bool:
            return (await engine.get(name)).state is WorkflowState.COMPLETED

        await wait_until(done, what=f"{name} completed")
