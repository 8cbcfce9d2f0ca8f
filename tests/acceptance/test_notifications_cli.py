"""`wfectl notifications` as a process on every backend: the deliveries with their events,
filtered by state, as a table and as JSON; a state it does not know is a usage error."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sqlalchemy import delete, insert, select

from wfed.store.database import Database
from wfed.store.schema import notification_deliveries, workflow_events

from .conftest import Wfectl


async def _record(url: str, workflow: str, target: str) -> None:
    """A failed and a sent delivery of the workflow's last event, to `target`."""
    db = Database(url)
    try:
        async with db.transaction() as conn:
            event_id = await conn.scalar(
                select(workflow_events.c.id)
                .where(workflow_events.c.workflow_name == workflow)
                .order_by(workflow_events.c.id.desc())
                .limit(1)
            )
            await conn.execute(
                insert(notification_deliveries),
                [
                    {
                        "event_id": event_id,
                        "target": target,
                        "state": "failed",
                        "attempts": 4,
                        "last_error": "HTTP 503: try later",
                    },
                    {
                        "event_id": event_id,
                        "target": f"{target}-ok",
                        "state": "sent",
                        "attempts": 1,
                        "last_error": None,
                    },
                ],
            )
    finally:
        await db.dispose()


async def _forget(url: str, target: str) -> None:
    db = Database(url)
    try:
        async with db.transaction() as conn:
            await conn.execute(
                delete(notification_deliveries).where(
                    notification_deliveries.c.target.in_([target, f"{target}-ok"])
                )
            )
    finally:
        await db.dispose()


@pytest.fixture
def target(wfectl: Wfectl, unique: str) -> Iterator[str]:
    name = f"hook-{unique}"
    yield name
    asyncio.run(_forget(wfectl.url, name))


def test_notifications_lists_deliveries_by_state(wfectl: Wfectl, unique: str, target: str) -> None:
    """`--state failed` lists the failed delivery with its workflow, event and error, and
    not the sent one; the table shows the same."""
    name = f"notified-{unique}"
    assert wfectl("create", name, "--step", "stop_app", "--queue", f"q-{unique}").code == 0
    assert wfectl("stop", name, "--reason", "not today").code == 0
    asyncio.run(_record(wfectl.url, name, target))

    failed = wfectl("notifications", "--state", "failed", "--limit", "1000", "--json").json()
    mine = [d for d in failed if d["webhook"].startswith(target)]
    assert [(d["webhook"], d["workflow"], d["kind"], d["state"]) for d in mine] == [
        (target, name, "stopped", "failed")
    ]
    assert mine[0]["attempts"] == 4
    assert mine[0]["last_error"] == "HTTP 503: try later"
    assert set(mine[0]) == {
        "id",
        "webhook",
        "state",
        "attempts",
        "next_attempt_at",
        "claimed_by",
        "last_error",
        "created_at",
        "sent_at",
        "event_id",
        "workflow",
        "kind",
        "at",
    }

    table = wfectl("notifications", "--limit", "1000")
    assert table.code == 0, table
    rows = [line for line in table.out.splitlines() if target in line]
    assert len(rows) == 2
    assert any("failed" in row and "HTTP 503: try later" in row for row in rows)
    assert any("sent" in row and f"{target}-ok" in row for row in rows)
    assert wfectl("delete", name).code == 0


def test_notifications_refuses_an_unknown_state(wfectl: Wfectl) -> None:
    """A state that deliveries never have is a usage error (exit code 2)."""
    result = wfectl("notifications", "--state", "lost")
    assert result.code == 2
    assert "'lost' is not a delivery state: use pending, sent or failed" in result.err
