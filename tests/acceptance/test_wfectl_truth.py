"""What `wfectl` says must be true: what a stop will do when the owner is silent, how long
a step ran, the context an operator meant, the grammar of its lines. On SQLite: none of
it depends on the backend."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, update
from sqlalchemy.sql import Executable

from wfed import Engine
from wfed.clock import utc_now
from wfed.store.schema import daemons, workflow_events, workflow_steps, workflows

from .conftest import Result, Wfectl, write_config


@pytest.fixture(scope="module")
def cli(sqlite_url: str, wfectl_config: Path, upgrade_schema: Callable[[str], None]) -> Wfectl:
    """wfectl on the session's upgraded SQLite database."""
    upgrade_schema(sqlite_url)
    return Wfectl(sqlite_url, wfectl_config)


def with_engine(url: str, work: Callable[[Engine], Any]) -> Any:
    async def main() -> Any:
        async with Engine(url, actor="tester@host") as engine:
            return await work(engine)

    return asyncio.run(main())


def sql(url: str, *statements: Executable) -> None:
    """Write rows behind wfectl's back, as a daemon (or its death) leaves them."""

    async def work(engine: Engine) -> None:
        async with engine.db.transaction() as conn:
            for statement in statements:
                await conn.execute(statement)

    with_engine(url, work)


def workflow_id(url: str, name: str) -> int:
    async def work(engine: Engine) -> int:
        return (await engine.get(name)).row.id

    return int(with_engine(url, work))


def ok(result: Result, *fragments: str) -> str:
    assert result.code == 0, result
    assert result.err == "", result
    for fragment in fragments:
        assert fragment in result.out, result
    return result.out


def refused(result: Result, *fragments: str) -> str:
    assert result.code == 1, result
    assert result.out == "", result
    [line] = result.err.splitlines()
    assert line.startswith("wfectl: "), result
    for fragment in fragments:
        assert fragment in line, result
    return line


def ran(url: str, name: str, queue: str, steps: int = 2) -> int:
    """A workflow of `steps` zero-second sleeps, run to completion in this process."""
    definition = [{"step": "sleep", "args": {"seconds": 0}} for _ in range(steps)]

    async def work(engine: Engine) -> None:
        await engine.create_workflow(name, {}, definition, queue=queue)
        await engine.run(name)

    with_engine(url, work)
    return workflow_id(url, name)


# -- stop -----------------------------------------------------------------------------


def _running_under(url: str, name: str, queue: str, owner: str, lease_in: float) -> None:
    now = utc_now()
    with_engine(url, lambda engine: engine.create_workflow(name, {}, ["sleep"], queue=queue))
    sql(
        url,
        update(workflows)
        .where(workflows.c.name == name)
        .values(
            state="running",
            claimed_by=owner,
            lease_expires_at=now + timedelta(seconds=lease_in),
        ),
    )


def _daemon(url: str, daemon_id: str, heartbeat_age: float) -> None:
    now = utc_now()
    sql(
        url,
        insert(daemons).values(
            id=daemon_id,
            host="ops1",
            pid=4242,
            version="0.1.0",
            queues=["default"],
            max_workflows=32,
            lease_seconds=30,
            started_at=now - timedelta(hours=1),
            heartbeat_at=now - timedelta(seconds=heartbeat_age),
        ),
    )


def lease_seconds_said(text: str) -> int:
    """The N of "its lease expires, in ≤ Ns" in wfectl's message."""
    said = re.search(r"its lease expires, in ≤ (\d+)s", text)
    assert said is not None, text
    return int(said.group(1))


def test_stop_says_what_happens_as_the_owners_heartbeat_tells(
    cli: Wfectl, unique: str, tmp_path: Path
) -> None:
    """A live owner cancels the step within about a control interval; an owner silent for
    longer than a few heartbeats does nothing, and the stop waits for its lease to expire
    (said, with how long at most) and for a live daemon serving the queue; an owner that
    is not a registered daemon gets both possibilities."""
    queue = f"q-{unique}"
    names = {kind: f"stop-{kind}-{unique}" for kind in ("live", "late", "dead", "unknown")}
    _running_under(cli.url, names["live"], queue, f"live-{unique}", lease_in=600)
    _running_under(cli.url, names["late"], queue, f"late-{unique}", lease_in=600)
    _running_under(cli.url, names["dead"], queue, f"dead-{unique}", lease_in=-570)
    _running_under(cli.url, names["unknown"], queue, "someone@laptop", lease_in=600)
    # A heartbeat every 5 s here: late after 3 missed ones (a loaded test host takes
    # seconds to start the processes).
    config = write_config(tmp_path / "config.toml", "[daemon]\ncontrol_interval = 5\n")
    _daemon(cli.url, f"live-{unique}", heartbeat_age=0)
    _daemon(cli.url, f"late-{unique}", heartbeat_age=45)
    _daemon(cli.url, f"dead-{unique}", heartbeat_age=600)

    live, late, dead, unknown = Wfectl(cli.url, config).many(
        [["stop", names[kind]] for kind in names]
    )
    ok(
        live,
        f"stop requested for {names['live']} (running: its daemon live-{unique} cancels the "
        "current step within about 5s)",
    )
    text = ok(
        late,
        f"stop requested for {names['late']} (running, but its owner late-{unique} last sent a "
        "heartbeat ",
        "ago: if it is dead, the stop takes effect when its lease expires, in ≤ ",
        f"s, and a live daemon serving queue '{queue}' takes the workflow over)",
    )
    # The lease ends 600 s after it was written: ≤ 600 s read at once, less a moment later.
    assert 500 <= lease_seconds_said(text) <= 600, text
    assert "within about" not in text
    text = ok(
        dead,
        f"its owner dead-{unique} last sent a heartbeat 10m",
        "and its lease expired 9m",
        f"the stop takes effect when a live daemon serving queue '{queue}' takes the workflow over",
    )
    assert "within about" not in text
    text = ok(
        unknown,
        "(running under someone@laptop, not a registered daemon: if it is alive it cancels "
        "the current step within about 5s; if not, the stop takes effect when its lease "
        "expires, in ≤ ",
    )
    assert 500 <= lease_seconds_said(text) <= 600, text


