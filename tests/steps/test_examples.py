"""The example runbook (wfed/examples) end to end, with the Engine inline, in a tmp dir."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from wfed import Engine, StepError, WorkflowHalted
from wfed.examples import APPCTL, ENQUEUE_SQL, example_definition
from wfed.states import WorkflowState

if TYPE_CHECKING:  # the fixtures' types (tests/steps/conftest.py)
    from conftest import CreateFn, EngineFactory

SERVERS = ["intweb1", "intweb2"]


def shell_context(**extra: Any) -> dict[str, Any]:
    """The context the shell runbook needs; the maintenance command checks that the app
    is stopped where it runs."""
    return {
        "target_servers": SERVERS,
        "workdir": "servers",
        "drain_seconds": 0,
        "cmd": ["sh", "-c", "test ! -e app.running && date > last-maintenance"],
        **extra,
    }


def start_apps(root: Path) -> None:
    for server in SERVERS:
        (root / server).mkdir(parents=True, exist_ok=True)
        (root / server / "app.running").write_text("running\n")


def running(root: Path) -> list[bool]:
    return [(root / server / "app.running").exists() for server in SERVERS]


@pytest.mark.parametrize("backend", ["sqlite", "mariadb"])
async def test_shell_runbook_end_to_end(
    backend: str,
    request: pytest.FixtureRequest,
    make_engine: EngineFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """example_definition() stops the apps, runs the command, starts them, saves output."""
    monkeypatch.chdir(tmp_path)
    url = request.getfixturevalue(f"{backend}_url")
    engine = make_engine(url, step_modules=["wfed.examples"])
    start_apps(tmp_path / "servers")
    name = f"maint-{uuid.uuid4().hex[:12]}"
    await engine.create_workflow(name, shell_context(), example_definition(), queue="steps-test")

    workflow = await engine.run(name)

    assert workflow.state is WorkflowState.COMPLETED
    assert running(tmp_path / "servers") == [True, True]
    for server in SERVERS:
        assert (tmp_path / "servers" / server / "last-maintenance").read_text().strip()
    context = workflow.context
    assert context["stop_output"]["stdout"] == "intweb1: stopped\nintweb2: stopped\n"
    assert context["maintenance_output"]["stdout"] == "intweb1: ran sh\nintweb2: ran sh\n"
    assert context["start_output"]["stdout"] == "intweb1: started\nintweb2: started\n"
    assert [step.label for step in workflow.steps] == [
        "stop the app",
        "let connections drain",
        "run the maintenance command",
        "start the app",
    ]


async def test_runbook_walkthrough_pause_fail_fix_retry(
    engine: Engine, create: CreateFn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The docs' walk-through: pause, resume, fail (apps stay stopped), fix ctx, retry."""
    monkeypatch.chdir(tmp_path)
    start_apps(tmp_path / "servers")
    failing = ["sh", "-c", "echo disk full >&2; exit 4"]
    name = await create(example_definition(), shell_context(cmd=failing))

    await engine.pause(name, reason="change window not open yet")
    with pytest.raises(WorkflowHalted, match="paused"):
        await engine.run(name)
    await engine.resume(name)

    with pytest.raises(StepError, match="exited with code 4") as failed:
        await engine.run(name)
    assert "disk full" in str(failed.value)
    halted = await engine.get(name)
    assert halted.state is WorkflowState.ERROR
    assert halted.current_step == 2
    assert running(tmp_path / "servers") == [False, False]

    await engine.set_context(name, {"cmd": ["touch", "maintained"]}, reason="fixed cmd")
    await engine.retry(name)
    done = await engine.run(name)

    assert done.state is WorkflowState.COMPLETED
    assert [step.attempts for step in done.steps] == [1, 1, 2, 1]
    assert running(tmp_path / "servers") == [True, True]
    assert all((tmp_path / "servers" / server / "maintained").exists() for server in SERVERS)


