"""The `shell` step (docs/steps.md): real subprocesses, their process groups, and the Engine."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from structlog.testing import capture_logs

from wfed import Engine, InvalidDefinition, StepError, WorkflowHalted
from wfed.states import StepState, WorkflowState
from wfed.steps.definition import check_args, parse_definition
from wfed.steps.registry import StepRegistry
from wfed.steps.shell import CommandFailed, CommandTimedOut, Shell
from wfed.steps.template import render

if TYPE_CHECKING:  # the fixtures' types (tests/steps/conftest.py)
    from conftest import CreateFn, EngineFactory, Procs


async def shell(ctx: dict[str, Any] | None = None, **args: Any) -> dict[str, Any]:
    """Run a shell step the way the runner does: render, check, invoke; return the ctx."""
    ctx = {} if ctx is None else ctx
    checked = check_args(Shell, render(args, ctx), "test", rendered=True)
    await Shell().invoke(ctx, checked)
    return ctx


# -- output, exit codes, arguments ----------------------------------------------------


async def test_save_as_captures_rc_stdout_and_stderr() -> None:
    """save_as stores rc, stdout and stderr, exactly as the command wrote them."""
    ctx = await shell(cmd=["sh", "-c", "echo out; echo err >&2; printf 'no newline'"], save_as="r")
    assert ctx["r"] == {"rc": 0, "stdout": "out\nno newline", "stderr": "err\n"}


async def test_without_save_as_the_context_is_untouched() -> None:
    """Without save_as the step leaves the context alone."""
    assert await shell({"keep": 1}, cmd=["echo", "hi"]) == {"keep": 1}


async def test_truncation_keeps_the_tail_with_a_marker() -> None:
    """Output over the cap keeps its last bytes, after a marker saying how much was cut."""
    script = "i=0; while [ $i -lt 2000 ]; do echo line$i; echo e$i >&2; i=$((i+1)); done"
    ctx = await shell(cmd=["sh", "-c", script], save_as="r", max_output=100)
    stdout, stderr = ctx["r"]["stdout"], ctx["r"]["stderr"]
    assert stdout.startswith("[… output truncated: the first ")
    assert stdout.endswith("line1998\nline1999\n")
    assert "line0\n" not in stdout
    assert len(stdout.split("\n", 1)[1]) == 100
    assert stderr.endswith("e1999\n")
    assert "truncated" in stderr


async def test_default_cap_is_64_kib() -> None:
    """By default each stream keeps 64 KiB: a 1 MiB stdout comes back as its tail."""
    script = "head -c 1048576 /dev/zero | tr '\\0' a; echo END"
    ctx = await shell(cmd=["sh", "-c", script], save_as="r")
    marker, kept = ctx["r"]["stdout"].split("\n", 1)
    assert "truncated" in marker
    assert len(kept) == 64 * 1024
    assert kept.endswith("aEND\n")


async def test_ok_codes_accept_listed_exit_codes() -> None:
    """An exit code listed in ok_codes completes the step, and rc is saved."""
    ctx = await shell(cmd=["sh", "-c", "exit 3"], ok_codes=[0, 3], save_as="r")
    assert ctx["r"]["rc"] == 3


async def test_non_ok_exit_names_code_and_stderr_tail() -> None:
    """A non-OK exit is a step error with the code and the last lines of stderr."""
    script = "i=0; while [ $i -lt 50 ]; do echo problem$i >&2; i=$((i+1)); done; exit 4"
    with pytest.raises(CommandFailed) as failed:
        await shell(cmd=["sh", "-c", script], save_as="r")
    message = str(failed.value)
    assert "exited with code 4" in message
    assert "problem49" in message
    assert "problem40" in message
    assert "problem0\n" not in message


async def test_non_ok_exit_without_stderr_shows_stdout_tail() -> None:
    """With nothing on stderr, the error shows the last lines of stdout instead."""
    with pytest.raises(CommandFailed, match=r"exited with code 1 \(ok: 0, 2\); last output:\nno"):
        await shell(cmd=["sh", "-c", "echo no; exit 1"], ok_codes=[0, 2])


async def test_death_by_signal_is_named() -> None:
    """A command killed by a signal fails with the signal's name."""
    with pytest.raises(CommandFailed, match="was killed by SIGKILL"):
        await shell(cmd=["sh", "-c", "kill -9 $$"])


async def test_cwd_env_and_input(tmp_path: Path) -> None:
    """cwd sets the directory, env is merged over the daemon's environment, input is stdin."""
    os.environ["WFED_TEST_INHERITED"] = "inherited"
    try:
        ctx = await shell(
            cmd=["sh", "-c", 'pwd; echo "$GREETING $WFED_TEST_INHERITED $PORT"; cat'],
            cwd=str(tmp_path),
            env={"GREETING": "hello", "PORT": 8080},
            input="from stdin\n",
            save_as="r",
        )
    finally:
        del os.environ["WFED_TEST_INHERITED"]
    assert ctx["r"]["stdout"] == f"{tmp_path}\nhello inherited 8080\nfrom stdin\n"


