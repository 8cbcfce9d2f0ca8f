"""Notifications from real `wfed` processes to a local HTTP receiver, on every backend:
three daemons deliver each event exactly once, an operator's stop made with wfectl is
notified, and webhooks that hang or fail delay no step (the failure is counted in the
daemon's metrics); `wfectl notifications` lists the deliveries, `wfectl notify test`
reaches a webhook."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import DaemonFactory, insert_workflows
from notify_receiver import HANG, Receiver, eventually, receiving
from sqlalchemy import delete, func, select

from wfed import Engine, WorkflowState
from wfed.store.schema import notification_cursors, notification_deliveries

WFECTL = str(Path(sys.executable).parent / "wfectl")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as server:
        yield server


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
async def cleanup(engine: Engine, tag: str) -> AsyncIterator[list[str]]:
    """Workflow names to delete after the test, with the deliveries and cursors of this
    test's webhooks (their names end in the test's tag)."""
    names: list[str] = []
    yield names
    for name in names:
        workflow = await engine.get(name)
        if workflow.state is not WorkflowState.RUNNING:
            await engine.delete(name)
    async with engine.db.transaction() as conn:
        for table in (notification_deliveries, notification_cursors):
            await conn.execute(delete(table).where(table.c.target.like(f"%-{tag}")))


def webhook(receiver: Receiver, name: str, queue: str, events: list[str], **options: Any) -> str:
    """A `[[notify.webhooks]]` entry POSTing to the receiver at /NAME."""
    lines = [
        "[[notify.webhooks]]",
        f"name = {json.dumps(name)}",
        f"url = {json.dumps(receiver.url('/' + name))}",
        f"events = {json.dumps(events)}",
        f"queues = [{json.dumps(queue)}]",
        *(f"{key} = {json.dumps(value)}" for key, value in options.items()),
    ]
    return "\n".join(lines) + "\n"


def notify_config(*hooks: str, poll_interval: float = 0.2) -> str:
    return f"[notify]\npoll_interval = {poll_interval}\n" + "".join(hooks)


async def cursor_made(engine: Engine, target: str) -> None:
    """Wait until a daemon has read the webhook's cursor (made it at the newest event):
    the events after it are the webhook's to be told of."""

    async def made() -> bool:
        async with engine.db.transaction() as conn:
            found = await conn.scalar(
                select(func.count())
                .select_from(notification_cursors)
                .where(notification_cursors.c.target == target)
            )
        return bool(found)

    await eventually(made, what=f"the cursor of {target}")


async def delivery_states(engine: Engine, target: str) -> list[str]:
    async with engine.db.transaction() as conn:
        rows = await conn.execute(
            select(notification_deliveries.c.state).where(
                notification_deliveries.c.target == target
            )
        )
        return [row.state for row in rows]


