"""`wfectl watch NAME` (and `wfectl run FILE --watch`): a workflow, live, until it ends.

On a terminal, a view that redraws as the workflow moves: each step with its state,
attempts and duration, the running step's elapsed time and the last lines of its output,
and why the workflow halted. Elsewhere (a pipe, a CI log), one line per change instead.
Exit code 0 when the workflow completes; 1 when it halts in `error`, `paused` or
`stopped`, with one line saying why.

It polls `Engine.snapshot` — one indexed SELECT whatever the number of steps — once a
second at most; the terminal view redraws the elapsed times in between without asking
the database. When the workflow halts, one more read says why (`Engine.get`) and gets
the last lines of the step it halted at.
"""

import sys
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import typer

from wfed.states import StepState, WorkflowState

from . import render
from .app import AsJson, Name, app, settings_of
from .run import fail, run_engine

if TYPE_CHECKING:
    from rich.console import RenderableType

    from wfed.engine import Engine
    from wfed.engine.output_view import OutputLine
    from wfed.engine.snapshot import Snapshot, StepRow
    from wfed.engine.views import Workflow

POLL_SECONDS = 1.0
"""Between two snapshots, at least."""
OUTPUT_LINES = 10
"""Lines of the running step's output the live view keeps."""
_HALTED = {WorkflowState.ERROR, WorkflowState.PAUSED, WorkflowState.STOPPED}


@dataclass(frozen=True)
class Ending:
    """How a watch ended: the exit code, and the line that says so."""

    code: int
    message: str


@app.command()
def watch(cli: typer.Context, name: Name, as_json: AsJson = False) -> None:
    """Follow a workflow live until it completes (exit code 0) or halts (1, saying why).

    On a terminal the view redraws: each step's state, attempts and duration, the running
    step's elapsed time and last lines of output. In a pipe: one line per change. With
    --json: one JSON object per line — {"at", "event": "workflow", "workflow": (as show
    --json)} on each change, {"at", "event": "output", "line": {…}} per output line, and
    last {"at", "event": "end", "code", "message"}.

    Example: wfectl watch maint-42 --json | jq -c 'select(.event == "end")'
    """

    async def work(engine: "Engine") -> Ending:
        return await watch_workflow(engine, name, as_json=as_json)

    finish(run_engine(settings_of(cli), work), as_json=as_json)


def finish(ending: Ending, *, as_json: bool = False) -> None:
    """Print how the watch ended; exit code 1 unless the workflow completed."""
    if as_json:
        _JsonView.emit("end", code=ending.code, message=ending.message)
        if ending.code:
            raise typer.Exit(ending.code)
        return
    if ending.code:
        fail(ending.message)
    render.say(ending.message)


async def watch_workflow(
    engine: "Engine",
    name: str,
    *,
    live: bool | None = None,
    as_json: bool = False,
    poll: float = POLL_SECONDS,
) -> Ending:
    """Watch `name` until it completes or halts: the live view on a terminal (or if
    `live`), else a line per change (JSON lines with `as_json`). Ctrl-C ends the watch,
    not the workflow."""
    import asyncio

    from wfed.engine.snapshot import OutputCursor

    if live is None:
        live = sys.stdout.isatty() and not as_json
    view: _View = _JsonView() if as_json else _LiveView(name) if live else _LineView()
    cursor = OutputCursor.of_running()
    try:
        with view:
            while True:
                snapshot = await engine.snapshot(name, cursor)
                cursor = snapshot.cursor
                view.update(snapshot)
                if snapshot.workflow.state is WorkflowState.COMPLETED:
                    return _completed(snapshot.workflow)
                if snapshot.workflow.state in _HALTED:
                    return await _halted(engine, snapshot, view)
                await asyncio.sleep(poll)
    except (KeyboardInterrupt, asyncio.CancelledError):
        sys.stdout.write("\n")
        raise typer.Exit(130) from None


def _completed(workflow: "Workflow") -> Ending:
    steps = workflow.steps
    took = ""
    if steps and steps[0].started_at and workflow.row.finished_at:
        took = (
            f" in {render.span((workflow.row.finished_at - steps[0].started_at).total_seconds())}"
        )
    return Ending(0, f"{workflow.name} completed: {render.plural(len(steps), 'step')}{took}")


async def _halted(engine: "Engine", snapshot: "Snapshot", view: "_View") -> Ending:
    """Why it halted (one more read), and the last lines of the step it halted at."""
    workflow = await engine.get(snapshot.workflow.name)
    if workflow.state not in _HALTED:  # moved on meanwhile (resumed, retried, …)
        return Ending(1, f"{workflow.name} is {workflow.state.value} (it was halted)")
    lines = await engine.output(workflow.name) if workflow.steps else []
    view.halted(workflow, lines[-OUTPUT_LINES:])
    return Ending(1, halt_message(workflow))


