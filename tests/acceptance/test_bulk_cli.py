"""Bulk control: `pause`, `resume`, `stop`, `retry`, `skip` and `delete` with a filter
instead of a name — the real executable, on every backend."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import update

from wfed import Engine
from wfed.engine import default_actor
from wfed.store.schema import workflows

from .conftest import WFECTL, Result, Wfectl, _environment

T = TypeVar("T")
OTHER = "other@client"
OUTCOME_KEYS = {"name", "selected_state", "changed", "action", "state", "message"}
DOCUMENT_KEYS = {
    "operation",
    "filter",
    "reason",
    "actor",
    "at",
    "matched",
    "changed",
    "skipped",
    "workflows",
}


def with_engine(url: str, work: Callable[[Engine], Awaitable[T]], actor: str = OTHER) -> T:
    """The Python API in this process, as another client (`other@client`)."""

    async def main() -> T:
        async with Engine(url, step_modules=["wfed.examples"], actor=actor) as engine:
            return await work(engine)

    return asyncio.run(main())


def create_many(url: str, names: list[str], queue: str, steps: list[Any] | None = None) -> None:
    async def work(engine: Engine) -> None:
        for name in names:
            await engine.create_workflow(name, {}, steps or ["stop_app", "sleep"], queue=queue)

    with_engine(url, work)


def states(url: str, names: list[str]) -> dict[str, str | None]:
    """Each workflow's state (None: gone)."""

    async def work(engine: Engine) -> dict[str, str | None]:
        found = {s.name: s.state.value for s in await engine.list(limit=100_000)}
        return {name: found.get(name) for name in names}

    return with_engine(url, work)


def events(url: str, name: str) -> list[tuple[str, str, str | None]]:
    """(kind, actor, reason) of a workflow's events."""

    async def work(engine: Engine) -> list[tuple[str, str, str | None]]:
        return [(e.kind, e.actor, e.reason) for e in await engine.history(name)]

    return with_engine(url, work)


