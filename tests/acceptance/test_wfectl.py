"""`wfectl` as operators use it: the real executable, on every database backend."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import pwd
import re
import socket
import sqlite3
import subprocess
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import typer
from sqlalchemy import delete, insert, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.sql import Executable

from wfed import Engine, StepError, WorkflowNotFound, __version__
from wfed.cli import app
from wfed.store.schema import daemons, workflows

from .conftest import NO_DATABASE, WFECTL, Result, Wfectl, write_config

SHOW_KEYS = {
    "name",
    "state",
    "current_step",
    "queue",
    "priority",
    "context",
    "last_error",
    "requested",
    "claimed_by",
    "halt_reason",
    "run_after",
    "created_at",
    "updated_at",
    "finished_at",
    "definition",
    "steps",
    "locks",
    "windows",
    "queue_windows",
    "window_open",
    "window_opens_at",
    "window_paused",
    "windows_invalid",
}
STEP_KEYS = {
    "position",
    "step",
    "label",
    "args",
    "state",
    "attempts",
    "error",
    "started_at",
    "finished_at",
    "validated",
}
LIST_KEYS = {
    "name",
    "state",
    "current_step",
    "queue",
    "priority",
    "requested",
    "claimed_by",
    "last_error",
    "created_at",
    "updated_at",
}
EVENT_KEYS = {"at", "kind", "position", "actor", "reason", "detail"}
DAEMON_KEYS = {
    "id",
    "host",
    "pid",
    "version",
    "queues",
    "max_workflows",
    "lease_seconds",
    "started_at",
    "heartbeat_at",
    "heartbeat_age_seconds",
    "alive",
    "running_workflows",
}
STEPS_KEYS = {
    "name",
    "kind",
    "module",
    "idempotent",
    "retries",
    "retry_delay",
    "backoff",
    "timeout",
    "args",
    "description",
}
T = TypeVar("T")
FAILING_RUN_CMD = '{"step": "run_cmd", "retries": 0}'
COLOUR = re.compile(r"\x1b\[(?:\d+;)*3\d")


# -- helpers --------------------------------------------------------------------------


def ok(result: Result, *fragments: str) -> str:
    """Assert a command succeeded (quietly on stderr); return its stdout."""
    assert result.code == 0, result
    assert result.err == "", result
    for fragment in fragments:
        assert fragment in result.out, result
    return result.out


def refused(result: Result, *fragments: str) -> str:
    """Assert exit code 1 with exactly one `wfectl: …` line on stderr; return that line."""
    assert result.code == 1, result
    assert result.out == "", result
    lines = result.err.splitlines()
    assert len(lines) == 1, result
    assert lines[0].startswith("wfectl: "), result
    for fragment in fragments:
        assert fragment in lines[0], result
    return lines[0]


def usage_error(result: Result) -> None:
    assert result.code == 2, result
    assert "Traceback" not in result.err, result


def create_args(name: str, queue: str, *steps: str, extra: tuple[str, ...] = ()) -> list[str]:
    args = ["create", name, "--queue", queue, *extra]
    for step in steps or ("stop_app", "sleep"):
        args += ["--step", step]
    return args


async def _execute(url: str, *statements: Executable) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for statement in statements:
                await conn.execute(statement)
    finally:
        await engine.dispose()


def execute(url: str, *statements: Executable) -> None:
    """Run SQL behind wfectl's back (what a daemon or an operator with SQL would do)."""
    asyncio.run(_execute(url, *statements))


def with_engine(url: str, work: Callable[[Engine], Awaitable[T]]) -> T:
    """Call the Python API in this process: set-up and checks that need no new `wfectl`
    process (each one costs an interpreter start)."""

    async def main() -> T:
        async with Engine(url, step_modules=["wfed.examples"]) as engine:
            return await work(engine)

    return asyncio.run(main())


def get(url: str, name: str) -> dict[str, Any]:
    """A workflow's `show --json` document, read in this process."""

    async def work(engine: Engine) -> dict[str, Any]:
        return (await engine.get(name)).to_json()

    return with_engine(url, work)


def create(url: str, name: str, queue: str, steps: list[Any] | None = None, **ctx: Any) -> None:
    """Create a workflow in this process (for tests of other commands)."""

    async def work(engine: Engine) -> None:
        await engine.create_workflow(name, ctx, steps or ["stop_app", "sleep"], queue=queue)

    with_engine(url, work)


def run_inline(url: str, name: str) -> str | None:
    """Run a workflow in this process (there is no daemon here); the StepError text if any."""

    async def work(engine: Engine) -> str | None:
        try:
            await engine.run(name)
        except StepError as exc:
            return str(exc)
        return None

    return with_engine(url, work)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.removesuffix("Z"))


