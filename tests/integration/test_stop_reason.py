"""A stop of a running workflow keeps who asked for it and why."""

from __future__ import annotations

import asyncio

import pytest
from conftest import unique_name

from wfed import Engine, WorkflowHalted, WorkflowState


async def test_a_live_stop_keeps_the_operator_and_the_reason(engine: Engine) -> None:
    """When the owner honours a stop request by cancelling the running step, `show`
    names the operator who asked and their --reason, not only the daemon."""
    name = unique_name("stop")
    await engine.create_workflow(
        name, {}, [{"step": "sleep", "args": {"seconds": 600}}, "noop"], queue=unique_name("q")
    )
    running = asyncio.create_task(engine.run(name))
    while (await engine.get(name)).steps[0].state.value != "running":
        assert not running.done()
        await asyncio.sleep(0.02)
    await engine.stop(name, reason="maintenance window closed")
    with pytest.raises(WorkflowHalted):
        await running
    workflow = await engine.get(name)
    assert workflow.state is WorkflowState.STOPPED
    assert workflow.halt_reason is not None
    assert engine.actor in workflow.halt_reason
    assert "maintenance window closed" in workflow.halt_reason
    stopped = [event for event in await engine.history(name) if event.kind == "stopped"]
    assert len(stopped) == 1
    assert stopped[0].reason == "maintenance window closed"
