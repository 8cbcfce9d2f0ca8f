"""Reading and controlling workflows needs no runbook code; validating steps does."""

from __future__ import annotations

import pytest
from conftest import unique_name

from wfed import Engine, WorkflowState
from wfed.errors import ConfigError


async def test_read_and_control_without_the_step_modules(
    engine: Engine, database_url: str, make_engine
) -> None:
    """An Engine whose step modules cannot be imported still shows, pauses, resumes and
    deletes workflows; only creating one (which validates steps) names the module."""
    name = unique_name("lazy")
    await engine.create_workflow(name, {}, ["noop"], queue=unique_name("q"))
    admin = make_engine(database_url, step_modules=["wfed_no_such_runbooks"])
    assert (await admin.get(name)).state is WorkflowState.PENDING
    assert (await admin.pause(name, reason="checking")).state is WorkflowState.PAUSED
    assert (await admin.resume(name)).state is WorkflowState.PENDING
    assert [event.kind for event in await admin.history(name)][-2:] == ["paused", "resumed"]
    await admin.delete(name)
    with pytest.raises(ConfigError, match="wfed_no_such_runbooks"):
        await admin.create_workflow(unique_name("lazy"), {}, ["noop"])