# -- schema ---------------------------------------------------------------------------


def test_db_upgrade_is_idempotent(wfectl: Wfectl) -> None:
    """`db upgrade` on a current schema succeeds and says it is up to date."""
    ok(wfectl("db", "upgrade"), "is up to date (revision ")


def test_missing_schema_says_to_run_db_upgrade(tmp_path: Path, wfectl_config: Path) -> None:
    """A database without the wfed schema is refused with the fix: `wfectl db upgrade`."""
    empty = tmp_path / "empty.db"
    empty.touch()
    url = f"sqlite+aiosqlite:///{empty}"
    refused(Wfectl(url, wfectl_config)("list"), "missing", "run `wfectl db upgrade`")


# -- create and read --------------------------------------------------------------


def test_read_commands_show_a_new_workflow(wfectl: Wfectl, unique: str) -> None:
    """create stores steps and context (JSON values, --ctx over --ctx-json); list, show
    and history show it, as stable JSON and as colourless tables in a pipe."""
    name, queue = f"read-{unique}", f"q-{unique}"
    created = wfectl(
        *create_args(
            name,
            queue,
            "stop_app",
            '{"step": "sleep", "args": {"seconds": 0}, "label": "nap"}',
            extra=(
                "--priority",
                "7",
                "--ctx",
                "count=5",
                "--ctx",
                'servers=["a", "b"]',
                "--ctx",
                "name=web",
                "--ctx-json",
                '{"name": "overridden", "flag": true}',
            ),
        )
    )
    ok(created, f"created {name}: 2 steps, queue {queue}, priority 7")

    shown, listed, history, table, view, events = wfectl.many(
        [
            ["show", name, "--json"],
            ["list", "--queue", queue, "--json"],
            ["history", name, "--json"],
            ["list", "--queue", queue, "--state", "pending", "--state", "paused"],
            ["show", name],
            ["history", name],
        ]
    )
    workflow = shown.json()
    assert set(workflow) == SHOW_KEYS
    assert workflow["state"] == "pending"
    assert workflow["priority"] == 7
    assert workflow["context"] == {
        "count": 5,
        "servers": ["a", "b"],
        "name": "web",
        "flag": True,
    }
    assert [set(step) for step in workflow["steps"]] == [STEP_KEYS, STEP_KEYS]
    assert [(s["step"], s["label"], s["args"]) for s in workflow["steps"]] == [
        ("stop_app", None, {}),
        ("sleep", "nap", {"seconds": 0}),
    ]

    rows = listed.json()
    assert [set(row) for row in rows] == [LIST_KEYS]
    assert rows[0]["name"] == name

    (event,) = history.json()
    assert set(event) == EVENT_KEYS
    assert event["kind"] == "created"
    assert re.fullmatch(r".+@.+", event["actor"])

    for result in (table, view, events):
        assert COLOUR.search(result.out) is None, result
    ok(table, name, "pending", "0/2", queue)
    ok(view, "state", "pending", "step 0 'stop_app' of 2", "nap", "context", '"count": 5')
    ok(events, "created", "ago)", event["actor"])


def test_show_prints_the_head_of_a_large_context(wfectl: Wfectl, unique: str) -> None:
    """A context too long to read in a terminal is shown up to a bound, saying how much
    more there is and where; `show --json` still gives all of it."""
    name = f"large-{unique}"
    context = {f"key{n:05}": n for n in range(2000)}
    create(wfectl.url, name, f"q-{unique}", **context)
    table, document = wfectl.many([["show", name], ["show", name, "--json"]])
    out = ok(table, '"key00000": 0', "more lines: `--json` or `wfectl export` show all of it")
    assert '"key01999"' not in out
    assert document.json()["context"] == context


def test_names_that_differ_only_in_case_or_accents_are_two_workflows(
    wfectl: Wfectl, unique: str
) -> None:
    """Names are compared byte for byte on every backend (MariaDB's default collation
    would take `M3` for `m3` and `café` for `cafe`): each is created, shown and deleted
    as itself."""
    names = [f"case-{unique}", f"CASE-{unique}", f"café-{unique}", f"cafe-{unique}"]
    queue = f"q-{unique}"
    for name in names:
        ok(wfectl(*create_args(name, queue)))
    shown = wfectl.many([["show", name, "--json"] for name in names])
    assert [result.json()["name"] for result in shown] == names
    ok(wfectl("delete", names[1]))
    refused(wfectl("show", names[1]), f"no workflow named '{names[1]}'")
    assert wfectl("show", names[0], "--json").json()["name"] == names[0]


