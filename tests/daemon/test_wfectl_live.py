"""wfectl's live commands against a real daemon, on every backend: `logs` reads a running
shell step's output before the step ends (and `--follow` prints the rest as it ends),
`watch` without a terminal prints the state changes and exits 0 when the workflow
completes and 1 when it halts in error, and `run FILE --watch` does both in one go."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon_harness import DaemonFactory, wait_until

from wfed import Engine, StepState, WorkflowState

WFECTL = str(Path(sys.executable).parent / "wfectl")
TIMEOUT = 90.0


@dataclass(frozen=True)
class Done:
    code: int
    out: str
    err: str


def wfectl_env(url: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"WFED_CONFIG", "NO_COLOR", "FORCE_COLOR", "COLUMNS"}
    }
    env["WFED_DATABASE_URL"] = url
    return env


def start_wfectl(url: str, *args: str) -> subprocess.Popen[str]:
    """`wfectl ARGS` in a pipe (no terminal), running."""
    return subprocess.Popen(
        [WFECTL, *args],
        env=wfectl_env(url),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> Done:
    try:
        out, err = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
    return Done(process.returncode, out, err)


def wfectl(url: str, *args: str) -> Done:
    return finish(start_wfectl(url, *args))


def shell(script: str, **options: Any) -> dict[str, Any]:
    return {"step": "shell", "args": {"cmd": script, "shell": True}, **options}


def gate(path: Path) -> str:
    """Shell: wait until `path` exists."""
    return f'while [ ! -e "{path}" ]; do sleep 0.05; done'


async def test_logs_reads_a_running_step_and_follows_it_to_its_end(
    schema: str,
    engine: Engine,
    start_daemon: DaemonFactory,
    queue: str,
    tmp_path: Path,
) -> None:
    """While a shell step run by a daemon waits, `wfectl logs` prints what it printed so
    far (stdout and stderr, in order); `logs --follow`, started then, prints the rest and
    exits once the step ends."""
    go = tmp_path / "go"
    name = f"{queue}-logs"
    await engine.create_workflow(
        name,
        {},
        [
            shell(f"echo first; echo warning >&2; {gate(go)}; echo last; echo done"),
            {"step": "sleep", "args": {"seconds": 0}},
        ],
        queue=queue,
    )
    start_daemon(schema, queue=queue)
    try:
        seen = Done(1, "", "")

        async def printed() -> bool:
            nonlocal seen
            seen = wfectl(schema, "logs", name)
            return seen.out == "first\nwarning\n"

        await wait_until(printed, TIMEOUT, "the first lines in `wfectl logs`")
        assert seen.code == 0, seen
        workflow = await engine.get(name)
        assert workflow.steps[0].state is StepState.RUNNING  # not ended yet
        as_json = wfectl(schema, "logs", name, "--step", "0", "--attempt", "1", "--json")
        assert as_json.code == 0, as_json
        assert [line.split('"stream": ')[1][:8] for line in as_json.out.splitlines()] == [
            '"stdout"',
            '"stderr"',
        ]
        follower = start_wfectl(schema, "logs", name, "--follow")
        await asyncio.sleep(1.5)  # it reads what is there, then waits for more
        assert follower.poll() is None
    finally:
        go.touch()
    followed = finish(follower)
    assert followed.code == 0, followed
    assert followed.out == "first\nwarning\nlast\ndone\n", followed

    async def completed() -> bool:
        return (await engine.get(name)).state is WorkflowState.COMPLETED

    await wait_until(completed, TIMEOUT, "the workflow completed")
    after = wfectl(schema, "logs", name, "--step", "0")
    assert after.out == "first\nwarning\nlast\ndone\n", after
    quiet = wfectl(schema, "logs", name, "--step", "1")
    assert (quiet.code, quiet.out) == (0, ""), quiet
    assert "no output recorded" in quiet.err


async def test_watch_prints_the_changes_and_exits_0_when_completed(
    schema: str,
    engine: Engine,
    start_daemon: DaemonFactory,
    queue: str,
    tmp_path: Path,
) -> None:
    """`watch` in a pipe, started before a daemon claims the workflow, prints one line
    per change it sees (it reads once a second) — pending, running, each step running
    then completed, completed — and exits 0 once it completes."""
    name = f"{queue}-watch"
    await engine.create_workflow(
        name,
        {},
        [
            shell("sleep 1.5; echo one", label="first"),
            {"step": "sleep", "args": {"seconds": 1.5}},
            shell("echo two"),
        ],
        queue=queue,
    )
    watcher = start_wfectl(schema, "watch", name)
    assert watcher.stdout is not None
    # The daemon comes once `watch` has shown the workflow waiting (it flushes each line).
    try:
        first = await asyncio.wait_for(asyncio.to_thread(watcher.stdout.readline), TIMEOUT)
    except TimeoutError:
        watcher.kill()
        raise
    start_daemon(schema, queue=queue)
    done = finish(watcher)
    assert done.code == 0, done
    assert done.err == ""
    *lines, last = (first + done.out).splitlines()
    texts = [line.split(" ", 1)[1] for line in lines]  # without the time
    assert texts[0] == f"{name}: pending (waiting for a daemon); 0 of 3 steps done"
    assert texts[1].startswith(f"{name}: running (claimed by ")
    assert "step 0 'shell' (first): running (attempt 1)" in texts
    assert "step 1 'sleep': running (attempt 1)" in texts
    assert any(t.startswith("step 1 'sleep': completed in 1.") for t in texts), texts
    assert any(t.startswith("step 2 'shell': completed in ") for t in texts), texts
    assert texts[-1] == f"{name}: completed"
    assert last.startswith(f"{name} completed: 3 steps in ")
    order = [t.split(":")[0] for t in texts[1:-1]]
    assert order.index("step 0 'shell' (first)") < order.index("step 1 'sleep'")
    assert order.index("step 1 'sleep'") < order.index("step 2 'shell'")
    assert len(texts) == len(set(texts))  # one line per change


async def test_watch_exits_1_when_it_halts_in_error_and_says_why(
    schema: str,
    engine: Engine,
    start_daemon: DaemonFactory,
    queue: str,
) -> None:
    """A step that fails for good: `watch` prints the step's error and its last lines,
    and exits 1 with one line on stderr saying why."""
    name = f"{queue}-fails"
    await engine.create_workflow(
        name,
        {},
        [
            {"step": "sleep", "args": {"seconds": 0}},
            shell("echo trying; echo 'disk full' >&2; exit 3", retries=0),
        ],
        queue=queue,
    )
    start_daemon(schema, queue=queue)
    done = wfectl(schema, "watch", name)
    assert done.code == 1, done
    [why] = done.err.splitlines()
    assert why.startswith(f"wfectl: {name} halted in error: step 1 'shell' failed: "), why
    assert "exited with code 3" in why
    texts = [line.split(" ", 1)[1] for line in done.out.splitlines()]
    assert any(t.startswith("step 1 'shell': error in ") for t in texts), texts
    assert f"{name}: error; 1 of 2 steps done" in texts
    assert "last lines of step 1 'shell', attempt 1:" in texts
    assert done.out.endswith("    trying\n    disk full\n"), done
    # Watching a workflow that halted already: at once, the same way.
    again = wfectl(schema, "watch", name)
    assert again.code == 1, again
    assert again.err == done.err


async def test_watch_json_prints_a_json_object_per_change_and_the_end(
    schema: str,
    engine: Engine,
    start_daemon: DaemonFactory,
    queue: str,
) -> None:
    """`watch --json`: every line is one JSON object; the workflow (as `show --json`) on
    each change (never twice the same), the failing step's output lines, and last the
    end with the exit code, which is also the process's."""
    name = f"{queue}-json"
    await engine.create_workflow(
        name,
        {},
        [
            {"step": "sleep", "args": {"seconds": 0}},
            shell("echo trying; echo 'disk full' >&2; exit 3", retries=0),
        ],
        queue=queue,
    )
    start_daemon(schema, queue=queue)
    done = wfectl(schema, "watch", name, "--json")
    assert done.code == 1, done
    assert done.err == ""
    events = [json.loads(line) for line in done.out.splitlines()]
    assert all(set(event) >= {"at", "event"} for event in events), events
    workflows = [event["workflow"] for event in events if event["event"] == "workflow"]
    changes = [
        (
            w["state"],
            w["requested"],
            w["claimed_by"],
            w["halt_reason"],
            [(s["state"], s["attempts"], s["error"]) for s in w["steps"]],
        )
        for w in workflows
    ]
    assert all(one != next_ for one, next_ in itertools.pairwise(changes)), changes
    assert workflows[-1]["name"] == name
    assert workflows[-1]["state"] == "error"
    assert [step["state"] for step in workflows[-1]["steps"]] == ["completed", "error"]
    output = [event["line"] for event in events if event["event"] == "output"]
    assert [(line["position"], line["text"]) for line in output][-2:] == [
        (1, "trying"),
        (1, "disk full"),
    ], output
    end = events[-1]
    assert end["event"] == "end"
    assert end["code"] == 1
    assert end["message"].startswith(f"{name} halted in error: step 1 'shell' failed: ")

    gated = f"{queue}-json-gate"
    await engine.create_workflow(
        gated, {}, [{"step": "pause", "args": {"prompt": "approve?"}}, "sleep"], queue=queue
    )
    done = wfectl(schema, "watch", gated, "--json")
    assert done.code == 1, done
    events = [json.loads(line) for line in done.out.splitlines()]
    documents = [event["workflow"] for event in events if event["event"] == "workflow"]
    assert documents[-1]["state"] == "paused"
    assert "approve?" in documents[-1]["halt_reason"]
    assert [d["state"] for d in documents].count("paused") == 1, documents
    again = wfectl(schema, "watch", gated, "--json")  # halted before the watch began
    assert again.code == 1, again
    kinds = [json.loads(line)["event"] for line in again.out.splitlines()]
    assert kinds == ["workflow", "end"], again.out

    completing = f"{queue}-json-done"
    await engine.create_workflow(
        completing, {}, [{"step": "sleep", "args": {"seconds": 0}}], queue=queue
    )
    done = wfectl(schema, "watch", completing, "--json")
    assert done.code == 0, done
    events = [json.loads(line) for line in done.out.splitlines()]
    assert events[-2]["workflow"]["state"] == "completed"
    assert (events[-1]["event"], events[-1]["code"]) == ("end", 0)


