"""A daemon records a running shell step's output where `Engine.output` reads it."""

from __future__ import annotations

import sys
from pathlib import Path

from daemon_harness import DaemonFactory, wait_until

from wfed import Engine, WorkflowState


async def test_a_running_steps_output_is_readable_before_it_ends(
    engine: Engine, start_daemon: DaemonFactory, queue: str, schema: str, tmp_path: Path
) -> None:
    """Lines a shell step prints while a daemon runs it can be read before the step
    ends; the step then completes."""
    go = tmp_path / "go"
    script = (
        "import pathlib, sys, time\n"
        "print('first line', flush=True)\n"
        "print('to stderr', file=sys.stderr, flush=True)\n"
        f"while not pathlib.Path({str(go)!r}).exists(): time.sleep(0.02)\n"
        "print('last line', flush=True)\n"
    )
    name = f"{queue}-out"
    await engine.create_workflow(
        name, {}, [{"step": "shell", "args": {"cmd": [sys.executable, "-c", script]}}], queue=queue
    )
    start_daemon(schema, queue=queue)

    async def printed() -> bool:
        texts = [line.text for line in await engine.output(name, position=0)]
        return "first line" in texts and "to stderr" in texts

    await wait_until(printed, what="the step's first lines")
    assert (await engine.get(name)).state is WorkflowState.RUNNING
    go.touch()

    async def completed() -> bool:
        return (await engine.get(name)).state is WorkflowState.COMPLETED

    await wait_until(completed, what="the workflow to complete")
    lines = await engine.output(name, position=0)
    assert [line.text for line in lines if line.stream == "stdout"] == ["first line", "last line"]
