"""How wfectl shows things: rich tables for people, stable JSON for scripts.

Colours only on a terminal (rich decides, and honours NO_COLOR). Times are shown in UTC
with their age ("3m ago"). User data (names, reasons, errors) is never read as rich
markup, so a `[` in a workflow name prints as itself.

rich is imported by the functions that draw a table, not with this module: a command
that prints one line (`say`) or JSON never imports it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from wfed.states import StepState, WorkflowState

if TYPE_CHECKING:
    from rich.console import Console, Group
    from rich.json import JSON
    from rich.table import Table
    from rich.text import Text

    from wfed.engine.views import (
        EventView,
        StepRow,
        Workflow,
        WorkflowSummary,
    )

STATE_STYLES = {
    WorkflowState.PENDING: "cyan",
    WorkflowState.RUNNING: "bold blue",
    WorkflowState.PAUSED: "bold yellow",
    WorkflowState.ERROR: "bold red",
    WorkflowState.STOPPED: "magenta",
    WorkflowState.COMPLETED: "green",
    StepState.SKIPPED: "dim",
}
_EVENT_STYLES = {
    "error": "bold red",
    "invalid": "bold red",
    "step_interrupted": "red",
    "stopped": "magenta",
    "deleted": "bold",
    "completed": "green",
    "paused": "yellow",
}
_CURRENT = "> "
_HALTED = {WorkflowState.PAUSED, WorkflowState.STOPPED, WorkflowState.ERROR}
_WATCHED = {WorkflowState.PENDING, WorkflowState.RUNNING}
"""The states whose `requested` a daemon acts on (a claim, the owner's heartbeat)."""


_PIPE_WIDTH = 200


def console() -> Console:
    """The stdout console: colours only on a terminal, none with NO_COLOR set.

    Into a pipe or file, tables get up to 200 columns (or $COLUMNS) rather than rich's
    80, so a row stays one line for grep.
    """
    from rich.console import Console

    width = None
    if not sys.stdout.isatty() and not os.environ.get("COLUMNS"):
        width = _PIPE_WIDTH
    _show_controls_in_rich()
    return Console(highlight=False, width=width)


# Control characters a row may hold (a name, a label or a reason written with SQL),
# which a terminal would obey: an escape sequence can rewrite the screen or the window's
# title, and a bidirectional override (U+202E) shows the text after it reversed, so that
# a name reads as another. Every text wfectl prints shows them as visible escapes
# (`\x1b`, `\u202e`) instead.
_BIDI = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
_CONTROL = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F) if chr(code) not in "\t\n"}
_CONTROL.update({code: f"\\u{code:04x}" for code in _BIDI})


def _show_controls_in_rich() -> None:
    """Make rich show control characters as `_CONTROL` does (it leaves out only the bell,
    backspace, vertical tab, form feed and carriage return, and passes ESC through).
    rich applies this table to the text of every Text it makes; its own styles are not
    text, so they are untouched."""
    from rich import control

    control._CONTROL_STRIP_TRANSLATE.update(_CONTROL)


def say(message: str) -> None:
    """One confirmation line on stdout, never wrapped or read as markup."""
    sys.stdout.write(message.translate(_CONTROL) + "\n")


def print_json(value: Any) -> None:
    """Machine output: indented JSON on stdout."""
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")


# -- time -----------------------------------------------------------------------------


def span(seconds: float) -> str:
    """A duration for people: 850ms, 42s, 3m05s, 2h10m, 3d4h."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h"


def age(moment: datetime | None, now: datetime) -> str:
    """`3m05s ago`, `in 10m00s` or `just now`."""
    if moment is None:
        return "-"
    delta = (now - moment).total_seconds()
    if abs(delta) < 1:
        return "just now"
    return f"{span(delta)} ago" if delta > 0 else f"in {span(-delta)}"


def when(moment: datetime | None, now: datetime) -> str:
    """An absolute UTC time and its age: `2026-11-27 10:15:00Z (3m05s ago)`."""
    if moment is None:
        return "-"
    return f"{moment:%Y-%m-%d %H:%M:%S}Z ({age(moment, now)})"


# -- workflows ------------------------------------------------------------------------


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """`1 step`, `3 steps` (`nouns` when the plural is not noun + s)."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def state_text(state: WorkflowState | StepState) -> Text:
    from rich.text import Text

    return Text(state.value, style=STATE_STYLES.get(state, ""))


def _cell(value: Any) -> Text:
    from rich.text import Text

    if value is None or value == "":
        return Text("-", style="dim")
    return Text(str(value))


def _compact(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str, separators=(", ", ": "))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _definition(workflow: Workflow) -> list[tuple[str, str | None]]:
    """(step, label) of each element of the definition as submitted (see
    `Workflow.submitted_steps`)."""
    return [(step, label) for step, label, _ in workflow.submitted_steps()]


def step_count(workflow: Workflow) -> int:
    """How many steps a workflow has (its definition's, before it was validated)."""
    return len(workflow.steps) or len(_definition(workflow))