def test_show_says_a_request_on_a_halted_workflow_is_not_acted_on(
    wfectl: Wfectl, unique: str
) -> None:
    """`requested` set with SQL on a paused workflow waits for no daemon: show says so,
    and which wfectl verb acts on it."""
    name = f"halted-request-{unique}"
    create(wfectl.url, name, f"q-{unique}")
    ok(wfectl("pause", name))
    execute(wfectl.url, update(workflows).where(workflows.c.name == name).values(requested="stop"))
    ok(wfectl("show", name), "not acted on: no daemon takes a paused workflow", "`wfectl stop`")


def test_the_actor_is_the_account_not_the_environment(wfectl: Wfectl, unique: str) -> None:
    """The events name the account wfectl runs as (its uid), whatever USER and LOGNAME
    say; as root, the sudo invoker is named with it."""
    name = f"actor-{unique}"
    spoofing = wfectl.with_env(USER="mallory", LOGNAME="mallory", SUDO_USER="alice")
    ok(spoofing(*create_args(name, f"q-{unique}")))
    (event,) = wfectl("history", name, "--json").json()
    account = pwd.getpwuid(os.getuid()).pw_name
    expected = f"alice(sudo:{account})" if os.getuid() == 0 else account
    assert event["actor"] == f"{expected}@{socket.gethostname()}"


def test_dry_run_validates_and_writes_nothing(wfectl: Wfectl, unique: str) -> None:
    """create --dry-run prints the plan (or refuses a bad step) and stores nothing."""
    name, queue = f"dry-{unique}", f"q-{unique}"
    step = '{"step": "sleep", "args": {"seconds": 1}, "label": "nap", "retries": 2}'
    plan, bad = wfectl.many(
        [
            [*create_args(name, queue, "stop_app", step, "run_cmd"), "--dry-run"],
            [*create_args(name, queue, "stop_app", "no_such_step"), "--dry-run"],
        ]
    )
    out = ok(plan, "nothing was written", "idempotent", "nap", '{"seconds": 1}', "600s")
    assert "2 (every 0s)" in out
    refused(bad, "steps[1]: unknown step 'no_such_step'")
    with pytest.raises(WorkflowNotFound):
        get(wfectl.url, name)


def test_dry_run_refuses_a_name_the_create_would_refuse(
    wfectl: Wfectl, unique: str, tmp_path: Path
) -> None:
    """A dry run checks the name as the create would: taken (in the database) or not a
    name at all is exit 1; with the database unreachable the plan is still shown, saying
    the name went unchecked."""
    name, queue = f"dry-taken-{unique}", f"q-{unique}"
    create(wfectl.url, name, queue)
    missing_file = f"sqlite+aiosqlite:///{tmp_path / 'absent.db'}"
    taken, spaced, offline = [
        *wfectl.many(
            [
                [*create_args(name, queue), "--dry-run"],
                [*create_args(f" {name}", queue), "--dry-run"],
            ]
        ),
        wfectl.with_env(WFED_DATABASE_URL=missing_file)(
            *create_args(f"dry-offline-{unique}", queue), "--dry-run"
        ),
    ]
    refused(taken, f"a workflow named '{name}' already exists")
    refused(spaced, "must be 1 to 255 characters without surrounding spaces")
    ok(offline, "nothing was written (the name was not checked against the database")
    assert not (tmp_path / "absent.db").exists()


def test_run_after_accepts_relative_and_iso_times(wfectl: Wfectl, unique: str) -> None:
    """--run-after +10m is ten minutes from now; ISO times are UTC, offsets converted."""
    queue = f"q-{unique}"
    names = [f"later-{unique}-{n}" for n in range(3)]
    before = datetime.now(UTC).replace(tzinfo=None)
    relative, aware, naive = wfectl.many(
        [
            create_args(names[0], queue, extra=("--run-after", "+10m")),
            create_args(names[1], queue, extra=("--run-after", "2030-01-01T12:00:00+02:00")),
            create_args(names[2], queue, extra=("--run-after", "2030-01-01T12:00:00")),
        ]
    )
    after = datetime.now(UTC).replace(tzinfo=None)
    ok(relative, "runs after", "(in 9m5")
    ok(aware, "runs after 2030-01-01 10:00:00Z")
    ok(naive, "runs after 2030-01-01 12:00:00Z")

    run_after = utc(get(wfectl.url, names[0])["run_after"])
    assert before + timedelta(minutes=10) <= run_after + timedelta(milliseconds=1)
    assert run_after <= after + timedelta(minutes=10)
    assert get(wfectl.url, names[1])["run_after"] == "2030-01-01T10:00:00.000Z"
    assert get(wfectl.url, names[2])["run_after"] == "2030-01-01T12:00:00.000Z"