def on_a_terminal(
    wfectl: Wfectl, args: list[str], meanwhile: Callable[[], None], answer: str
) -> Result:
    """Run wfectl with its stdin and stderr on a terminal (stdout in a pipe): wait for
    its question, call `meanwhile`, answer."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [str(WFECTL), *args],
        env=_environment(wfectl.url, wfectl.config, dict(wfectl.env)),
        stdin=follower,
        stderr=follower,
        stdout=subprocess.PIPE,
        text=True,
    )
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 60
    try:
        while b"[y/N]" not in seen:
            assert time.monotonic() < deadline, f"no question: {seen!r}"
            assert process.poll() is None, f"exited before asking: {seen!r}"
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                seen += os.read(leader, 65536)
        meanwhile()
        os.write(leader, answer.encode() + b"\n")
        out, _ = process.communicate(timeout=120)
        while True:  # what it wrote to the terminal after the question
            ready, _, _ = select.select([leader], [], [], 0.2)
            if not ready:
                break
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
    return Result(tuple(args), process.returncode, out, seen.decode(errors="replace"))


def test_a_bulk_pause_leaves_alone_what_another_client_changed(wfectl: Wfectl, unique: str) -> None:
    """`pause --queue Q` over 50 pending workflows asks on the terminal; while it asks,
    another client stops, pauses, deletes and claims five of them. It then pauses exactly
    the 45 it reports as changed, each with its own `paused` event (actor and reason),
    reports the five as left alone, and exits 1."""
    queue = f"q-{unique}"
    names = [f"bulk-{unique}-{i:02d}" for i in range(50)]
    create_many(wfectl.url, names, queue)
    changed_by_other = {
        names[3]: "stopped",
        names[17]: "stopped",
        names[25]: "paused",
        names[40]: None,
        names[49]: "running",
    }

    def meanwhile() -> None:
        async def work(engine: Engine) -> None:
            await engine.stop(names[3], "other")
            await engine.stop(names[17], "other")
            await engine.pause(names[25], "other")
            await engine.delete(names[40], "other")
            async with engine.db.transaction() as conn:  # a daemon's claim, as SQL
                await conn.execute(
                    update(workflows)
                    .where(workflows.c.name == names[49])
                    .values(state="running", claimed_by="some-daemon:1")
                )

        with_engine(wfectl.url, work)

    result = on_a_terminal(
        wfectl,
        ["pause", "--queue", queue, "--reason", "bulk test", "--json"],
        meanwhile,
        "y",
    )
    assert "50 workflows match (50 pending)" in result.err, result
    assert result.code == 1, result
    assert "5 of 50 workflows left alone" in result.err, result
    document = json.loads(result.out)
    assert set(document) == DOCUMENT_KEYS
    assert document["operation"] == "pause"
    assert document["filter"]["queue"] == queue
    assert (document["matched"], document["changed"], document["skipped"]) == (50, 45, 5)
    assert document["reason"] == "bulk test"
    outcomes = {outcome["name"]: outcome for outcome in document["workflows"]}
    assert set(outcomes) == set(names)
    assert all(set(outcome) == OUTCOME_KEYS for outcome in outcomes.values())
    reported_paused = {name for name, o in outcomes.items() if o["changed"]}
    assert reported_paused == set(names) - set(changed_by_other)
    for name in reported_paused:
        assert outcomes[name]["action"] == "paused"
        assert outcomes[name]["state"] == "paused"
    for name in changed_by_other:
        assert outcomes[name]["changed"] is False
        assert outcomes[name]["selected_state"] == "pending"
        assert outcomes[name]["message"], outcomes[name]
    assert "it is running now, was pending when selected" in outcomes[names[49]]["message"]
    assert "no workflow named" in outcomes[names[40]]["message"]

    now = states(wfectl.url, names)
    assert {name for name, state in now.items() if state == "paused"} == reported_paused | {
        names[25]
    }
    for name, state in changed_by_other.items():
        assert now[name] == state
    actor = document["actor"]
    assert actor == default_actor()
    for name in names:
        if name == names[40]:
            continue
        bulk_events = [e for e in events(wfectl.url, name) if e[2] == "bulk test"]
        if name in reported_paused:
            assert bulk_events == [("paused", actor, "bulk test")], name
        else:
            assert bulk_events == [], name


def test_without_a_terminal_a_bulk_command_needs_yes(wfectl: Wfectl, unique: str) -> None:
    """No terminal to ask on and no --yes: refused, exit code 1, nothing changed; with
    --yes it goes ahead; nothing to match is not a failure."""
    queue = f"q-{unique}"
    names = [f"bulk-{unique}-{i}" for i in range(3)]
    create_many(wfectl.url, names, queue)
    refused = wfectl("pause", "--queue", queue)
    assert refused.code == 1, refused
    assert refused.out == ""
    assert refused.err == (
        "wfectl: 3 workflows match (3 pending); add --yes to pause them without a terminal "
        "to confirm on\n"
    )
    assert set(states(wfectl.url, names).values()) == {"pending"}
    done = wfectl("pause", "--queue", queue, "--yes", "--reason", "window")
    assert done.code == 0, done
    assert done.err == ""
    for name in names:
        assert f"paused {name} (was pending)" in done.out
    assert done.out.endswith("pause: 3 of 3 workflows changed\n")
    assert set(states(wfectl.url, names).values()) == {"paused"}
    nothing, as_json = wfectl.many(
        [["pause", "--queue", queue, "--yes"], ["retry", "--queue", queue, "--json", "-y"]]
    )
    assert (nothing.code, nothing.out) == (0, "no workflows match\n"), nothing
    assert as_json.code == 0, as_json
    assert as_json.json()["matched"] == 0
    assert as_json.json()["workflows"] == []


def test_every_bulk_operation(wfectl: Wfectl, unique: str, tmp_path: Path) -> None:
    """stop, pause, skip (with --set), resume, retry and delete (with --backup) by
    queue, state, name pattern and age; each records its own event."""
    queue = f"q-{unique}"
    a, b, c = (f"bulk-{unique}-{x}" for x in ("a", "b", "c"))
    create_many(wfectl.url, [a, b, c], queue)
    yes = ["--queue", queue, "--yes", "--reason", "ops"]
    none = wfectl("stop", "--name-like", f"bulk-{unique}-?c", *yes)  # ? is one character
    assert (none.code, none.out) == (0, "no workflows match\n"), none
    stopped = wfectl("stop", "--name-like", f"*-{unique}-c", *yes)
    assert stopped.code == 0, stopped
    assert f"stopped {c} (was pending)" in stopped.out
    paused = wfectl("pause", *yes, "--json").json()
    assert {(o["name"], o["action"]) for o in paused["workflows"]} == {(a, "paused"), (b, "paused")}
    skipped = wfectl("skip", "--state", "paused", *yes, "--set", "note=by-hand")
    assert skipped.code == 0, skipped
    shown = {name: wfectl("show", name, "--json").json() for name in (a, b)}
    for workflow in shown.values():
        assert workflow["state"] == "pending"
        assert workflow["current_step"] == 1
        assert workflow["context"] == {"note": "by-hand"}
        assert workflow["steps"][0]["state"] == "skipped"
    assert wfectl("pause", *yes).code == 0
    resumed = wfectl("resume", "--older-than", "0s", *yes)
    assert resumed.code == 0, resumed
    assert set(states(wfectl.url, [a, b]).values()) == {"pending"}
    nothing_old = wfectl("stop", "--older-than", "1d", *yes)
    assert (nothing_old.code, nothing_old.out) == (0, "no workflows match\n")
    backups = tmp_path / "backups"
    deleted = wfectl("delete", "--state", "stopped", *yes, "--backup", str(backups))
    assert deleted.code == 0, deleted
    assert f"deleted {c} (was stopped)" in deleted.out
    [backup] = backups.iterdir()
    assert json.loads(backup.read_text())["workflow"]["name"] == c
    assert states(wfectl.url, [a, b, c]) == {a: "pending", b: "pending", c: None}
    kinds = [(kind, reason) for kind, _, reason in events(wfectl.url, a)]
    assert kinds == [
        ("created", None),
        ("paused", "ops"),
        ("skipped", "ops"),
        ("paused", "ops"),
        ("resumed", "ops"),
    ]
    assert events(wfectl.url, c)[-1][0] == "deleted"

    async def fail_one(engine: Engine) -> None:
        async with engine.db.transaction() as conn:
            await conn.execute(
                update(workflows)
                .where(workflows.c.name == a)
                .values(state="error", last_error="boom")
            )

    with_engine(wfectl.url, fail_one)
    retried = wfectl("retry", *yes, "--json").json()
    assert [(o["name"], o["action"], o["state"]) for o in retried["workflows"]] == [
        (a, "retried", "pending")
    ]


def test_usage_errors(wfectl: Wfectl, unique: str) -> None:
    """Neither NAME nor filter, both, --json with a NAME, a state the command never
    applies to, a bad duration: usage errors (exit code 2), nothing done."""
    results = wfectl.many(
        [
            ["pause"],
            ["pause", f"x-{unique}", "--queue", "q"],
            ["pause", f"x-{unique}", "--json"],
            ["retry", "--state", "paused", "--queue", f"q-{unique}", "--yes"],
            ["delete", "--older-than", "soon", "--yes"],
        ]
    )
    for result in results:
        assert result.code == 2, result
        assert "Traceback" not in result.err, result
    assert "NAME, or a filter" in results[0].err
    assert "not both" in results[1].err
    assert "retry does not apply to paused" in results[3].err


def test_a_running_workflow_gets_a_request(wfectl: Wfectl, unique: str) -> None:
    """pause and stop of a running workflow leave a request for its owner (reported as
    `pause_requested` / `stop_requested`); the workflow is still running."""
    queue = f"q-{unique}"
    names = [f"bulk-{unique}-run-{i}" for i in range(2)]
    create_many(wfectl.url, names, queue)

    async def claim(engine: Engine) -> None:
        async with engine.db.transaction() as conn:  # as a daemon's claim would
            await conn.execute(
                update(workflows)
                .where(workflows.c.name.in_(names))
                .values(state="running", claimed_by="some-daemon:1")
            )

    with_engine(wfectl.url, claim)
    paused = wfectl("pause", "--name-like", names[0], "--yes", "--json").json()
    stopped = wfectl("stop", "--queue", queue, "--state", "running", "--yes", "--json").json()
    assert [(o["name"], o["action"], o["state"]) for o in paused["workflows"]] == [
        (names[0], "pause_requested", "running")
    ]
    assert [(o["name"], o["action"]) for o in stopped["workflows"]] == [
        (names[0], "stop_requested"),
        (names[1], "stop_requested"),
    ]
    shown = wfectl("show", names[1], "--json").json()
    assert (shown["state"], shown["requested"]) == ("running", "stop")