def all_done(total: int) -> str:
    """What a completed workflow did: `all 3 steps done`, `its 1 step done`."""
    if total == 0:
        return "no steps to do"
    return "its 1 step done" if total == 1 else f"all {total} steps done"


def steps_of(workflow: Workflow) -> str:
    """`1 step`, `3 steps`: how many a workflow has."""
    return plural(step_count(workflow), "step")


def step_title(workflow: Workflow, position: int) -> str:
    """`step 1 'run_cmd'` (with its label), or `step 3` past the end."""
    titles = {step.position: (step.step, step.label) for step in workflow.steps}
    if not titles:
        titles = dict(enumerate(_definition(workflow)))
    if position not in titles:
        return f"step {position}"
    name, label = titles[position]
    return f"step {position} {name!r}" + (f" ({label})" if label else "")


def workflows_table(workflows: Iterable[WorkflowSummary], now: datetime) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(show_edge=False, header_style="bold")
    for column in ("name", "state", "step", "queue", "prio", "requested", "claimed by"):
        table.add_column(column)
    table.add_column("updated", no_wrap=True)
    table.add_column("last error", overflow="ellipsis", max_width=60)
    for workflow in workflows:
        total = workflow.step_count
        step = (
            f"{workflow.current_step}/{total}" if total is not None else str(workflow.current_step)
        )
        table.add_row(
            Text(workflow.name, style="bold"),
            state_text(workflow.state),
            Text(step),
            Text(workflow.queue),
            Text(str(workflow.priority)),
            _cell(workflow.requested.value if workflow.requested else None),
            _cell(workflow.claimed_by),
            Text(when(workflow.updated_at, now)),
            Text((workflow.last_error or "").split("\n")[0], style="red")
            if workflow.last_error
            else _cell(None),
        )
    return table


def workflow_view(workflow: Workflow, now: datetime) -> Group:
    """`show`: the header, why it halted, the steps, the context."""
    from rich.console import Group
    from rich.text import Text

    return Group(
        Text(workflow.name, style="bold"),
        _workflow_header(workflow, now),
        Text(""),
        _steps_table(workflow, now),
        Text(""),
        Text("context", style="bold"),
        _json(workflow.context),
    )


CONTEXT_SHOWN_LINES = 400
"""Lines of a context that a table view prints: a context of 300,000 keys is read in
full with `--json` or `export`, not scrolled through, and highlighting it would take
minutes."""


def _json(value: Any) -> JSON | Text:
    from rich.json import JSON
    from rich.text import Text

    text = json.dumps(value, default=str, ensure_ascii=False, indent=2)
    lines = text.split("\n", CONTEXT_SHOWN_LINES)
    if len(lines) <= CONTEXT_SHOWN_LINES:
        return JSON("\n".join(lines), indent=2)
    rest = lines.pop().count("\n") + 1
    return Text.assemble(
        "\n".join(lines),
        (f"\n… {rest:,} more lines: `--json` or `wfectl export` show all of it", "yellow"),
    )


def _workflow_header(workflow: Workflow, now: datetime) -> Table:
    from rich.table import Table
    from rich.text import Text

    row = workflow.row
    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold")
    header.add_column()
    total = step_count(workflow)
    # SQLite keeps whatever an INSERT wrote, a text too: such a row is shown, not refused.
    past_last = isinstance(row.current_step, int) and bool(total) and row.current_step >= total
    if row.state is WorkflowState.COMPLETED or past_last:
        at = Text(all_done(total))  # or paused at a last step's gate, to complete
    else:
        at = Text(f"{step_title(workflow, row.current_step)} of {total}")
    header.add_row("state", Text.assemble(state_text(row.state), "  ", at))
    if row.state in _HALTED and workflow.halt_reason:
        header.add_row("halted because", Text(workflow.halt_reason, style="red"))
    if row.requested is not None:
        requested = Text(row.requested.value, style="yellow")
        if row.state not in _WATCHED:
            # Written with SQL: wfectl applies a request to such a workflow at once.
            requested.append(
                f"  (not acted on: no daemon takes a {row.state.value} workflow; "
                f"`wfectl {row.requested.value}` acts at once)"
            )
        elif workflow.halt_reason:
            requested.append(f"  ({workflow.halt_reason})")
        header.add_row("requested", requested)
    header.add_row("queue", Text(f"{row.queue}   priority {row.priority}"))
    for label, line in key_lines(workflow):
        header.add_row(label, Text(line, style="yellow" if label == "waiting for" else ""))
    if workflow.window is not None and workflow.window.any:
        header.add_row("windows", _windows_text(workflow, now))
    if row.claimed_by:
        lease = f"   lease until {when(row.lease_expires_at, now)}" if row.lease_expires_at else ""
        header.add_row("claimed by", Text(row.claimed_by + lease))
    # `run_after` holds back a pending workflow only; elsewhere it is a stale value.
    if row.run_after is not None and row.state is WorkflowState.PENDING:
        header.add_row("run after", Text(when(row.run_after, now)))
    header.add_row("created", Text(when(row.created_at, now)))
    header.add_row("updated", Text(when(row.updated_at, now)))
    if row.finished_at is not None:
        header.add_row("finished", Text(when(row.finished_at, now)))
    return header