# -- refusals ---------------------------------------------------------------------


def test_refusals_exit_1_with_one_line(wfectl: Wfectl, unique: str, tmp_path: Path) -> None:
    """Unknown workflows, duplicate names, transitions the state forbids, bad steps and
    context edits are refused with exit code 1 and one line naming the problem."""
    name, queue = f"refuse-{unique}", f"q-{unique}"
    ghost = f"ghost-{unique}"
    create(wfectl.url, name, queue)
    backups = tmp_path / "backups"
    results = wfectl.many(
        [
            ["show", ghost],
            ["delete", ghost, "--backup", str(backups)],
            create_args(name, queue),
            ["resume", name],
            ["restart", name, "--from-step", "9"],
            ["ctx", name, "unset", "nokey"],
            create_args(f"bad-{unique}", queue, "stop_app", '{"step": "sleep", "args": {"x": 1}}'),
        ]
    )
    expected = [
        (f"no workflow named '{ghost}'",),
        (f"no workflow named '{ghost}'",),
        (f"a workflow named '{name}' already exists",),
        (f"cannot resume workflow '{name}': it is pending",),
        ("cannot restart", "from step 9"),
        ("no context key 'nokey'",),
        ("steps[1] (sleep): unknown argument 'x'",),
    ]
    for result, fragments in zip(results, expected, strict=True):
        refused(result, *fragments)
    assert not backups.exists() or not any(backups.iterdir())  # no backup of nothing


def test_delete_refuses_a_running_workflow(wfectl: Wfectl, unique: str) -> None:
    """delete refuses a running workflow; pause and stop leave requests for its owner."""
    name, queue = f"running-{unique}", f"q-{unique}"
    create(wfectl.url, name, queue)
    lease = datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=1)
    rows = update(workflows).where(workflows.c.name == name)
    execute(
        wfectl.url,
        rows.values(state="running", claimed_by="other-host:42", lease_expires_at=lease),
    )
    deleted, paused = wfectl.many([["delete", name], ["pause", name]])
    refused(deleted, f"cannot delete workflow '{name}': it is running")
    ok(paused, f"pause requested for {name} (running: it pauses after its current step)")
    ok(wfectl("stop", name, "--reason", "wrong hosts"), f"stop requested for {name} (running")
    workflow = get(wfectl.url, name)
    assert (workflow["state"], workflow["requested"]) == ("running", "stop")
    assert "wrong hosts" in workflow["halt_reason"]

    # What its owner would do: honour the stop. Then it can go.
    execute(wfectl.url, rows.values(state="stopped", requested=None, claimed_by=None))
    with_engine(wfectl.url, lambda engine: engine.delete(name))


def test_a_pause_during_the_last_step_says_it_completes(wfectl: Wfectl, unique: str) -> None:
    """A pause asked of a workflow running its last step cannot stop it before another
    step: wfectl says it completes, rather than promising a pause."""
    name, queue = f"last-{unique}", f"q-{unique}"
    create(wfectl.url, name, queue)
    lease = datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=1)
    rows = update(workflows).where(workflows.c.name == name)
    execute(
        wfectl.url,
        rows.values(
            state="running", current_step=1, claimed_by="other-host:42", lease_expires_at=lease
        ),
    )
    ok(
        wfectl("pause", name),
        f"pause requested for {name} (running its last step: no step is left to pause "
        "before, so it completes if that step succeeds)",
    )
    execute(wfectl.url, rows.values(state="stopped", requested=None, claimed_by=None))
    with_engine(wfectl.url, lambda engine: engine.delete(name))


def test_usage_errors_exit_2(wfectl_config: Path) -> None:
    """Malformed command lines are usage errors (exit code 2), before any database use."""
    cli = Wfectl(NO_DATABASE, wfectl_config)
    results = cli.many(
        [
            ["no-such-command"],
            ["create", "x"],
            ["create", "x", "--step", "sleep", "--ctx", "no-equals-sign"],
            ["create", "x", "--step", '{"step": "sleep"'],
            ["create", "x", "--step", "sleep", "--ctx-json", "[1]"],
            ["create", "x", "--step", "sleep", "--run-after", "tomorrow"],
            ["list", "--state", "sleeping"],
            ["restart", "x"],
            ["ctx", "x", "frobnicate", "a=1"],
            ["ctx", "x", "set", "no-equals-sign"],
        ]
    )
    for result in results:
        usage_error(result)
    assert "--run-after" in results[5].err
    # A choice names the choices, in words (not typer's pydantic "Value error,").
    assert "'sleeping' is not a workflow state: use pending, running" in results[6].err
    assert "'frobnicate' is not an action: use set or unset" in results[8].err
    assert "Value error" not in results[6].err + results[8].err


