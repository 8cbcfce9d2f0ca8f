"""wfectl's control commands: `pause`, `resume`, `stop`, `retry`, `skip`, `restart`,
`delete` and `ctx`. Each confirms what it did in one line (exit code 1 and one line on
stderr when the workflow's state does not allow it). `by_filter` (`wfed.cli.bulk`) lets
pause … delete act on every workflow a filter matches instead of NAME."""

import json
import os
import re
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from wfed.clock import utc_now
from wfed.errors import WfedError
from wfed.states import Operation, WorkflowState

from . import render, render_fleet
from .app import Name, Reason, app, settings_of
from .bulk import by_filter
from .parse import one_of, parse_assignments
from .run import run_engine

if TYPE_CHECKING:
    from wfed.engine import Engine
    from wfed.engine.views import DaemonStatus, Workflow


def _next(workflow: "Workflow") -> str:
    """Where a pending workflow continues: `from step 2 'start_app'`, and when, if it is
    set to run later: `, not before 2026-12-01 22:00:00Z (in 7h)`."""
    if workflow.current_step >= render.step_count(workflow):
        where = "no steps left: it completes when it runs next"
    else:
        where = f"from {render.step_title(workflow, workflow.current_step)}"
    run_after = workflow.row.run_after
    now = utc_now()
    if isinstance(run_after, datetime) and run_after > now:
        return f"{where}, not before {render.when(run_after, now)}"
    return where


@app.command()
@by_filter(Operation.PAUSE)
def pause(cli: typer.Context, name: Name, reason: Reason = None) -> None:
    """Pause a workflow: at once if pending, after its current step if running.

    Example: wfectl pause maint-42 --reason "waiting for the DBA"
    """

    async def work(engine: "Engine") -> "Workflow":
        return await engine.pause(name, reason)

    workflow = run_engine(settings_of(cli), work)
    if workflow.state is not WorkflowState.RUNNING:
        render.say(f"paused {name}")
    elif workflow.current_step + 1 >= render.step_count(workflow):
        # A pause is honoured between steps, and none follows the last one.
        render.say(
            f"pause requested for {name} (running its last step: no step is left to pause "
            "before, so it completes if that step succeeds)"
        )
    else:
        render.say(f"pause requested for {name} (running: it pauses after its current step)")


@app.command()
@by_filter(Operation.RESUME)
def resume(cli: typer.Context, name: Name, reason: Reason = None) -> None:
    """Resume a paused workflow from the step it halted before.

    Example: wfectl resume maint-42 --reason "approved by ops"
    """

    async def work(engine: "Engine") -> "Workflow":
        return await engine.resume(name, reason)

    workflow = run_engine(settings_of(cli), work)
    render.say(f"resumed {name} (pending, {_next(workflow)})")


@app.command()
@by_filter(Operation.STOP)
def stop(cli: typer.Context, name: Name, reason: Reason = None) -> None:
    """Stop a workflow for good; a running step is cancelled by its daemon.

    Example: wfectl stop maint-42 --reason "wrong servers"
    """
    settings = settings_of(cli)

    async def work(engine: "Engine") -> "tuple[Workflow, DaemonStatus | None]":
        workflow = await engine.stop(name, reason)
        running = workflow.state is WorkflowState.RUNNING
        return workflow, await engine.owner(workflow) if running else None

    workflow, owner = run_engine(settings, work)
    if workflow.state is WorkflowState.RUNNING:
        interval = settings.config().daemon.control_interval
        render.say(render_fleet.stop_requested(workflow, owner, interval, utc_now()))
    else:
        render.say(f"stopped {name}")


@app.command()
@by_filter(Operation.RETRY)
def retry(cli: typer.Context, name: Name, reason: Reason = None) -> None:
    """Run a workflow in error again, from the step that failed.

    Example: wfectl retry maint-42 --reason "disk cleaned up"
    """

    async def work(engine: "Engine") -> "Workflow":
        return await engine.retry(name, reason)

    workflow = run_engine(settings_of(cli), work)
    render.say(f"retrying {name} (pending, {_next(workflow)})")


