"""The example runbook (shell steps against local stand-ins) under a real daemon."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from daemon_harness import DaemonFactory, wait_until

from wfed import Engine, StepState, WorkflowState
from wfed.examples import example_definition

SERVERS = ["intweb1", "intweb2"]


@pytest.mark.parametrize("backend", ["sqlite", "mariadb"])
async def test_example_runbook_completes_under_the_daemon(
    backend: str,
    request: pytest.FixtureRequest,
    start_daemon: DaemonFactory,
    make_engine: Callable[..., Engine],
    queue: str,
    tmp_path: Path,
) -> None:
    """The server-maintenance runbook, enqueued like any workflow, is run by a daemon to
    completion: the app is stopped, the command ran on every server, the app started."""
    url = request.getfixturevalue(f"{backend}_url")
    engine = make_engine(url)
    root = tmp_path / "servers"
    context = {
        "target_servers": SERVERS,
        "workdir": str(root),
        "drain_seconds": 0,
        "cmd": ["touch", "last-maintenance"],
    }
    name = f"{queue}-maint"
    await engine.create_workflow(name, context, example_definition(), queue=queue)
    start_daemon(url, queue=queue)

    async def finished() -> bool:
        return (await engine.get(name)).state in {
            WorkflowState.COMPLETED,
            WorkflowState.ERROR,
        }

    await wait_until(finished, what="the runbook finished")
    workflow = await engine.get(name)
    assert workflow.state is WorkflowState.COMPLETED, workflow.last_error
    assert {s.state for s in workflow.steps} == {StepState.COMPLETED}
    assert all((root / server / "last-maintenance").exists() for server in SERVERS)
    assert workflow.context["maintenance_output"]["rc"] == 0