# -- control ----------------------------------------------------------------------


def test_control_commands_confirm_and_record_reasons(wfectl: Wfectl, unique: str) -> None:
    """pause, resume, stop, restart and delete each print one confirmation line; show
    says who paused and why; history keeps every action with its --reason."""
    name, queue = f"control-{unique}", f"q-{unique}"
    create(wfectl.url, name, queue)
    assert ok(wfectl("pause", name, "--reason", "hold on")) == f"paused {name}\n"
    ok(wfectl("show", name), "paused", "halted because", "paused by", "hold on")
    ok(wfectl("resume", name), f"resumed {name} (pending, from step 0 'stop_app')")
    assert ok(wfectl("stop", name, "-r", "not today")) == f"stopped {name}\n"
    ok(wfectl("restart", name, "--from-step", "1"), f"restarted {name} (pending, from step 1")
    assert ok(wfectl("delete", name, "--reason", "done")) == f"deleted {name}\n"

    events = with_engine(wfectl.url, lambda engine: engine.history(name))
    assert [(e.kind, e.reason) for e in events] == [
        ("created", None),
        ("paused", "hold on"),
        ("resumed", None),
        ("stopped", "not today"),
        ("restarted", None),
        ("deleted", "done"),
    ]
    assert len({e.actor for e in events}) == 1  # user@host, for wfectl and Engine alike


def test_skip_and_ctx_edit_the_context(wfectl: Wfectl, unique: str) -> None:
    """ctx set/unset edit a halted workflow's context (VALUE is JSON where it parses);
    skip --set patches it too and moves past the halted step."""
    name, queue = f"ctx-{unique}", f"q-{unique}"
    create(wfectl.url, name, queue, keep=1, drop="x")
    with_engine(wfectl.url, lambda engine: engine.pause(name))
    ok(
        wfectl("ctx", name, "set", 'cmd=["true"]', "n=3", "word=hello", "--reason", "fix"),
        f"context of {name}: set cmd, n, word",
    )
    ok(wfectl("ctx", name, "unset", "drop"), f"context of {name}: unset drop")
    ok(
        wfectl("skip", name, "--set", "done=true", "--set", 'more={"x": 2}', "-r", "by hand"),
        f"skipped step 0 'stop_app' of {name} (pending, from step 1 'sleep')",
    )
    workflow = get(wfectl.url, name)
    assert workflow["context"] == {
        "keep": 1,
        "cmd": ["true"],
        "n": 3,
        "word": "hello",
        "done": True,
        "more": {"x": 2},
    }
    assert (workflow["state"], workflow["current_step"]) == ("pending", 1)
    assert workflow["steps"][0]["state"] == "skipped"
    events = with_engine(wfectl.url, lambda engine: engine.history(name))
    assert [(e.kind, e.reason) for e in events][-3:] == [
        ("context_set", "fix"),
        ("context_set", None),
        ("skipped", "by hand"),
    ]


def test_round_trip_error_fix_retry_complete_backup_delete(
    wfectl: Wfectl, unique: str, tmp_path: Path
) -> None:
    """A failing step halts the workflow (show says why); after ctx set and retry it
    completes; export and delete --backup keep it as JSON; history outlives it."""
    name, queue, url = f"maint-{unique}", f"q-{unique}", wfectl.url
    workdir = tmp_path / "servers"
    context = ("--ctx", 'cmd=["false"]', "--ctx", 'target_servers=["a"]')
    context += ("--ctx", f"workdir={workdir}")
    steps = ("stop_app", FAILING_RUN_CMD, "start_app")
    ok(wfectl(*create_args(name, queue, *steps, extra=context)), f"created {name}: 3 steps")
    assert "command failed on a" in (run_inline(url, name) or "")

    ok(wfectl("show", name), "error", "halted because", "step 1 'run_cmd' failed")
    assert "command failed on a" in get(url, name)["halt_reason"]

    ok(wfectl("ctx", name, "set", 'cmd=["true"]'), f"context of {name}: set cmd")
    ok(wfectl("retry", name), f"retrying {name} (pending, from step 1 'run_cmd')")
    assert run_inline(url, name) is None
    assert (workdir / "a" / "app.running").exists()
    workflow = get(url, name)
    assert workflow["state"] == "completed"
    assert [(s["state"], s["attempts"]) for s in workflow["steps"]] == [
        ("completed", 1),
        ("completed", 2),
        ("completed", 1),
    ]

    backups = tmp_path / "backups"
    exported = wfectl("export", name)
    assert exported.json()["workflow"] == workflow
    assert {"retried", "context_set", "completed"} <= {e["kind"] for e in exported.json()["events"]}
    deleted = wfectl("delete", name, "--backup", str(backups))
    out = ok(deleted, f"deleted {name} (backup: ")
    (backup,) = backups.iterdir()
    assert re.fullmatch(rf"{name}-\d{{8}}T\d{{6}}Z\.json", backup.name)
    assert str(backup) in out
    saved = json.loads(backup.read_text(encoding="utf-8"))
    assert saved["workflow"] == workflow
    assert saved["events"][-1]["kind"] == "completed"

    kinds = [e["kind"] for e in wfectl("history", name, "--json").json()]
    assert (kinds[0], kinds[-1]) == ("created", "deleted")
    assert {"error", "context_set", "retried", "completed"} <= set(kinds)
    with pytest.raises(WorkflowNotFound):
        get(url, name)