# -- times ----------------------------------------------------------------------------


def test_show_gives_a_cut_off_steps_own_time_never_running(cli: Wfectl, unique: str) -> None:
    """After a forced shutdown the workflow is pending and its step row says `running`:
    show calls it interrupted, with the time until the release, and not `so far`. A step
    found interrupted (error) ran at most until it was found."""
    queue, url = f"q-{unique}", cli.url
    now = utc_now()
    released_name, found_name = f"released-{unique}", f"found-{unique}"
    released, found = ran(url, released_name, queue), ran(url, found_name, queue)
    steps = workflow_steps.c

    def step_one(wid: int, **values: Any) -> Executable:
        return (
            update(workflow_steps)
            .where(steps.workflow_id == wid, steps.position == 1)
            .values(**values)
        )

    def event(wid: int, name: str, kind: str, seconds_ago: float, **detail: Any) -> Executable:
        return insert(workflow_events).values(
            workflow_id=wid,
            workflow_name=name,
            position=1 if kind == "step_interrupted" else None,
            kind=kind,
            actor="d-gone",
            at=now - timedelta(seconds=seconds_ago),
            detail=detail,
        )

    sql(
        url,
        update(workflows)
        .where(workflows.c.id == released)
        .values(state="pending", current_step=1, finished_at=None),
        step_one(
            released, state="running", started_at=now - timedelta(seconds=50), finished_at=None
        ),
        event(released, released_name, "released", 44, interrupted=True),
        update(workflows)
        .where(workflows.c.id == found)
        .values(state="error", current_step=1, last_error="interrupted while running step 1"),
        step_one(
            found,
            state="error",
            started_at=now - timedelta(seconds=40),
            finished_at=now - timedelta(seconds=2),
            error="interrupted while running step 1 'sleep'",
        ),
        event(found, found_name, "step_interrupted", 2, rerun=False),
    )
    shown_released, shown_found = cli.many([["show", released_name], ["show", found_name]])
    text = ok(shown_released, "interrupted", "6.0s, cut off")
    assert "so far" not in text
    assert " running " not in text
    ok(shown_found, "cut off within 38s")


# -- the context an operator meant -------------------------------------------------------


def test_a_value_that_starts_like_json_must_be_json(cli: Wfectl, unique: str) -> None:
    """`ctx set x='{oops'` and `create --ctx x='[1,'` are refused with one line (exit 1)
    saying how to store the text instead; nothing is written. Plain text stays text."""
    name, queue = f"json-{unique}", f"q-{unique}"
    ok(cli("create", name, "--queue", queue, "--step", "sleep", "--ctx", "word=x"))
    with_engine(cli.url, lambda engine: engine.pause(name))
    broken_set, broken_create, broken_skip = cli.many(
        [
            ["ctx", name, "set", "x={oops"],
            ["create", f"{name}-2", "--queue", queue, "--step", "sleep", "--ctx", "y=[1,"],
            ["skip", name, "--set", "z={"],
        ]
    )
    line = refused(broken_set, "x={oops: the value starts like JSON but is not JSON")
    assert """x='"{oops"'""" in line
    refused(broken_create, "y=[1,: the value starts like JSON but is not JSON")
    refused(broken_skip, "z={:")
    ok(cli("ctx", name, "set", 'x="{oops"', "plain=hello world"), f"context of {name}: set x")

    async def context(engine: Engine) -> dict[str, Any]:
        return (await engine.get(name)).context

    assert with_engine(cli.url, context) == {"word": "x", "x": "{oops", "plain": "hello world"}
    assert cli("show", f"{name}-2").code == 1  # never created


# -- lines ----------------------------------------------------------------------------