async def test_run_a_runbook_and_watch_it(
    schema: str,
    engine: Engine,
    start_daemon: DaemonFactory,
    queue: str,
    tmp_path: Path,
) -> None:
    """`run FILE --param … --watch`: enqueued, followed, exit code 0 once a daemon has run
    it to completion; the parameters reached the steps."""
    runbook = tmp_path / "hello.toml"
    runbook.write_text(
        f'name = "hello-{{who}}-{{random}}"\nqueue = "{queue}"\n'
        '[params.who]\ntype = "string"\n'
        '[context]\nwho = "{who}"\n'
        '[[steps]]\nstep = "shell"\n'
        'args = { cmd = ["echo", "hello", "{who}"], save_as = "said" }\n',
        encoding="utf-8",
    )
    start_daemon(schema, queue=queue)
    done = wfectl(schema, "run", str(runbook), "--param", "who=ops", "--watch")
    assert done.code == 0, done
    first, *rest = done.out.splitlines()
    assert first.startswith("created hello-ops-"), done
    name = first.split()[1]
    assert rest[-1].startswith(f"{name} completed: 1 step in ")
    workflow = await engine.get(name)
    assert workflow.state is WorkflowState.COMPLETED
    assert workflow.context["said"]["stdout"] == "hello ops\n"