# -- daemons and steps ------------------------------------------------------------


def test_daemons_shows_heartbeats_alive_and_dead(wfectl: Wfectl, unique: str) -> None:
    """daemons lists each daemon's heartbeat; one older than its lease is dead."""
    url = wfectl.url
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = [
        {
            "id": f"{which}-{unique}",
            "host": "ops1",
            "pid": 4242,
            "version": "0.1.0",
            "queues": ["default", "slow"],
            "max_workflows": 32,
            "lease_seconds": 30,
            "started_at": now - timedelta(hours=2),
            "heartbeat_at": now - timedelta(seconds=age),
        }
        for which, age in (("live", 1), ("gone", 600))
    ]
    execute(url, daemons.insert().values(rows))
    try:
        listed, table = wfectl.many([["daemons", "--json"], ["daemons"]])
    finally:
        execute(url, delete(daemons).where(daemons.c.id.in_([row["id"] for row in rows])))
    document = listed.json()
    assert set(document) == {"daemons", "awaiting_recovery"}
    assert isinstance(document["awaiting_recovery"], int)
    mine = {d["id"]: d for d in document["daemons"] if d["id"].endswith(unique)}
    assert {key for d in mine.values() for key in d} == DAEMON_KEYS
    assert mine[f"live-{unique}"]["alive"] is True
    assert mine[f"gone-{unique}"]["alive"] is False
    assert mine[f"gone-{unique}"]["heartbeat_age_seconds"] >= 600
    assert mine[f"live-{unique}"]["queues"] == ["default", "slow"]
    assert mine[f"live-{unique}"]["running_workflows"] == 0
    ok(
        table,
        f"live-{unique}",
        "alive",
        f"gone-{unique}",
        "dead (heartbeat older than its 30s lease)",
    )


def test_steps_lists_registered_steps_without_a_database(wfectl_config: Path) -> None:
    """steps lists the built-in and configured steps (kind, policy, args) and needs no
    database."""
    cli = Wfectl(NO_DATABASE, wfectl_config)
    listed, table = cli.many([["steps", "--json"], ["steps"]])
    steps = {step["name"]: step for step in listed.json()}
    assert {"sleep", "pause", "stop_app", "run_cmd", "start_app"} <= set(steps)
    assert all(set(step) == STEPS_KEYS for step in steps.values())
    assert steps["stop_app"]["kind"] == "function"
    assert steps["run_cmd"]["kind"] == "class"
    assert (steps["run_cmd"]["idempotent"], steps["run_cmd"]["retries"]) == (False, 1)
    assert steps["run_cmd"]["timeout"] == 600.0
    assert steps["sleep"]["args"] == [{"name": "seconds", "required": False, "default": 0.0}]
    ok(table, "run_cmd", "class", "seconds=0.0", "wait a number of seconds")


# -- configuration, database errors, terminal ----------------------------------------


def test_bad_config_key_is_refused_naming_it(tmp_path: Path, sqlite_url: str) -> None:
    """An unknown config key is exit code 1 with one line naming the section and key."""
    config = write_config(tmp_path / "bad.toml", "[daemon]\nqueue = ['x']\n")
    refused(Wfectl(sqlite_url, config)("list"), "[daemon] queue: unknown key")


