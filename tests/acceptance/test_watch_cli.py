"""`wfectl watch` and `wfectl logs` on workflows that ended, on every backend: the live
view on a terminal, why a paused or stopped workflow halted, and the output of steps run
in this process. (With a real daemon running them: tests/daemon/test_wfectl_live.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import re
import subprocess
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from wfed import Engine, StepError

from .conftest import WFECTL, Wfectl, _environment

T = TypeVar("T")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def with_engine(url: str, work: Callable[[Engine], Awaitable[T]]) -> T:
    async def main() -> T:
        async with Engine(url, actor="alice@ops") as engine:
            return await work(engine)

    return asyncio.run(main())


def shell(script: str, **options: Any) -> dict[str, Any]:
    return {"step": "shell", "args": {"cmd": script, "shell": True}, **options}


def created_and_run(url: str, name: str, queue: str, steps: list[Any]) -> None:
    async def work(engine: Engine) -> None:
        await engine.create_workflow(name, {}, steps, queue=queue)
        with contextlib.suppress(StepError):  # left in error: what the test watches
            await engine.run(name)

    with_engine(url, work)


def on_a_terminal(wfectl: Wfectl, *args: str) -> tuple[int, str]:
    """Run wfectl on a terminal (100 columns); its exit code and what it showed."""
    leader, follower = pty.openpty()
    env = _environment(wfectl.url, wfectl.config, {"TERM": "xterm-256color", "COLUMNS": "100"})
    process = subprocess.Popen(
        [str(WFECTL), *args], stdin=follower, stdout=follower, stderr=follower, env=env
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
    code = process.wait(timeout=60)
    return code, ANSI.sub("", b"".join(chunks).decode(errors="replace"))


def test_the_live_view_on_a_terminal(wfectl: Wfectl, unique: str) -> None:
    """On a terminal `watch` draws the steps with their state, attempts and duration, and
    the last lines of output; exit code 0 for a completed workflow, 1 (and the error) for
    one in error."""
    queue = f"q-{unique}"
    done, failed = f"watch-{unique}-done", f"watch-{unique}-failed"
    created_and_run(
        wfectl.url, done, queue, [shell("echo hello", label="greet"), shell("seq 1 30")]
    )
    created_and_run(wfectl.url, failed, queue, [shell("echo oops >&2; exit 4", retries=0)])
    code, shown = on_a_terminal(wfectl, "watch", done)
    assert code == 0, shown
    assert f"{done}  completed  all 2 steps done" in shown
    assert re.search(r"0 │ shell │ greet │ completed │ 1 ", shown), shown
    assert f"{done} completed: 2 steps in " in shown
    code, shown = on_a_terminal(wfectl, "watch", failed)
    assert code == 1, shown
    assert "last lines of step 0 'shell', attempt 1:" in shown
    assert "  oops" in shown
    assert "halted because: step 0 'shell' failed: " in shown
    assert f"wfectl: {failed} halted in error: step 0 'shell' failed: " in shown


def test_watch_says_why_a_workflow_paused_or_stopped(wfectl: Wfectl, unique: str) -> None:
    """A paused or stopped workflow: exit code 1 and one line with the operator and the
    reason; an unknown one: exit code 1, `no workflow named`."""
    queue = f"q-{unique}"
    paused, stopped = f"watch-{unique}-paused", f"watch-{unique}-stopped"

    async def work(engine: Engine) -> None:
        for name in (paused, stopped):
            await engine.create_workflow(
                name, {}, [{"step": "sleep", "args": {"seconds": 0}}] * 2, queue=queue
            )
        await engine.pause(paused, "waiting for the DBA")
        await engine.stop(stopped, "wrong servers")

    with_engine(wfectl.url, work)
    on_pause, on_stop, unknown = wfectl.many(
        [["watch", paused], ["watch", stopped], ["watch", f"watch-{unique}-none"]]
    )
    assert on_pause.code == 1, on_pause
    assert on_pause.err == (
        f"wfectl: {paused} paused before step 0 'sleep': paused by alice@ops: waiting for the DBA\n"
    )
    assert f"{paused}: paused; 0 of 2 steps done" in on_pause.out
    assert on_stop.code == 1, on_stop
    assert on_stop.err == (
        f"wfectl: {stopped} stopped at step 0 'sleep': stopped by alice@ops: wrong servers\n"
    )
    assert unknown.code == 1, unknown
    assert "no workflow named" in unknown.err


def test_logs_of_steps_that_ran(wfectl: Wfectl, unique: str) -> None:
    """`logs` picks the step a workflow halted at (else the last that printed), takes
    --step and --attempt, and gives JSON lines; an attempt the step never ran and an
    unknown step are refused."""
    queue = f"q-{unique}"
    name = f"logs-{unique}"
    created_and_run(
        wfectl.url,
        name,
        queue,
        [shell("echo a; echo b >&2"), shell("echo c; exit 2", retries=1, retry_delay=0)],
    )
    default, first, second, as_json, nothing, unknown = wfectl.many(
        [
            ["logs", name],
            ["logs", name, "--step", "0"],
            ["logs", name, "--step", "1", "--attempt", "1"],
            ["logs", name, "--step", "0", "--json"],
            ["logs", name, "--step", "1", "--attempt", "7"],
            ["logs", name, "--step", "9"],
        ]
    )
    assert (default.code, default.out) == (0, "c\n"), default
    assert first.out == "a\nb\n", first
    assert second.out == "c\n", second
    lines = [json.loads(line) for line in as_json.out.splitlines()]
    assert [(line["stream"], line["text"]) for line in lines] == [("stdout", "a"), ("stderr", "b")]
    assert set(lines[0]) == {"at", "stream", "text", "position", "attempt", "seq"}
    assert (nothing.code, nothing.out) == (1, ""), nothing
    assert nothing.err == (
        f"wfectl: step 1 of workflow {name!r} has run 2 attempts: there is no attempt 7\n"
    )
    assert unknown.code == 1, unknown
    assert "has no step 9" in unknown.err