async def test_stdin_is_empty_without_input() -> None:
    """Without input, stdin is /dev/null: a command reading it never waits."""
    ctx = await shell(cmd=["cat"], save_as="r", timeout=10)
    assert ctx["r"]["stdout"] == ""


async def test_input_to_a_command_that_does_not_read_it() -> None:
    """A large input to a command that exits without reading it is no error."""
    ctx = await shell(cmd=["true"], input="x" * (1024 * 1024), save_as="r")
    assert ctx["r"]["rc"] == 0


async def test_shell_true_runs_a_string_through_sh() -> None:
    """With shell: true, a string runs through /bin/sh -c (pipes, expansions)."""
    ctx = await shell(cmd="printf '%s\\n' a b c | wc -l", shell=True, save_as="r")  # noqa: S604
    assert ctx["r"]["stdout"].strip() == "3"


async def test_argv_is_never_parsed_by_a_shell(tmp_path: Path) -> None:
    """Without shell: true, shell syntax in a context value stays one literal argument."""
    canary = tmp_path / "canary"
    ctx = await shell(
        {"name": f"x; touch {canary}; $(touch {canary})"},
        cmd=["echo", "{name}"],
        save_as="r",
    )
    assert ctx["r"]["stdout"] == f"x; touch {canary}; $(touch {canary})\n"
    assert not canary.exists()


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ({"cmd": "echo hi"}, "cmd is a string but shell is not true"),
        ({"cmd": "echo hi", "shell": False}, "cmd is a string but shell is not true"),
        ({"cmd": ["echo", "hi"], "shell": True}, "cmd must be one string"),
        ({"cmd": []}, "cmd is an empty list"),
        ({"cmd": ["true"], "timeout": 0}, "'timeout' must be more than 0"),
        ({"cmd": ["true"], "kill_grace": -1}, "'kill_grace' must be 0 or more"),
        ({"cmd": ["true"], "ok_codes": []}, "'ok_codes' is empty"),
        ({"cmd": ["true"], "max_output": 0}, "'max_output' must be more than 0"),
        ({"cmd": ["true", {"not": "a scalar"}]}, "argument 'cmd'"),
        ({"cmd": ["true"], "colour": "red"}, "unknown argument 'colour'"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_bad_arguments_are_an_invalid_definition(args: dict[str, Any], problem: str) -> None:
    """A string cmd without shell: true, and other bad arguments, are refused up front."""
    with pytest.raises(InvalidDefinition, match=problem):
        parse_definition([{"step": "shell", "args": args}], StepRegistry.from_modules([]))


async def test_string_cmd_refused_when_invoked_directly() -> None:
    """Invoking the step directly with a string cmd and no shell: true is a clear error."""
    with pytest.raises(ValueError, match="cmd is a string but shell is not true"):
        await Shell().invoke({}, {"cmd": "echo hi"})


def test_references_wait_for_rendering() -> None:
    """A cmd or shell that is a context reference is judged once rendered, not before."""
    registry = StepRegistry.from_modules([])
    parse_definition([{"step": "shell", "args": {"cmd": "{argv}"}}], registry)
    parse_definition([{"step": "shell", "args": {"cmd": "x", "shell": "{flag}"}}], registry)
    with pytest.raises(InvalidDefinition, match="cmd is a string"):
        check_args(Shell, render({"cmd": "{argv}"}, {"argv": "rm -rf /"}), "x", rendered=True)


async def test_unknown_program_or_directory_is_a_clear_error(tmp_path: Path) -> None:
    """A program or cwd that does not exist fails the step naming it."""
    with pytest.raises(CommandFailed, match="cannot run 'no-such-program-wfed'"):
        await shell(cmd=["no-such-program-wfed"])
    with pytest.raises(CommandFailed, match="nowhere"):
        await shell(cmd=["true"], cwd=str(tmp_path / "nowhere"))


async def test_context_references_in_arguments(tmp_path: Path) -> None:
    """A "{servers}" list is spliced into argv; "{db.host}", "{servers[0]}", numbers render."""
    ctx: dict[str, Any] = {
        "servers": ["intweb1", "intweb2"],
        "db": {"host": "db1", "port": 3306},
        "dir": str(tmp_path),
    }
    await shell(
        ctx,
        cmd=["echo", "{servers}", "{db.host}:{db.port}", "{servers[0]}", "{db.port}"],
        cwd="{dir}",
        env={"DB_HOST": "{db.host}", "DB_PORT": "{db.port}"},
        save_as="argv",
    )
    await shell(  # noqa: S604 - the step's own argument
        ctx,
        cmd='echo "$DB_HOST/$DB_PORT" {servers[1]}',
        shell=True,
        env={"DB_HOST": "{db.host}", "DB_PORT": "{db.port}"},
        save_as="sh",
    )
    assert ctx["argv"]["stdout"] == "intweb1 intweb2 db1:3306 intweb1 3306\n"
    assert ctx["sh"]["stdout"] == "db1/3306 intweb2\n"


# -- process groups: timeouts, cancellation, leftovers --------------------------------


async def test_own_timeout_kills_the_whole_group(tmp_path: Path, procs: Procs) -> None:
    """The step's `timeout` argument kills the command and its grandchild, and says so."""
    pidfile = tmp_path / "pids"
    with pytest.raises(CommandTimedOut, match=r"timed out after 0\.5 s and was killed"):
        await shell(cmd=["sh", "-c", procs.family(pidfile)], timeout=0.5)
    procs.assert_gone(*await procs.pids(pidfile))


async def test_step_policy_timeout_kills_the_whole_group(tmp_path: Path, procs: Procs) -> None:
    """A timeout around the step (the runner's policy timeout) kills the whole group."""
    pidfile = tmp_path / "pids"
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await shell(cmd=["sh", "-c", procs.family(pidfile)])
    procs.assert_gone(*await procs.pids(pidfile))


async def test_cancellation_kills_the_whole_group(tmp_path: Path, procs: Procs) -> None:
    """Cancelling the step's task kills command and grandchild, then the cancel propagates."""
    pidfile = tmp_path / "pids"
    task = asyncio.create_task(Shell().invoke({}, {"cmd": ["sh", "-c", procs.family(pidfile)]}))
    pids = await procs.pids(pidfile)
    assert all(procs.state(pid) for pid in pids)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    procs.assert_gone(*pids)


async def test_sigterm_ignored_is_sigkilled_after_kill_grace(tmp_path: Path, procs: Procs) -> None:
    """A group that outlives its SIGTERM is left its kill_grace, then SIGKILLed."""
    pidfile, termfile = tmp_path / "pids", tmp_path / "term"
    cmd = procs.stubborn(pidfile, termfile)
    task = asyncio.create_task(Shell().invoke({}, {"cmd": cmd, "kill_grace": 1}))
    pids = await procs.pids(pidfile)
    with capture_logs() as logs:
        task.cancel()
        await procs.written(termfile)  # SIGTERM came first...
        assert all(procs.alive(pid) for pid in pids)  # ...and no SIGKILL right behind it
        assert not task.done()
        with pytest.raises(asyncio.CancelledError):
            await task
    killed = [log for log in logs if log["event"] == "shell_group_killed"]
    assert [log["grace"] for log in killed] == [1]
    procs.assert_gone(*pids)


async def test_second_cancel_during_grace_kills_at_once(tmp_path: Path, procs: Procs) -> None:
    """Cancelled again while it waits out kill_grace (an hour), the step SIGKILLs the
    group at once."""
    pidfile, termfile = tmp_path / "pids", tmp_path / "term"
    cmd = procs.stubborn(pidfile, termfile)
    task = asyncio.create_task(Shell().invoke({}, {"cmd": cmd, "kill_grace": 3600}))
    pids = await procs.pids(pidfile)
    task.cancel()
    await procs.written(termfile)  # the group has had its SIGTERM: the grace is running
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    procs.assert_gone(*pids)


async def test_leftover_background_processes_are_ended(tmp_path: Path, procs: Procs) -> None:
    """A background process left in the group is ended; the step does not wait on its pipe."""
    pidfile = tmp_path / "pids"
    ctx = await shell(
        cmd=["sh", "-c", f'sleep 300 & echo "$!" > "{pidfile}"; echo done'], save_as="r"
    )
    assert ctx["r"]["stdout"] == "done\n"
    procs.assert_gone(*await procs.pids(pidfile))


@pytest.mark.skipif(shutil.which("setsid") is None, reason="needs setsid(1)")
async def test_pipe_held_by_a_detached_process_does_not_hang(tmp_path: Path, procs: Procs) -> None:
    """A process that left the group (setsid) lives on, holding the output pipe open; the
    step does not wait for it to close."""
    pidfile = tmp_path / "pids"
    script = (
        f'setsid sh -c \'echo $$ > "{pidfile}.tmp"; mv "{pidfile}.tmp" "{pidfile}"; '
        "exec sleep 60' & "
        f'while [ ! -e "{pidfile}" ]; do sleep 0.05; done; echo detached'
    )
    ctx = await shell(cmd=["sh", "-c", script], save_as="r")
    [detached] = await procs.pids(pidfile)
    try:
        assert ctx["r"]["stdout"] == "detached\n"
        assert procs.alive(detached)  # the step returned while the pipe was still open
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(detached, signal.SIGKILL)


# -- through the Engine ---------------------------------------------------------------


async def test_workflow_passes_saved_output_to_the_next_step(
    engine: Engine, create: CreateFn, tmp_path: Path
) -> None:
    """Step 1 saves its output with save_as; step 2 uses it through a context reference."""
    name = await create(
        [
            {
                "step": "shell",
                "label": "who",
                "args": {"cmd": ["echo", "{servers[0]}", "{db.host}"], "save_as": "first"},
            },
            {
                "step": "shell",
                "args": {
                    "cmd": [
                        "sh",
                        "-c",
                        'printf "%s|%s|%s" "$1" "$2" "$3"',
                        "sh",
                        "{first.stdout}",
                        "{first.rc}",
                        "{servers}",
                    ],
                    "cwd": "{dir}",
                    "save_as": "second",
                },
            },
        ],
        {"servers": ["intweb1", "intweb2"], "db": {"host": "db1"}, "dir": str(tmp_path)},
    )
    workflow = await engine.run(name)
    assert workflow.state is WorkflowState.COMPLETED
    assert workflow.context["first"] == {"rc": 0, "stdout": "intweb1 db1\n", "stderr": ""}
    assert workflow.context["second"]["stdout"] == "intweb1 db1\n|0|intweb1"


async def test_failing_shell_step_puts_the_workflow_in_error(
    engine: Engine, create: CreateFn
) -> None:
    """A non-OK exit in a workflow: error state, last_error with the code and stderr."""
    name = await create(
        [{"step": "shell", "args": {"cmd": ["sh", "-c", "echo disk full >&2; exit 5"]}}]
    )
    with pytest.raises(StepError, match="exited with code 5"):
        await engine.run(name)
    workflow = await engine.get(name)
    assert workflow.state is WorkflowState.ERROR
    assert workflow.last_error is not None
    assert "disk full" in workflow.last_error


async def test_create_refuses_a_string_cmd_without_shell(engine: Engine, create: CreateFn) -> None:
    """create_workflow refuses a string cmd without shell: true, naming the fix."""
    with pytest.raises(InvalidDefinition, match=r'steps\[0\] \(shell\).*"shell": true'):
        await create([{"step": "shell", "args": {"cmd": "rm -rf {path}"}}])


async def test_stop_kills_the_running_step_group(
    engine: Engine,
    make_engine: EngineFactory,
    sqlite_url: str,
    create: CreateFn,
    tmp_path: Path,
    procs: Procs,
) -> None:
    """A stop from another Engine: step and workflow end `stopped`, the process group dies."""
    pidfile = tmp_path / "pids"
    name = await create(
        [
            {"step": "shell", "args": {"cmd": ["sh", "-c", procs.family(pidfile)]}},
            {"step": "shell", "args": {"cmd": ["touch", str(tmp_path / "never")]}},
        ]
    )
    running = asyncio.create_task(engine.run(name))
    pids = await procs.pids(pidfile)
    operator = make_engine(sqlite_url)
    await operator.stop(name, reason="wrong servers")
    with pytest.raises(WorkflowHalted, match="stopped"):
        async with asyncio.timeout(20):
            await running
    procs.assert_gone(*pids)
    workflow = await operator.get(name)
    assert workflow.state is WorkflowState.STOPPED
    assert [step.state for step in workflow.steps] == [StepState.STOPPED, StepState.PENDING]
    assert not (tmp_path / "never").exists()


async def test_policy_timeout_in_a_workflow_kills_the_group(
    engine: Engine, create: CreateFn, tmp_path: Path, procs: Procs
) -> None:
    """An element's `timeout` policy ends a hung shell step: error, whole group dead."""
    pidfile = tmp_path / "pids"
    name = await create(
        [{"step": "shell", "timeout": 0.5, "args": {"cmd": ["sh", "-c", procs.family(pidfile)]}}]
    )
    with pytest.raises(StepError, match=r"timed out after 0\.5 s"):
        await engine.run(name)
    procs.assert_gone(*await procs.pids(pidfile))


def test_shell_is_not_idempotent_unless_the_element_says_so() -> None:
    """A shell step is never re-run after a crash, unless its element says "idempotent"."""
    registry = StepRegistry.from_modules([])
    plain, marked = parse_definition(
        [
            {"step": "shell", "args": {"cmd": ["true"]}},
            {"step": "shell", "args": {"cmd": ["true"]}, "idempotent": True},
        ],
        registry,
    )
    assert (plain.idempotent, marked.idempotent) == (False, True)