def _windows_text(workflow: Workflow, now: datetime) -> Text:
    """A workflow's maintenance windows, and when they open if they are closed."""
    from rich.text import Text

    window = workflow.window
    if window is None:
        return Text("")
    if window.invalid:
        return Text(window.invalid, style="red")
    parts = [*window.own, *(f"{spec} (queue)" for spec in window.queue)]
    text = Text(", ".join(parts))
    if not window.closed:
        text.append("   open now", style="green")
        return text
    opens = "not within a week" if window.opens_at is None else when(window.opens_at, now)
    if workflow.row.window_paused:
        text.append(
            f"\npaused as {workflow.row.window_paused!r} closed; resumes by itself "
            f"when its window opens: {opens}",
            style="yellow",
        )
    else:
        text.append(f"\nclosed: the next window opens {opens}", style="yellow")
    return text


def step_duration(workflow: Workflow, step: StepRow, now: datetime) -> str:
    """A step's own run time as `show` gives it: `6.0s`; `12s so far` while it runs;
    `1m05s, cut off` or `cut off within 38s` when its run was interrupted (see
    `wfed.engine.views.StepTime`); empty when it has none."""
    time = workflow.step_time(step, now)
    if time.seconds is None:
        return "cut off" if time.cut_off else ""
    spent = span(time.seconds)
    if time.running and time.owner_silent:
        silent = age(workflow.row.lease_expires_at, now)
        return f"{spent} so far? (its owner's lease expired {silent})"
    if time.running:
        return f"{spent} so far"
    if time.at_most:
        return f"cut off within {spent}"
    if time.cut_off:
        return f"{spent}, cut off"
    return spent


def step_state(workflow: Workflow, step: StepRow, now: datetime) -> Text:
    """A step's state; `interrupted` for a step whose row says `running` while its
    workflow does not run (a forced shutdown cut it off): nothing runs it."""
    from rich.text import Text

    if step.state is StepState.RUNNING and workflow.state is not WorkflowState.RUNNING:
        return Text("interrupted", style="red")
    return state_text(step.state)


def _steps_table(workflow: Workflow, now: datetime) -> Table:
    from rich.table import Table
    from rich.text import Text

    row = workflow.row
    steps = Table(show_edge=False, header_style="bold", title_justify="left")
    steps.add_column("#", justify="right")
    for column in ("step", "label", "state", "attempts", "duration"):
        steps.add_column(column)
    steps.add_column("error", overflow="fold")
    current = row.current_step if row.state is not WorkflowState.COMPLETED else None
    for step in workflow.steps:
        marker = _CURRENT if step.position == current else ""
        steps.add_row(
            Text(f"{marker}{step.position}", style="bold" if marker else ""),
            Text(step.step),
            _cell(step.label),
            step_state(workflow, step, now),
            Text(str(step.attempts)),
            _cell(step_duration(workflow, step, now)),
            Text(step.error, style="red") if step.error else _cell(None),
        )
    if not workflow.steps:  # enqueued with plain SQL: validated when a daemon claims it
        for position, (name, label) in enumerate(_definition(workflow)):
            marker = _CURRENT if position == current else ""
            steps.add_row(
                Text(f"{marker}{position}"),
                Text(name),
                _cell(label),
                Text("not validated yet", style="dim"),
            )
    return steps


def events_table(events: Iterable[EventView], now: datetime) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(show_edge=False, header_style="bold")
    table.add_column("at", no_wrap=True)
    table.add_column("kind")
    table.add_column("step", justify="right")
    table.add_column("actor")
    table.add_column("reason", overflow="fold")
    table.add_column("detail", overflow="fold")
    for event in events:
        table.add_row(
            Text(when(event.at, now)),
            Text(event.kind, style=_EVENT_STYLES.get(event.kind, "")),
            _cell(event.position),
            Text(event.actor),
            _cell(event.reason),
            _cell(_compact(event.detail, 80) if event.detail else None),
        )
    return table


def key_lines(workflow: Workflow) -> list[tuple[str, str]]:
    """`show`'s lines about concurrency keys: those it holds, those a pending workflow
    waits for (and who holds them), those named but not held, a `locks` value unusable."""
    keys = workflow.keys
    if keys is None:
        return []
    lines: list[tuple[str, str]] = []
    if keys.invalid:
        lines.append(("locks", f"unusable: {keys.invalid}"))
    if keys.held:
        lines.append(("holds keys", ", ".join(f"{h.key} (slot {h.slot})" for h in keys.held)))
    for wait in keys.waiting_for:
        holders = ", ".join(f"{h.workflow} ({h.state.value})" for h in wait.holders)
        lines.append(("waiting for", f"key {wait.key} (limit {wait.limit}), held by {holders}"))
    held = {h.key for h in keys.held} | {w.key for w in keys.waiting_for}
    other = [key for key in keys.named if key not in held]
    if other:
        lines.append(("keys", ", ".join(other) + " (not held)"))
    return lines