async def test_python_steps_runbook(
    engine: Engine, create: CreateFn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Python steps stop_app, run_cmd (string cmd via sh), start_app still work."""
    monkeypatch.chdir(tmp_path)
    name = await create(
        ["stop_app", "run_cmd", "start_app"],
        {"target_servers": SERVERS, "cmd": "date > last-maintenance"},
    )
    workflow = await engine.run(name)
    assert workflow.state is WorkflowState.COMPLETED
    root = tmp_path / "wfed-example"
    assert running(root) == [True, True]
    assert all((root / server / "last-maintenance").exists() for server in SERVERS)
    assert workflow.context["stopped_servers"] == SERVERS
    assert workflow.context["started_servers"] == SERVERS


async def test_python_run_cmd_failure_names_the_server(
    engine: Engine, create: CreateFn, tmp_path: Path
) -> None:
    """run_cmd fails naming the server, the exit code and the command's stderr."""
    name = await create(
        ["stop_app", {"step": "run_cmd", "retries": 0}, "start_app"],
        {
            "target_servers": ["a"],
            "workdir": str(tmp_path),
            "cmd": ["sh", "-c", "echo no space >&2; exit 2"],
        },
    )
    with pytest.raises(StepError, match=r"command failed on a: .* exited with code 2: no space"):
        await engine.run(name)


def _sql_literals(sql: str) -> list[str]:
    body = "\n".join(line for line in sql.splitlines() if not line.startswith("--"))
    return re.findall(r"'([^']*)'", body)


def test_enqueue_sql_is_the_example_definition() -> None:
    """enqueue.sql inserts example_definition() with python3 and the checkout's appctl.py."""
    name, steps, context = _sql_literals(ENQUEUE_SQL.read_text())
    assert name == "maint-example-1"
    expected = example_definition(python="python3", appctl="wfed/examples/appctl.py")
    assert json.loads(steps) == expected
    assert set(json.loads(context)) == {"target_servers", "workdir", "drain_seconds", "cmd"}


@pytest.mark.skipif(shutil.which("python3") is None, reason="enqueue.sql runs python3")
async def test_enqueue_sql_runs(
    sqlite_url: str, make_engine: EngineFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """enqueue.sql's INSERT, run as is in a checkout-like directory, completes."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wfed" / "examples").mkdir(parents=True)
    (tmp_path / "wfed" / "examples" / "appctl.py").symlink_to(APPCTL)
    engine = make_engine(sqlite_url, step_modules=["wfed.examples"])
    name = f"maint-{uuid.uuid4().hex[:12]}"
    sql = ENQUEUE_SQL.read_text().replace("'maint-example-1'", f"'{name}'")
    raw = create_async_engine(sqlite_url)
    try:
        async with raw.begin() as conn:
            await conn.exec_driver_sql(sql)
            # A queue of its own, so no daemon of another test claims it.
            await conn.exec_driver_sql(
                f"UPDATE workflows SET queue = 'steps-test' WHERE name = '{name}'"
            )
    finally:
        await raw.dispose()
    await engine.set_context(name, {"drain_seconds": 0})

    workflow = await engine.run(name)

    assert workflow.state is WorkflowState.COMPLETED, workflow.last_error
    root = tmp_path / "wfed-example"
    assert running(root) == [True, True]
    assert all((root / server / "last-maintenance").exists() for server in SERVERS)


def test_appctl_stand_in(tmp_path: Path) -> None:
    """appctl.py: status exits 3 while stopped; exec refuses to run while the app runs."""

    def appctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(APPCTL), *args],
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
        )

    assert appctl("stop", "r", "a").returncode == 0
    assert appctl("status", "r", "a").returncode == 3
    assert appctl("exec", "r", "a", "--", "touch", "done").returncode == 0
    assert (tmp_path / "r" / "a" / "done").exists()
    assert appctl("start", "r", "a").returncode == 0
    assert appctl("status", "r", "a").stdout == "a: running\n"
    refused = appctl("exec", "r", "a", "--", "true")
    assert refused.returncode == 3
    assert "stop it first" in refused.stderr
    assert appctl("stop", "r", "../escape").returncode != 0
    assert appctl("bogus", "r").returncode == 2