def test_json_nested_too_deeply_to_parse_is_one_bounded_line(cli: Wfectl, unique: str) -> None:
    """A VALUE or --ctx-json nested thousands of levels deep is refused like any other bad
    JSON (exit 1 or 2, one line repeating only the head of it), not as an unexpected
    error; nothing is written."""
    deep = "[" * 3000 + "]" * 3000
    name = f"deep-{unique}"
    value, document = cli.many(
        [
            ["create", name, "--step", "sleep", "--ctx", f"k={deep}"],
            ["create", name, "--step", "sleep", "--ctx-json", f'{{"k": {deep}}}'],
        ]
    )
    line = refused(value, "nests too deeply to be read", "(6,000 characters)")
    assert len(line) < 400
    assert document.code == 2, document
    assert "nests too deeply to be read" in document.err
    assert "unexpected error" not in value.err + document.err
    assert cli("show", name).code == 1  # never created


def test_lines_count_in_the_right_number(cli: Wfectl, unique: str) -> None:
    """One step is `1 step`; a completed one-step workflow did `its 1 step`."""
    name, queue = f"one-{unique}", f"q-{unique}"
    ok(
        cli("create", name, "--queue", queue, "--step", "sleep"),
        f"created {name}: 1 step, queue {queue}",
    )
    ok(cli("create", "x", "--step", "sleep", "--dry-run"), "dry run: x would get 1 step, ")
    done = f"done-{unique}"
    ran(cli.url, done, queue, steps=1)
    text = ok(cli("show", done), "its 1 step done")
    assert "1 steps" not in text


def test_run_after_is_shown_only_while_it_holds_a_workflow_back(cli: Wfectl, unique: str) -> None:
    """A pending workflow shows its `run after`; once it failed, the old value is gone."""
    name, queue = f"later-{unique}", f"q-{unique}"
    ok(cli("create", name, "--queue", queue, "--step", "sleep", "--run-after", "+1h"))
    ok(cli("show", name), "run after", "(in 59m")
    sql(
        cli.url,
        update(workflows)
        .where(workflows.c.name == name)
        .values(state="error", last_error="step 0 'sleep' failed: boom"),
    )
    assert "run after" not in ok(cli("show", name), "error", "boom")


def test_db_grants_on_sqlite_says_it_has_no_accounts(cli: Wfectl) -> None:
    refused(cli("db", "grants", "--database", "wfed"), "SQLite has no accounts", cli.url[20:])


def test_placement_no_backend_can_store_is_refused_alike(cli: Wfectl, unique: str) -> None:
    """A priority outside 32 bits (or whose negation is), a queue name over 64
    characters and a --run-after past the year 9999: one line each, nothing written, and
    the same on SQLite, which would store any of them, as on the servers."""
    name = f"placed-{unique}"
    too_high, too_low, long_queue, dry_low, far = cli.many(
        [
            ["create", name, "--step", "sleep", "--priority", str(2**31)],
            ["create", name, "--step", "sleep", "--priority", str(-(2**31))],
            ["create", name, "--step", "sleep", "--queue", "q" * 65],
            ["create", name, "--step", "sleep", "--priority", str(-(2**31)), "--dry-run"],
            ["create", name, "--step", "sleep", "--run-after", "+999999999d"],
        ]
    )
    refused(too_high, f"priority {2**31} is out of range", str(2**31 - 1))
    refused(too_low, f"priority {-(2**31)} is out of range")
    refused(long_queue, "must be 1 to 64 characters")
    refused(dry_low, f"priority {-(2**31)} is out of range")
    assert far.code == 2, far
    assert "past the year 9999" in far.err, far
    listed = cli("list", "--json")
    assert name not in listed.out
    highest = cli("create", name, "--step", "sleep", "--priority", str(2**31 - 1))
    assert highest.code == 0, highest


def test_a_url_of_a_driver_without_asyncio_is_named(cli: Wfectl, tmp_path: Path) -> None:
    """`sqlite:///…` (the standard library's driver, not aiosqlite): one line saying so
    and which drivers to use, not an internal error."""
    line = refused(
        Wfectl(f"sqlite:///{tmp_path}/wfed.db", cli.config)("list"),
        "driver 'sqlite' does not work with asyncio",
        "sqlite+aiosqlite",
    )
    assert "unexpected" not in line


def test_show_json_lists_the_steps_of_a_row_no_daemon_validated(cli: Wfectl, unique: str) -> None:
    """A row enqueued with plain SQL has no step rows until a daemon claims it: `show
    --json` lists its definition's steps all the same, pending and `validated` false,
    as the table shows them "not validated yet"."""
    name = f"unvalidated-{unique}"
    definition = ["sleep", {"step": "shell", "args": {"cmd": ["true"]}, "label": "t"}, 7]
    sql(
        cli.url,
        insert(workflows).values(
            name=name, steps=definition, context={}, queue=f"nowhere-{unique}"
        ),
    )
    shown = cli("show", name, "--json")
    assert shown.code == 0, shown
    steps = shown.json()["steps"]
    assert [(s["position"], s["step"], s["label"], s["args"]) for s in steps] == [
        (0, "sleep", None, {}),
        (1, "shell", "t", {"cmd": ["true"]}),
        (2, "7", None, {}),
    ]
    assert {(s["state"], s["attempts"], s["validated"]) for s in steps} == {("pending", 0, False)}