def halt_message(workflow: "Workflow") -> str:
    """`maint-42 halted in error: step 2 'shell' failed: …`, `maint-42 paused before
    step 3 'pause' (approve): pause by alice@ops: …`."""
    why = f": {workflow.halt_reason}" if workflow.halt_reason else ""
    if workflow.state is WorkflowState.ERROR:
        return f"{workflow.name} halted in error{why}"
    where = ""
    if workflow.current_step < render.step_count(workflow):
        title = render.step_title(workflow, workflow.current_step)
        where = f" before {title}" if workflow.state is WorkflowState.PAUSED else f" at {title}"
    return f"{workflow.name} {workflow.state.value}{where}{why}"


# -- the two views --------------------------------------------------------------------


class _View:
    def __enter__(self) -> "_View":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, snapshot: "Snapshot") -> None:
        raise NotImplementedError

    def halted(self, workflow: "Workflow", lines: "list[OutputLine]") -> None:
        raise NotImplementedError


def _stamp() -> str:
    from wfed.clock import utc_now

    return f"{utc_now():%H:%M:%S}Z"


def _step_key(step: "StepRow") -> tuple[StepState, int, str | None]:
    return step.state, step.attempts, step.error


class _LineView(_View):
    """One line per change: the workflow's state or request, a step's state or attempt."""

    def __init__(self) -> None:
        self._workflow: tuple[WorkflowState, Any, str | None] | None = None
        self._steps: dict[int, tuple[StepState, int, str | None]] = {}

    def update(self, snapshot: "Snapshot") -> None:
        workflow = snapshot.workflow
        first = self._workflow is None
        row = workflow.row
        state = (row.state, row.requested, row.claimed_by)
        lines = []
        if state != self._workflow:
            self._workflow = state
            lines.append(f"{workflow.name}: {_workflow_line(workflow, first=first)}")
        steps = []
        for step in workflow.steps:
            key = _step_key(step)
            if self._steps.get(step.position) == key:
                continue
            self._steps[step.position] = key
            if first and step.state in {StepState.PENDING, StepState.COMPLETED}:
                continue  # before the watch began: counted in the workflow's line
            steps.append(f"{render.step_title(workflow, step.position)}: {_step_change(step)}")
        # Claimed, then its step starts; a step ends, then the workflow does.
        ending = row.state not in {WorkflowState.PENDING, WorkflowState.RUNNING}
        for line in steps + lines if ending and not first else lines + steps:
            self._say(line)

    def halted(self, workflow: "Workflow", lines: "list[OutputLine]") -> None:
        if lines:
            position, attempt = lines[-1].position, lines[-1].attempt
            title = render.step_title(workflow, position)
            self._say(f"last lines of {title}, attempt {attempt}:")
            for line in lines:
                render.say(f"    {line.text}")

    def _say(self, text: str) -> None:
        render.say(f"{_stamp()} {text}")
        sys.stdout.flush()


class _JsonView(_View):
    """One JSON object per line: the workflow (as `show --json`) whenever its state, a
    request, its owner or a step's state, attempts or error changed; each new output line."""

    def __init__(self) -> None:
        self._seen: object = None
        self._attempts_shown: set[tuple[int, int]] = set()

    @staticmethod
    def emit(event: str, **fields: Any) -> None:
        import json

        from wfed.clock import utc_now

        document = {"at": f"{utc_now():%Y-%m-%dT%H:%M:%S.%f}Z", "event": event, **fields}
        sys.stdout.write(json.dumps(document, ensure_ascii=False, default=str) + "\n")
        sys.stdout.flush()

    def update(self, snapshot: "Snapshot") -> None:
        if snapshot.workflow.state not in _HALTED:  # `halted` shows it, with why
            self._workflow_if_changed(snapshot.workflow)
        for line in snapshot.output:
            self._attempts_shown.add((line.position, line.attempt))
            self.emit("output", line=line.to_json())

    def _workflow_if_changed(self, workflow: "Workflow") -> None:
        row = workflow.row
        seen = (
            (row.state, row.requested, row.claimed_by, row.current_step, workflow.halt_reason),
            [_step_key(step) for step in workflow.steps],
        )
        if seen != self._seen:
            self._seen = seen
            self.emit("workflow", workflow=workflow.to_json())

    def halted(self, workflow: "Workflow", lines: "list[OutputLine]") -> None:
        self._workflow_if_changed(workflow)  # read again for why it halted
        # The last lines of the step it halted at, unless they were followed already.
        if lines and (lines[-1].position, lines[-1].attempt) not in self._attempts_shown:
            for line in lines:
                self.emit("output", line=line.to_json())


def _step_change(step: "StepRow") -> str:
    attempt = f"attempt {step.attempts}"
    if step.state is StepState.RUNNING:
        return f"running ({attempt})"
    took = ""
    if step.started_at and step.finished_at:
        took = f" in {render.span((step.finished_at - step.started_at).total_seconds())}"
    if step.state is StepState.COMPLETED:
        return f"completed{took} ({attempt})"
    error = f": {step.error.splitlines()[0]}" if step.error else ""
    if step.state is StepState.ERROR:
        return f"error{took} ({attempt}){error}"
    if step.state is StepState.PENDING and step.attempts:
        return f"pending ({attempt} failed, to be retried){error}"
    return step.state.value + (f" ({attempt})" if step.attempts else "") + error