@pytest.mark.parametrize(
    "url",
    [
        "mysql+asyncmy://root:s3cr3t-pw@127.0.0.1:1/wfed",
        "postgresql+asyncpg://root:s3cr3t-pw@127.0.0.1:1/wfed",
    ],
    ids=["mysql", "postgresql"],
)
def test_unreachable_database_is_one_line_without_password(url: str, wfectl_config: Path) -> None:
    """An unreachable database is exit code 1 within seconds: one line, no traceback,
    the URL shown without its password."""
    start = time.monotonic()
    line = refused(Wfectl(url, wfectl_config)("list"), "unreachable", "root:***@127.0.0.1:1")
    assert time.monotonic() - start < 10
    assert "s3cr3t" not in line


@pytest.mark.parametrize("backend", ["mariadb", "postgresql"])
def test_a_database_missing_on_the_server_is_named(
    backend: str, request: pytest.FixtureRequest, wfectl_config: Path
) -> None:
    """A URL naming a database the server does not have says so (not that the login was
    refused) in one line, exit code 1."""
    server_url: str = request.getfixturevalue(f"{backend}_url")
    url = make_url(server_url).set(database="wfed_no_such_database")
    refused(
        Wfectl(url.render_as_string(hide_password=False), wfectl_config)("list"),
        "wfed_no_such_database does not exist",
        "create it, or fix the database name in the URL",
    )