def wfectl(url: str, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"WFED_CONFIG", "COLUMNS"}}
    env["WFED_DATABASE_URL"] = url
    command = [WFECTL, *(["--config", str(config)] if config else []), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def metric(port: int, webhook: str, outcome: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    wanted = f'wfed_notifications_total{{outcome="{outcome}",webhook="{webhook}"}}'
    for line in text.splitlines():
        if line.startswith(wanted):
            return float(line.split()[-1])
    return 0.0


async def test_three_daemons_deliver_each_event_exactly_once(
    schema: str,
    engine: Engine,
    start_daemon: DaemonFactory,
    queue: str,
    receiver: Receiver,
    tag: str,
    cleanup: list[str],
) -> None:
    """Three daemons run 30 workflows (20 complete, 10 fail): the receiver gets exactly
    one POST per completion and per error, each naming its workflow, and every delivery
    is recorded once, as sent."""
    target = f"fleet-{tag}"
    config = notify_config(webhook(receiver, target, queue, ["error", "completed"]))
    daemons = [start_daemon(schema, queue=queue, extra_config=config) for _ in range(3)]
    await cursor_made(engine, target)
    rows = [
        {
            "name": f"{queue}-ok-{i}",
            "steps": [{"step": "mark", "args": {"tag": f"ok-{i}"}}] * 2,
            "context": {"journal": "/dev/null"},
            "queue": queue,
        }
        for i in range(20)
    ] + [
        {
            "name": f"{queue}-bad-{i}",
            "steps": [{"step": "fail", "args": {"message": f"bad {i}"}}],
            "context": {},
            "queue": queue,
        }
        for i in range(10)
    ]
    cleanup.extend(row["name"] for row in rows)
    await insert_workflows(engine, rows)

    async def all_sent() -> bool:
        states = await delivery_states(engine, target)
        return len(states) == len(rows) and set(states) == {"sent"}

    await eventually(all_sent, limit=90, what="every delivery sent")
    bodies = receiver.to(f"/{target}")
    # A message is sent again only after its sender failed to record it, lost its claim
    # or retried it: each says so in its log, and none of that may happen here.
    troubles = [
        line
        for daemon in daemons
        for line in daemon.log_lines()
        if line.get("event")
        in {"notification_unrecorded", "notification_claim_lost", "notification_retry"}
    ]
    assert not troubles
    assert len(bodies) == len(rows)
    assert len({body["id"] for body in bodies}) == len(rows)
    outcome = {body["workflow"]: body["state"] for body in bodies}
    assert outcome == {
        row["name"]: "completed" if "-ok-" in row["name"] else "error" for row in rows
    }

    def sent_lines() -> int:
        # Each daemon logs a delivery once its `sent` is committed: just after the row.
        return sum(len(daemon.events("notification_sent")) for daemon in daemons)

    await eventually(lambda: sent_lines() >= len(rows), what="every notification_sent line")
    assert sent_lines() == len(rows)


async def test_an_operator_stop_with_wfectl_is_notified(
    schema: str,
    engine: Engine,
    start_daemon: DaemonFactory,
    queue: str,
    receiver: Receiver,
    tag: str,
    cleanup: list[str],
) -> None:
    """A workflow pausing at a gate is notified; the operator then stops it with wfectl,
    and that is notified too, naming the operator and the reason; `wfectl notifications
    --json` lists both deliveries as sent."""
    target = f"ops-{tag}"
    config = notify_config(webhook(receiver, target, queue, ["gate", "stopped"], format="slack"))
    start_daemon(schema, queue=queue, extra_config=config)
    await cursor_made(engine, target)
    name = f"{queue}-gated"
    cleanup.append(name)
    await insert_workflows(
        engine,
        [
            {
                "name": name,
                "steps": [
                    {"step": "pause", "args": {"prompt": "approve the failover?"}},
                    {"step": "mark", "args": {"tag": "after"}},
                ],
                "context": {"journal": "/dev/null"},
                "queue": queue,
            }
        ],
    )
    await eventually(lambda: len(receiver.to(f"/{target}")) == 1, what="the gate's POST")
    stopped = wfectl(schema, "stop", name, "--reason", "failover cancelled")
    assert stopped.returncode == 0, stopped.stderr
    await eventually(lambda: len(receiver.to(f"/{target}")) == 2, what="the stop's POST")

    gate, stop = (body["text"] for body in receiver.to(f"/{target}"))
    assert gate.startswith(f"wfed: workflow {name!r} paused at a gate at step 1")
    assert "approve the failover?" in gate
    assert stop.startswith(
        f"wfed: workflow {name!r} stopped at step 1 'mark': failover cancelled (by "
    )
    assert stop.endswith(f"@{socket.gethostname()})")

    async def both_sent() -> bool:
        return await delivery_states(engine, target) == ["sent", "sent"]

    await eventually(both_sent, what="both deliveries marked sent")
    listed = wfectl(schema, "notifications", "--json", "--limit", "1000")
    assert listed.returncode == 0, listed.stderr
    mine = [d for d in json.loads(listed.stdout) if d["webhook"] == target]
    assert sorted((d["workflow"], d["kind"], d["state"]) for d in mine) == [
        (name, "paused", "sent"),
        (name, "stopped", "sent"),
    ]


async def test_webhooks_that_hang_or_fail_delay_no_step(
    schema: str,
    engine: Engine,
    start_daemon: DaemonFactory,
    queue: str,
    receiver: Receiver,
    tag: str,
    cleanup: list[str],
) -> None:
    """One webhook never answers (its timeout far away), one answers 500: every workflow
    completes while the hanging POSTs are still unanswered, a healthy webhook beside them
    gets every message, and the refused deliveries end `failed`, counted in the daemon's
    metrics."""
    hanging, refusing, healthy = f"hang-{tag}", f"refuse-{tag}", f"ok-{tag}"
    count = 6
    receiver.script(f"/{hanging}", *[HANG] * count)
    receiver.script(f"/{refusing}", *[500] * (2 * count))
    port = free_port()
    config = (
        notify_config(
            webhook(receiver, hanging, queue, ["completed"], timeout=120, retries=0),
            webhook(receiver, refusing, queue, ["completed"], retries=1, backoff=0),
            webhook(receiver, healthy, queue, ["completed"]),
        )
        + f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
    )
    start_daemon(schema, queue=queue, extra_config=config)
    await cursor_made(engine, hanging)
    names = [f"{queue}-steps-{i}" for i in range(count)]
    cleanup.extend(names)
    await insert_workflows(
        engine,
        [
            {
                "name": name,
                "steps": [{"step": "mark", "args": {"tag": f"{name}-{s}"}} for s in range(3)],
                "context": {"journal": "/dev/null"},
                "queue": queue,
            }
            for name in names
        ],
    )

    async def completed() -> bool:
        states = [(await engine.get(n)).state for n in names]
        return all(state is WorkflowState.COMPLETED for state in states)

    await eventually(completed, limit=60, what="every workflow completed")
    await eventually(lambda: receiver.hanging >= 1, what="a hanging POST")
    # The hung POSTs are answered only when the receiver closes, after the test.
    assert set(await delivery_states(engine, hanging)) == {"pending"}
    await eventually(lambda: len(receiver.to(f"/{healthy}")) == count, what="healthy POSTs")

    async def refused_for_good() -> bool:
        return await delivery_states(engine, refusing) == ["failed"] * count

    await eventually(refused_for_good, what="the refused deliveries failed")
    async with engine.db.transaction() as conn:
        tries = await conn.scalars(
            select(notification_deliveries.c.attempts).where(
                notification_deliveries.c.target == refusing
            )
        )
        assert list(tries) == [2] * count

    def counted() -> tuple[float, float, float]:
        # Counted once the outcome is committed: just after the row and the POST.
        return (
            metric(port, refusing, "failed"),
            metric(port, refusing, "retried"),
            metric(port, healthy, "sent"),
        )

    await eventually(lambda: counted() == (count, count, count), what="the metrics")


def test_wfectl_notify_test_posts_to_the_webhook(
    tmp_path: Path, receiver: Receiver, sqlite_url: str
) -> None:
    """`wfectl notify test NAME` POSTs a test message in the webhook's format and says
    what it answered; a refusing webhook is exit code 1 with the reason, an unknown name
    too."""
    config = tmp_path / "wfed.toml"
    config.write_text(
        notify_config(
            webhook(receiver, "probe", "default", ["error"], format="slack"),
            webhook(receiver, "refuses", "default", ["error"]),
        )
    )
    receiver.script("/refuses", 503)
    done = wfectl(sqlite_url, "notify", "test", "probe", config=config)
    assert (done.returncode, done.stdout.strip()) == (0, "webhook 'probe' answered HTTP 200")
    [body] = receiver.to("/probe")
    assert body["text"].startswith("wfed: test message to webhook 'probe' (by ")
    refused = wfectl(sqlite_url, "notify", "test", "refuses", config=config)
    assert refused.returncode == 1
    assert "HTTP 503: receiver says no" in refused.stderr
    unknown = wfectl(sqlite_url, "notify", "test", "nobody", config=config)
    assert unknown.returncode == 1
    assert "no webhook 'nobody' in [notify] (configured: probe, refuses)" in unknown.stderr


@pytest.mark.slow
async def test_a_delivery_of_a_killed_daemon_is_sent_by_another(
    schema: str,
    engine: Engine,
    start_daemon: DaemonFactory,
    queue: str,
    receiver: Receiver,
    tag: str,
    cleanup: list[str],
) -> None:
    """A daemon killed (-9) while its POST hangs leaves its claim behind; another daemon
    takes the delivery over once the claim expires (the webhook's timeout and the
    claimer's lease) and sends it: the delivery is sent, once recorded, its one retry made
    by the other daemon."""
    target = f"takeover-{tag}"
    receiver.script(f"/{target}", HANG)
    config = notify_config(webhook(receiver, target, queue, ["error"], timeout=1, backoff=0))
    first = start_daemon(schema, queue=queue, extra_config=config)
    await cursor_made(engine, target)
    name = f"{queue}-dies"
    cleanup.append(name)
    await insert_workflows(
        engine,
        [{"name": name, "steps": [{"step": "fail"}], "context": {}, "queue": queue}],
    )
    await eventually(lambda: receiver.hanging == 1, what="the first POST hanging")
    first.kill()
    second = start_daemon(schema, queue=queue, extra_config=config)

    async def sent() -> bool:
        return await delivery_states(engine, target) == ["sent"]

    await eventually(sent, limit=90, what="the delivery sent by the second daemon")
    bodies = receiver.to(f"/{target}")
    assert [body["workflow"] for body in bodies] == [name, name]
    await eventually(
        lambda: len(second.events("notification_sent")) == 1, what="the second daemon's line"
    )


async def test_a_hanging_webhook_does_not_hold_up_shutdown(
    schema: str,
    engine: Engine,
    start_daemon: DaemonFactory,
    queue: str,
    receiver: Receiver,
    tag: str,
    cleanup: list[str],
) -> None:
    """SIGTERM while a POST hangs (its timeout far away): the daemon still stops cleanly,
    handing the delivery back, pending and unclaimed, for any daemon to try again."""
    target = f"shutdown-{tag}"
    receiver.script(f"/{target}", HANG)
    config = notify_config(webhook(receiver, target, queue, ["completed"], timeout=300))
    daemon = start_daemon(schema, queue=queue, extra_config=config)
    await cursor_made(engine, target)
    name = f"{queue}-done"
    cleanup.append(name)
    await insert_workflows(
        engine,
        [
            {
                "name": name,
                "steps": [{"step": "mark", "args": {"tag": "one"}}],
                "context": {"journal": "/dev/null"},
                "queue": queue,
            }
        ],
    )
    await eventually(lambda: receiver.hanging == 1, what="the POST hanging")
    daemon.signal(signal.SIGTERM)
    assert await asyncio.to_thread(daemon.wait) == 0
    assert daemon.events("daemon_stopped")
    assert await delivery_states(engine, target) == ["pending"]
    async with engine.db.transaction() as conn:
        claims = await conn.execute(
            select(
                notification_deliveries.c.claimed_by, notification_deliveries.c.claimed_until
            ).where(notification_deliveries.c.target == target)
        )
        assert [tuple(row) for row in claims] == [(None, None)]


async def test_the_daemon_that_made_the_transition_sends_at_once(
    schema: str,
    engine: Engine,
    start_daemon: DaemonFactory,
    queue: str,
    receiver: Receiver,
    tag: str,
    cleanup: list[str],
) -> None:
    """With the notifier's poll five minutes away, a workflow's error is still POSTed
    within the test's wait: the daemon that committed it woke its notifier."""
    target = f"woken-{tag}"
    config = notify_config(webhook(receiver, target, queue, ["error"]), poll_interval=300)
    daemon = start_daemon(schema, queue=queue, extra_config=config)
    await cursor_made(engine, target)
    name = f"{queue}-wakes"
    cleanup.append(name)
    await insert_workflows(
        engine,
        [{"name": name, "steps": [{"step": "fail"}], "context": {}, "queue": queue}],
    )
    await eventually(lambda: len(receiver.to(f"/{target}")) == 1, what="the POST")
    assert receiver.to(f"/{target}")[0]["workflow"] == name
    await eventually(lambda: daemon.events("notification_sent"), what="the daemon's line")
