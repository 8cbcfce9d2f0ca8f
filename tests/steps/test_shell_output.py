"""The `shell` step's live output: stdout and stderr passed on line by line while the
command runs, through the Step API's output hook (`wfed.steps.base`); no database here."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from wfed.engine.execution import StepAttempt
from wfed.steps.base import Stream, emit, output_to, step, step_output
from wfed.steps.definition import check_args, parse_definition
from wfed.steps.registry import StepRegistry
from wfed.steps.shell import LINE_MAX, Shell, run_command
from wfed.steps.template import render


class Sink:
    """An output sink that keeps what it gets, with the thread each call came from."""

    def __init__(self) -> None:
        self.got: list[tuple[Stream, str]] = []
        self.threads: set[int] = set()

    def write(self, stream: Stream, text: str) -> None:
        self.threads.add(threading.get_ident())
        self.got.extend((stream, line) for line in text.split("\n"))

    def of(self, stream: Stream) -> list[str]:
        return [line for where, line in self.got if where == stream]


async def shell(sink: Sink | None, ctx: dict[str, Any] | None = None, **args: Any) -> Any:
    """Run a shell step as the runner does, with `sink` attached; return the context."""
    ctx = {} if ctx is None else ctx
    checked = check_args(Shell, render(args, ctx), "test", rendered=True)
    with output_to(sink):
        await Shell().invoke(ctx, checked)
    return ctx


async def _until(check: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.02)


async def test_lines_arrive_while_the_command_runs(tmp_path: Path) -> None:
    """Lines reach the sink as the command prints them, before it exits."""
    go = tmp_path / "go"
    script = f'echo first; echo oops >&2; while [ ! -e "{go}" ]; do sleep 0.02; done; echo last'
    sink = Sink()
    task = asyncio.create_task(shell(sink, cmd=["sh", "-c", script], save_as="r"))
    await _until(lambda: len(sink.got) == 2)
    assert not task.done()
    assert sorted(sink.got) == [("stderr", "oops"), ("stdout", "first")]
    go.touch()
    ctx = await task
    assert sink.of("stdout") == ["first", "last"]
    assert sink.of("stderr") == ["oops"]
    assert ctx["r"] == {"rc": 0, "stdout": "first\nlast\n", "stderr": "oops\n"}


async def test_the_context_capture_is_the_same_with_and_without_a_sink() -> None:
    """save_as holds the same rc, stdout and stderr whether live output is taken or not."""
    script = "i=0; while [ $i -lt 3000 ]; do echo line$i; echo e$i >&2; i=$((i+1)); done"
    with_sink = await shell(Sink(), cmd=["sh", "-c", script], save_as="r", max_output=500)
    without = await shell(None, cmd=["sh", "-c", script], save_as="r", max_output=500)
    assert with_sink == without


async def test_line_ends_empty_lines_and_an_unfinished_last_line() -> None:
    """CRLF counts as a line end, empty lines are kept, and a last line without a line end
    is passed on when its pipe closes."""
    sink = Sink()
    await shell(sink, cmd=["printf", "a\\r\\n\\nb\\nno end"])
    assert sink.of("stdout") == ["a", "", "b", "no end"]


async def test_a_line_split_across_reads_and_characters_are_whole() -> None:
    """A line written in pieces, with a multi-byte character cut between two writes, comes
    out as one line, undamaged."""
    program = (
        "import sys, time\n"
        "out = sys.stdout.buffer\n"
        "data = 'héllo wörld ✓'.encode()\n"
        "for i in range(len(data)):\n"
        "    out.write(data[i:i+1]); out.flush(); time.sleep(0.002)\n"
        "out.write(b'\\n'); out.flush()\n"
    )
    sink = Sink()
    await shell(sink, cmd=[sys.executable, "-c", program])
    assert sink.of("stdout") == ["héllo wörld ✓"]


async def test_an_endless_line_goes_in_pieces() -> None:
    """An unfinished line longer than LINE_MAX bytes is passed on in pieces rather than held
    back; together they are the whole line."""
    size = 3 * LINE_MAX + 100
    sink = Sink()
    await shell(sink, cmd=[sys.executable, "-c", f"print('x' * {size}, end='')"])
    pieces = sink.of("stdout")
    assert len(pieces) >= 3
    assert all(len(piece) <= LINE_MAX for piece in pieces)
    assert "".join(pieces) == "x" * size


async def test_without_a_sink_nothing_is_split() -> None:
    """Called directly, with nothing attached, the step has no sink and works as before."""
    assert step_output() is None
    result = await run_command(["sh", "-c", "echo out; echo err >&2"])
    assert (result.rc, result.stdout, result.stderr) == (0, "out\n", "err\n")


async def test_a_sink_that_raises_does_not_fail_the_step() -> None:
    """A sink that raises is dropped; the command runs on and its output is captured."""

    class Broken:
        def write(self, stream: Stream, text: str) -> None:
            raise RuntimeError("sink broke")

    checked = check_args(Shell, {"cmd": ["seq", "1", "3"], "save_as": "r"}, "t", rendered=True)
    ctx: dict[str, Any] = {}
    with output_to(Broken()):
        await Shell().invoke(ctx, checked)
    assert ctx["r"]["stdout"] == "1\n2\n3\n"


async def test_emit_passes_lines_from_a_plain_def_step_in_its_thread() -> None:
    """emit() from a plain `def` step (run in a worker thread) reaches the sink; a text
    with line ends is several lines."""
    sink = Sink()

    @step("talker")
    def talker(ctx: dict[str, Any]) -> None:
        emit("one\ntwo\n")
        emit("warned", stream="stderr")

    step_class = talker.__wfed_step__  # type: ignore[attr-defined]
    with output_to(sink):
        await step_class().invoke({}, {})
    assert sink.got == [("stdout", "one"), ("stdout", "two"), ("stderr", "warned")]


async def test_emit_without_a_sink_does_nothing() -> None:
    """Outside a recorded attempt emit() is a no-op."""
    emit("nobody listens")


async def test_an_attempt_without_a_recording_run_has_no_sink() -> None:
    """A step attempt outside a recording run (no output target bound) gives its step no
    sink: direct runs cost nothing."""
    seen: list[object] = []

    @step("looks")
    async def looks(ctx: dict[str, Any]) -> None:
        seen.append(step_output())

    registry = StepRegistry()
    registry.add(looks.__wfed_step__)  # type: ignore[attr-defined]
    plan = parse_definition(["looks"], registry)[0]
    assert await StepAttempt(plan, {}).run() is None
    assert seen == [None]


@pytest.mark.parametrize("count", [10_000])
async def test_many_lines_in_order(count: int) -> None:
    """Ten thousand lines arrive in order, none lost or merged."""
    sink = Sink()
    await shell(sink, cmd=["seq", "1", str(count)])
    assert sink.of("stdout") == [str(i) for i in range(1, count + 1)]
    assert sink.threads == {threading.get_ident()}