def test_upgrade_of_a_file_with_a_foreign_table_says_so(
    tmp_path: Path, wfectl_config: Path
) -> None:
    """`db upgrade` of an SQLite file holding a `workflows` table wfed did not make names
    the clash, not an unreachable database, and changes nothing."""
    path = tmp_path / "foreign.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE workflows (x INTEGER)")
    url = f"sqlite+aiosqlite:///{path}"
    line = refused(Wfectl(url, wfectl_config)("db", "upgrade"), "already holds a table")
    assert "unreachable" not in line
    with contextlib.closing(sqlite3.connect(path)) as db:
        tables = {
            row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
    assert tables == {"workflows"}


@pytest.mark.parametrize("backend", ["mariadb", "postgresql"])
def test_refused_login_is_one_line_without_password(
    backend: str, request: pytest.FixtureRequest, wfectl_config: Path
) -> None:
    """A server refusing the login is exit code 1: one line saying so, no password."""
    server_url: str = request.getfixturevalue(f"{backend}_url")
    url = make_url(server_url).set(username="wfed_nobody", password="s3cr3t-pw")
    line = refused(
        Wfectl(url.render_as_string(hide_password=False), wfectl_config)("list"),
        "refused the login",
        "wfed_nobody:***@",
    )
    assert "s3cr3t" not in line


def test_version_and_help_with_examples(wfectl_config: Path) -> None:
    """--version prints the version; every command's help has an example."""
    cli = Wfectl(NO_DATABASE, wfectl_config)
    version, helped = cli.many([["--version"], ["create", "--help"]])
    assert ok(version) == f"wfectl {__version__}\n"
    ok(helped, "Example:", "--dry-run", "--run-after")

    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    commands = dict(group.commands)
    for group_name in [n for n, c in commands.items() if isinstance(c, typer.core.TyperGroup)]:
        subgroup = commands.pop(group_name)
        assert isinstance(subgroup, typer.core.TyperGroup)
        commands.update({f"{group_name} {n}": c for n, c in subgroup.commands.items()})
        if subgroup.invoke_without_command:  # the group alone does something (locks: lists)
            commands[group_name] = subgroup
    expected = {
        "db upgrade", "db grants", "create", "list", "show", "history", "export", "daemons",
        "steps", "pause", "resume", "stop", "retry", "skip", "restart", "delete", "ctx",
        "health", "purge", "run", "runbook lint", "watch", "logs", "windows",
        "locks", "locks release", "notifications", "notify test",
        "schedule add", "schedule list", "schedule pause", "schedule resume",
        "schedule remove", "schedule next",
    }  # fmt: skip
    assert set(commands) == expected
    for command_name, command in commands.items():
        assert re.search(r"Examples?:\s+wfectl", command.help or ""), command_name


def test_colours_only_on_a_terminal_and_not_with_no_color(wfectl_config: Path) -> None:
    """On a terminal output is coloured, unless NO_COLOR is set; in a pipe it never is."""

    def on_terminal(**env: str) -> str:
        leader, follower = pty.openpty()
        base = {k: v for k, v in os.environ.items() if k not in {"NO_COLOR", "FORCE_COLOR"}}
        base["TERM"] = "xterm-256color"
        base["WFED_CONFIG"] = str(wfectl_config)
        process = subprocess.Popen(
            [str(WFECTL), "create", "x", "--step", "sleep", "--ctx", "a=1", "--dry-run"],
            stdout=follower,
            stderr=follower,
            env={**base, **env},
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(leader)
        assert process.wait(timeout=60) == 0
        return b"".join(chunks).decode()

    assert COLOUR.search(on_terminal())
    plain = on_terminal(NO_COLOR="1")
    assert "nothing was written" in plain
    assert COLOUR.search(plain) is None


def test_control_characters_in_a_row_are_shown_not_obeyed(wfectl: Wfectl, unique: str) -> None:
    """A name written with SQL holding terminal escape sequences (a window title, a
    screen clear) or a bidirectional override (which shows what follows reversed) is
    printed with them as visible escapes by list, show and pause: the operator's terminal
    never receives them."""
    name = f"esc-{unique}\x1b]0;pwned\x07\x1b[2J\u202egnp.exe"
    queue = f"q-{unique}"
    execute(wfectl.url, insert(workflows).values(name=name, steps=["sleep"], queue=queue))
    shown = f"esc-{unique}\\x1b]0;pwned\\x07\\x1b[2J\\u202egnp.exe"
    for result in (
        wfectl("list", "--queue", queue),
        wfectl("show", name),
        wfectl("pause", name),
    ):
        ok(result, shown)
        assert "\x1b" not in result.out
        assert "\x07" not in result.out
        assert "\u202e" not in result.out


def test_a_blob_an_sqlite_row_holds_for_a_name_is_read_as_text(wfectl: Wfectl, unique: str) -> None:
    """SQLite stores a BLOB in any column: one in a workflow's name and queue, and in an
    event's actor, is shown as text (bad bytes replaced) by list, history and health,
    instead of breaking them for every row."""
    if not wfectl.url.startswith("sqlite"):
        pytest.skip("only SQLite stores a BLOB in a text column")
    queue = f"q-{unique}"
    create(wfectl.url, f"plain-{unique}", queue)
    execute(
        wfectl.url,
        text(
            "INSERT INTO workflows (name, steps, queue) "
            "VALUES (CAST(X'FF00FE' || :u AS BLOB), '[\"sleep\"]', CAST(:q AS BLOB))"
        ).bindparams(u=unique, q=queue),
    )
    listed = ok(wfectl("list", "--limit", "5"), f"plain-{unique}")
    assert "\ufffd" in listed
    health = wfectl("health")  # exit 1: no daemon serves the queue, which it must say
    assert "no live daemon serves it" in health.err
    assert "unexpected error" not in health.err


def insert_by_hand(url: str, unique: str, name: str, column: str, value: str) -> None:
    """INSERT, as plain SQL would, a one-step workflow whose `column` holds `value`
    (after a workflow made by wfed, so that the schema is on this database)."""
    create(url, f"plain-{unique}", f"q-{unique}")
    execute(
        url,
        text(
            f"INSERT INTO workflows (name, steps, {column}) VALUES (:n, '[\"sleep\"]', :v)"
        ).bindparams(n=name, v=value),
    )


def test_show_of_a_row_whose_current_step_is_text(wfectl: Wfectl, unique: str) -> None:
    """SQLite keeps text written into `current_step`: `show` prints the row as it is
    (the daemon sends it to error when it claims it) instead of failing."""
    if not wfectl.url.startswith("sqlite"):
        pytest.skip("only SQLite stores text in an INTEGER column")
    name = f"textstep-{unique}"
    insert_by_hand(wfectl.url, unique, name, "current_step", "abc")
    ok(wfectl("show", name), name, "step abc of 1")


def test_a_lone_surrogate_in_a_context_is_shown_escaped(wfectl: Wfectl, unique: str) -> None:
    """A context written by hand with a JSON "\\ud800" (a lone surrogate, which UTF-8
    cannot encode) is shown escaped by show, show --json and export instead of failing
    them; the JSON they print reads back as the same value."""
    if not wfectl.url.startswith("sqlite"):
        pytest.skip(
            "only SQLite stores a lone surrogate (MariaDB's and PostgreSQL's JSON refuse it)"
        )
    name = f"surrogate-{unique}"
    insert_by_hand(wfectl.url, unique, name, "context", '{"k": "\\ud800x"}')
    assert "\\ud800x" in ok(wfectl("show", name), name)
    shown = wfectl("show", name, "--json")
    assert shown.code == 0, shown
    assert json.loads(shown.out)["context"] == {"k": "\ud800x"}
    exported = wfectl("export", name)
    assert exported.code == 0, exported
    assert json.loads(exported.out)["workflow"]["context"] == {"k": "\ud800x"}
