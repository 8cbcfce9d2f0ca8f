"""`wfectl logs NAME`: what a step printed (the `shell` step's stdout and stderr, recorded
line by line while it runs), and with `--follow` what it prints until it ends."""

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from wfed.errors import WfedError
from wfed.states import StepState, WorkflowState

from . import render
from .app import Name, app, settings_of
from .run import run_engine

if TYPE_CHECKING:
    from wfed.engine import Engine
    from wfed.engine.output_view import OutputLine
    from wfed.engine.snapshot import OutputCursor, Snapshot, StepRow

POLL_SECONDS = 0.5
"""Between two reads of a followed step (its output is written every 0.5 s at most)."""
_UNDER_WAY = {WorkflowState.PENDING, WorkflowState.RUNNING}


@app.command()
def logs(
    cli: typer.Context,
    name: Name,
    step: Annotated[
        int | None,
        typer.Option(
            "--step",
            metavar="K",
            min=0,
            help="The step (0-based). Default: the running one, else the one it halted "
            "at if it printed, else the last one that printed.",
        ),
    ] = None,
    attempt: Annotated[
        int | None,
        typer.Option(
            "--attempt",
            metavar="N",
            min=1,
            help="The attempt (from 1). Default: the running one, else the last that printed.",
        ),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Then print what the step prints until it ends (waiting for it to start).",
        ),
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="One JSON object a line: {at, stream, text, position, attempt, seq}.",
        ),
    ] = False,
) -> None:
    """Print what a step of a workflow printed (stdout and stderr, in order).

    Output is recorded while a step runs, in batches every 0.5 s at most, up to
    [output] max_bytes per attempt (then a marker line).

    Example: wfectl logs maint-42 --step 2 --follow
    """
    printer = _Printer(as_json)

    async def work(engine: "Engine") -> None:
        lines = await engine.output(name, position=step, attempt=attempt)
        printer.print(lines)
        if follow:
            await _follow(engine, name, lines, step, attempt, printer)
        elif not lines:
            if attempt is not None:
                await _require_attempt(engine, name, step, attempt)
            sys.stderr.write(f"no output recorded for {_which(name, step, attempt)}\n")

    run_engine(settings_of(cli), work)


async def _require_attempt(engine: "Engine", name: str, step: int | None, attempt: int) -> None:
    """WfedError (exit code 1) if the step has not run attempt `attempt`: a missing
    attempt is a wrong question, not an attempt that printed nothing."""
    chosen = await engine.output_attempt(name, position=step, attempt=attempt)
    if chosen is None:
        return
    position, _ = chosen
    workflow = await engine.get(name)
    ran = next((s.attempts for s in workflow.steps if s.position == position), 0)
    if attempt > ran:
        runs = "no attempt" if ran == 0 else f"{ran} attempt" + ("s" if ran > 1 else "")
        raise WfedError(
            f"step {position} of workflow {name!r} has run {runs}: there is no attempt {attempt}"
        )


def _which(name: str, step: int | None, attempt: int | None) -> str:
    which = f"workflow {name!r}"
    if step is not None:
        which += f", step {step}"
    if attempt is not None:
        which += f", attempt {attempt}"
    return which


async def _follow(
    engine: "Engine",
    name: str,
    lines: "list[OutputLine]",
    step: int | None,
    attempt: int | None,
    printer: "_Printer",
) -> None:
    """Print the followed step attempt's new lines until it ends: the attempt of the
    lines printed, else of step `step` (else the running one, else the one the workflow
    is at); an attempt that has not started yet is waited for while the workflow is
    under way."""
    import asyncio

    from wfed.engine.snapshot import OutputCursor

    if lines:
        last = lines[-1]
        cursor = OutputCursor.of_attempt(last.position, last.attempt, last.seq)
    else:
        first = await engine.snapshot(name, OutputCursor.of_running())
        position = step
        if position is None:
            running = first.running_step
            position = running.position if running else first.workflow.current_step
        found = _step(first, position)
        if found is None:
            return
        if attempt is None:
            running_now = found.state is StepState.RUNNING
            attempt = found.attempts if running_now else found.attempts + 1
        cursor = OutputCursor.of_attempt(position, attempt)
    while True:
        snapshot = await engine.snapshot(name, cursor)
        printer.print(snapshot.output)
        cursor = snapshot.cursor
        if not _to_wait_for(snapshot, cursor):
            return  # it ended, and its end was committed after its last lines
        await asyncio.sleep(POLL_SECONDS)


def _step(snapshot: "Snapshot", position: int) -> "StepRow | None":
    return next((s for s in snapshot.workflow.steps if s.position == position), None)


def _to_wait_for(snapshot: "Snapshot", cursor: "OutputCursor") -> bool:
    """Whether the followed attempt runs, or may still start."""
    if snapshot.step_running(cursor.position, cursor.attempt):
        return True
    step = _step(snapshot, cursor.position)
    if step is None or step.attempts >= cursor.attempt:
        return False  # ended
    return step.state in {StepState.PENDING, StepState.RUNNING} and (
        snapshot.workflow.state in _UNDER_WAY
    )


class _Printer:
    """Lines to stdout as they come: their text (stderr's in red on a terminal), or one
    JSON object each."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.tty = sys.stdout.isatty()

    def print(self, lines: "list[OutputLine]") -> None:
        for line in lines:
            if self.as_json:
                sys.stdout.write(json.dumps(line.to_json(), ensure_ascii=False) + "\n")
            elif self.tty and line.stream == "stderr":
                from rich.text import Text

                render.console().print(Text(line.text, style="red"), soft_wrap=True)
            else:
                sys.stdout.write(line.text + "\n")
        sys.stdout.flush()