@app.command()
@by_filter(Operation.SKIP)
def skip(
    cli: typer.Context,
    name: Name,
    set_items: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="Also set a context entry (VALUE: JSON, else a string). Repeatable.",
        ),
    ] = None,
    reason: Reason = None,
) -> None:
    """Skip the step a workflow halted at (error or paused) and continue after it.

    Example: wfectl skip maint-42 --set maintenance_output='{}' --reason "done by hand"
    """
    updates = parse_assignments(set_items or [], "--set")

    async def work(engine: "Engine") -> "tuple[Workflow, Workflow]":
        before = await engine.get(name)
        return before, await engine.skip(name, set_context=updates or None, reason=reason)

    before, after = run_engine(settings_of(cli), work)
    skipped = render.step_title(before, before.current_step)
    render.say(f"skipped {skipped} of {name} (pending, {_next(after)})")


@app.command()
def restart(
    cli: typer.Context,
    name: Name,
    from_step: Annotated[
        int,
        typer.Option("--from-step", metavar="K", min=0, help="The step to start at (0-based)."),
    ],
    reason: Reason = None,
) -> None:
    """Run a workflow that is not running again, from step K (0-based).

    Example: wfectl restart maint-42 --from-step 0 --reason "second pass"
    """

    async def work(engine: "Engine") -> "Workflow":
        return await engine.restart(name, from_step, reason)

    workflow = run_engine(settings_of(cli), work)
    render.say(f"restarted {name} (pending, {_next(workflow)})")


@app.command()
@by_filter(Operation.DELETE)
def delete(
    cli: typer.Context,
    name: Name,
    backup: Annotated[
        Path | None,
        typer.Option(
            "--backup",
            metavar="DIR",
            file_okay=False,
            help="First write the export to DIR/NAME-<UTC time>.json.",
        ),
    ] = None,
    reason: Reason = None,
) -> None:
    """Delete a workflow that is not running; its history is kept.

    Example: wfectl delete maint-42 --backup /var/backups/wfed --reason "obsolete"
    """

    async def work(engine: "Engine") -> Path | None:
        written = None
        if backup is not None:
            document = await engine.export(name)
            import asyncio

            written = await asyncio.to_thread(_write_backup, backup, name, document)
        try:
            await engine.delete(name, reason)
        except WfedError:
            if written is not None:  # nothing was deleted: no backup of it either
                written.unlink(missing_ok=True)
            raise
        return written

    written = run_engine(settings_of(cli), work)
    render.say(f"deleted {name}" + (f" (backup: {written})" if written else ""))


def _write_backup(directory: Path, name: str, document: dict[str, Any]) -> Path:
    """Write an export durably to a new file, before the workflow is deleted."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    path = directory / f"{safe}-{utc_now():%Y%m%dT%H%M%S}Z.json"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with path.open("x", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2, ensure_ascii=False, default=str)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise WfedError(f"cannot write the backup {path}: {exc.strerror or exc}") from None
    return path


class ContextAction(StrEnum):
    SET = "set"
    UNSET = "unset"


@app.command("ctx")
def context(
    cli: typer.Context,
    name: Name,
    action: Annotated[
        ContextAction,
        typer.Argument(
            parser=one_of(ContextAction, "an action"),
            metavar="set|unset",
            help="set KEY=VALUE… or unset KEY…",
        ),
    ],
    items: Annotated[list[str], typer.Argument(metavar="KEY=VALUE…|KEY…")],
    reason: Reason = None,
) -> None:
    """Edit the context of a workflow that is not running (VALUE: JSON, else a string).

    A VALUE starting with { or [ must be JSON: to store such a text, quote it as a JSON
    string (x='"{text"').

    Example: wfectl ctx maint-42 set cmd='["true"]' && wfectl ctx maint-42 unset workdir
    """
    updates: dict[str, Any] = {}
    unset: list[str] = []
    if action is ContextAction.SET:
        updates = parse_assignments(items, "KEY=VALUE")
    else:
        unset = items
        for key in unset:
            if not key or "=" in key:
                raise typer.BadParameter(f"{key!r}: unset takes keys, not KEY=VALUE")

    async def work(engine: "Engine") -> "Workflow":
        return await engine.set_context(name, updates, unset, reason)

    run_engine(settings_of(cli), work)
    changes = [f"set {', '.join(updates)}"] if updates else []
    changes += [f"unset {', '.join(unset)}"] if unset else []
    render.say(f"context of {name}: {'; '.join(changes)}")