def _workflow_line(workflow: "Workflow", *, first: bool) -> str:
    row = workflow.row
    total = render.step_count(workflow)
    done = sum(1 for s in workflow.steps if s.state in {StepState.COMPLETED, StepState.SKIPPED})
    text = row.state.value
    if row.state is WorkflowState.RUNNING:
        text += f" (claimed by {row.claimed_by})" if row.claimed_by else ""
    elif row.state is WorkflowState.PENDING:
        text += " (waiting for a daemon"
        if row.run_after is not None:
            text += f", not before {row.run_after:%Y-%m-%d %H:%M:%S}Z"
        text += ")"
    if row.requested is not None:
        text += f", {row.requested.value} requested"
    if first or row.state is not WorkflowState.COMPLETED:
        text += f"; {done} of {render.plural(total, 'step')} done"
    return text


class _LiveView(_View):
    """The terminal view (rich Live), redrawn four times a second from the last
    snapshot: the elapsed times move without asking the database."""

    def __init__(self, name: str) -> None:
        from rich.live import Live

        self.name = name
        self.snapshot: Snapshot | None = None
        self.output: deque[OutputLine] = deque(maxlen=OUTPUT_LINES)
        self.output_of: tuple[int, int] | None = None
        self.halt: str | None = None
        self._live = Live(
            get_renderable=self._render,
            console=render.console(),
            refresh_per_second=4,
            transient=False,
        )

    def __enter__(self) -> "_LiveView":
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.__exit__(None, None, None)

    def update(self, snapshot: "Snapshot") -> None:
        for line in snapshot.output:  # the end of one attempt, then the next one's
            if self.output_of != (line.position, line.attempt):
                self.output.clear()
                self.output_of = (line.position, line.attempt)
            self.output.append(line)
        self.snapshot = snapshot
        self._live.refresh()

    def halted(self, workflow: "Workflow", lines: "list[OutputLine]") -> None:
        if lines:
            self.output.clear()
            self.output.extend(lines)
            self.output_of = (lines[-1].position, lines[-1].attempt)
        self.halt = workflow.halt_reason or workflow.state.value
        self._live.refresh()

    def _render(self) -> "RenderableType":
        from rich.console import Group
        from rich.text import Text

        from wfed.clock import utc_now

        if self.snapshot is None:
            return Text(f"{self.name}: reading…", style="dim")
        now = utc_now()
        workflow = self.snapshot.workflow
        parts: list[RenderableType] = [_header(workflow, now), _steps_table(workflow, now)]
        if self.output and self.output_of is not None:
            position, attempt = self.output_of
            title = render.step_title(workflow, position)
            parts.append(Text(f"\nlast lines of {title}, attempt {attempt}:", style="bold"))
            for line in self.output:
                parts.append(Text(f"  {line.text}", style="red" if line.stream == "stderr" else ""))
        if self.halt:
            parts.append(Text(f"\nhalted because: {self.halt}", style="bold red"))
        return Group(*parts)


def _header(workflow: "Workflow", now: datetime) -> "RenderableType":
    from rich.text import Text

    row = workflow.row
    header = Text.assemble((workflow.name, "bold"), "  ", render.state_text(row.state))
    total = render.step_count(workflow)
    if row.state is WorkflowState.COMPLETED:
        header.append("  the step done" if total == 1 else f"  all {total} steps done")
    else:
        header.append(f"  step {row.current_step} of {total}")
    if row.requested is not None:
        header.append(f"  {row.requested.value} requested", style="yellow")
    if row.claimed_by and row.state is WorkflowState.RUNNING:
        header.append(f"  on {row.claimed_by}", style="dim")
    if row.state is WorkflowState.PENDING:
        header.append("  waiting for a daemon", style="dim")
        if row.run_after is not None:
            header.append(f" (run after {render.when(row.run_after, now)})", style="dim")
    return header


def _steps_table(workflow: "Workflow", now: datetime) -> "RenderableType":
    from rich.table import Table
    from rich.text import Text

    table = Table(show_edge=False, header_style="bold")
    table.add_column("#", justify="right")
    for column in ("step", "label", "state", "attempts", "duration"):
        table.add_column(column)
    table.add_column("error", overflow="ellipsis", max_width=60)
    current = workflow.current_step if workflow.state is not WorkflowState.COMPLETED else None
    for step in workflow.steps:
        if step.started_at and step.finished_at:
            duration = render.span((step.finished_at - step.started_at).total_seconds())
        elif step.started_at and step.state is StepState.RUNNING:
            duration = f"{render.span(max((now - step.started_at).total_seconds(), 0))} so far"
        else:
            duration = ""
        marker = "> " if step.position == current else ""
        table.add_row(
            Text(f"{marker}{step.position}", style="bold" if marker else ""),
            Text(step.step),
            Text(step.label or ""),
            render.state_text(step.state),
            Text(str(step.attempts)),
            Text(duration),
            Text((step.error or "").split("\n")[0], style="red"),
        )
    return table
