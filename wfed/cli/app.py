"""wfectl: the control tool of wfed (README, "Operating wfed").

Every command parses its arguments, calls the Engine and renders the result: a rich table
for people, `--json` (stable keys) for scripts. Exit codes: 0 done; 1 refused or failed,
with one line `wfectl: <message>` on stderr (every WfedError, database errors included);
2 usage error (click's own). Nothing is ever printed as a traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from wfed import __version__
from wfed.clock import utc_now
from wfed.engine import Engine
from wfed.engine.views import EventView, PlannedStep, StepInfo, Workflow, WorkflowSummary
from wfed.errors import WfedError
from wfed.logging import configure_logging
from wfed.states import WorkflowState

from . import render
from .parse import parse_assignments, parse_json_object, parse_step, parse_when
from .run import Settings, fail, run_engine

app = typer.Typer(
    name="wfectl",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
db_app = typer.Typer(no_args_is_help=True, help="The database schema.")
app.add_typer(db_app, name="db")


def _settings(cli: typer.Context) -> Settings:
    return cli.ensure_object(Settings)


def _complete_name(cli: typer.Context, incomplete: str) -> list[str]:
    """Shell completion of workflow names (nothing, quietly, if the database is away)."""
    try:
        settings = Settings(config_path=cli.find_root().params.get("config"))

        async def names(engine: Engine) -> list[str]:
            async with asyncio.timeout(2):
                return [workflow.name for workflow in await engine.list(limit=500)]

        found = run_engine(settings, names, connect=False)
    except Exception:  # completion must never print an error into the user's shell
        return []
    return [name for name in found if name.startswith(incomplete)]


Name = Annotated[
    str,
    typer.Argument(metavar="NAME", help="The workflow's name.", autocompletion=_complete_name),
]
Reason = Annotated[
    str | None,
    typer.Option("--reason", "-r", metavar="TEXT", help="Why; recorded in the history."),
]
AsJson = Annotated[bool, typer.Option("--json", help="JSON on stdout, with stable keys.")]


def _show_version(value: bool) -> None:
    if value:
        render.say(f"wfectl {__version__}")
        raise typer.Exit


@app.callback()
def _global_options(
    cli: typer.Context,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            "-c",
            metavar="PATH",
            help="Config file. Default: $WFED_CONFIG, else the built-in defaults (SQLite "
            "wfed.db here). $WFED_DATABASE_URL overrides the database URL.",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Control wfed workflows: create, inspect, pause, resume, retry, skip, delete.

    Example: wfectl --config /etc/wfed/config.toml list --state error
    """
    cli.obj = Settings(config_path=config)


# -- schema -------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(cli: typer.Context) -> None:
    """Create the schema, or migrate it to this wfed's version (idempotent).

    Example: wfectl db upgrade
    """

    async def work(engine: Engine) -> tuple[str | None, str]:
        return await engine.upgrade_schema()

    settings = _settings(cli)
    before, after = run_engine(settings, work, schema=False)
    where = Engine.display_url(settings.config().database.url)
    if before == after:
        render.say(f"schema of {where} is up to date (revision {after})")
    else:
        render.say(f"schema of {where} upgraded: {before or 'none'} -> {after}")


# -- create ---------------------------------------------------------------------------


@app.command()
def create(
    cli: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="A unique name.")],
    steps: Annotated[
        list[str],
        typer.Option(
            "--step",
            "-s",
            metavar="STEP",
            help='A step name, or a JSON object like \'{"step": "sleep", "args": '
            '{"seconds": 5}, "retries": 2}\'. Repeat in order.',
        ),
    ],
    context_items: Annotated[
        list[str] | None,
        typer.Option(
            "--ctx",
            metavar="KEY=VALUE",
            help="A context entry; VALUE is JSON where it parses, else a string. Repeatable.",
        ),
    ] = None,
    context_json: Annotated[
        str | None,
        typer.Option("--ctx-json", metavar="JSON", help="The context as a JSON object."),
    ] = None,
    queue: Annotated[str, typer.Option("--queue", "-q", help="The queue.")] = "default",
    priority: Annotated[int, typer.Option("--priority", "-p", help="Higher runs first.")] = 0,
    run_after: Annotated[
        str | None,
        typer.Option(
            "--run-after",
            metavar="WHEN",
            help="Not before WHEN: ISO-8601 (UTC unless it has an offset) or relative "
            "(+30s, +10m, +2h, +1d).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and show the plan; write nothing.")
    ] = False,
) -> None:
    """Create a workflow; a daemon runs it. --ctx entries override --ctx-json keys.

    \b
    Example:
      wfectl create maint-42 -s stop_app -s run_cmd -s start_app \\
        --ctx target_servers='["web1", "web2"]' --ctx cmd=uptime
    """
    definition = [parse_step(step) for step in steps]
    context = parse_json_object(context_json, "--ctx-json") if context_json else {}
    context.update(parse_assignments(context_items or [], "--ctx"))
    after = parse_when(run_after, utc_now()) if run_after else None
    settings = _settings(cli)
    where = f"queue {queue}, priority {priority}"
    if after is not None:
        where += f", runs after {render.when(after, utc_now())}"

    if dry_run:

        async def plan(engine: Engine) -> list[PlannedStep]:
            return engine.dry_run(definition, context)

        plans = run_engine(settings, plan, connect=False)
        render.say(f"dry run: {name} would get {len(plans)} steps, {where}; nothing was written")
        render.console().print(render.plan_view(plans, context))
        return

    async def work(engine: Engine) -> Workflow:
        return await engine.create_workflow(
            name, context, definition, queue=queue, priority=priority, run_after=after
        )

    workflow = run_engine(settings, work)
    render.say(f"created {name}: {render.step_count(workflow)} steps, {where}")


# -- reading ------------------------------------------------------------------------


@app.command("list")
def list_workflows(
    cli: typer.Context,
    state: Annotated[
        list[WorkflowState] | None,
        typer.Option("--state", help="Only workflows in this state. Repeatable."),
    ] = None,
    queue: Annotated[str | None, typer.Option("--queue", "-q", help="Only this queue.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most N.")] = 100,
    as_json: AsJson = False,
) -> None:
    """List workflows, newest first.

    Example: wfectl list --state error --state paused
    """

    async def work(engine: Engine) -> list[WorkflowSummary]:
        return await engine.list(state=state or None, queue=queue, limit=limit)

    workflows = run_engine(_settings(cli), work)
    if as_json:
        render.print_json([workflow.to_json() for workflow in workflows])
    elif workflows:
        render.console().print(render.workflows_table(workflows, utc_now()))
    else:
        render.say("no workflows")


@app.command()
def show(cli: typer.Context, name: Name, as_json: AsJson = False) -> None:
    """Show a workflow: state, why it halted, its steps (attempts, timings, errors), context.

    Example: wfectl show maint-42
    """

    async def work(engine: Engine) -> Workflow:
        return await engine.get(name)

    workflow = run_engine(_settings(cli), work)
    if as_json:
        render.print_json(workflow.to_json())
    else:
        render.console().print(render.workflow_view(workflow, utc_now()))


@app.command()
def history(cli: typer.Context, name: Name, as_json: AsJson = False) -> None:
    """Show a workflow's events, oldest first (also once it is deleted).

    Example: wfectl history maint-42 --json
    """

    async def work(engine: Engine) -> list[EventView]:
        return await engine.history(name)

    events = run_engine(_settings(cli), work)
    if as_json:
        render.print_json([event.to_json() for event in events])
    else:
        render.console().print(render.events_table(events, utc_now()))


@app.command()
def export(
    cli: typer.Context,
    name: Name,
    as_json: Annotated[bool, typer.Option("--json", help="Accepted; always JSON.")] = True,
) -> None:
    """Print a workflow, its steps and its events as one JSON document.

    Example: wfectl export maint-42 > maint-42.json
    """

    async def work(engine: Engine) -> dict[str, Any]:
        return await engine.export(name)

    render.print_json(run_engine(_settings(cli), work))


@app.command()
def steps(cli: typer.Context, as_json: AsJson = False) -> None:
    """List the steps workflows can use: the built-ins and those of the configured step modules.

    Example: wfectl steps --json
    """

    async def work(engine: Engine) -> list[StepInfo]:
        return engine.registered_steps()

    found = run_engine(_settings(cli), work, connect=False)
    if as_json:
        render.print_json([step.to_json() for step in found])
    else:
        render.console().print(render.steps_table(found))


# -- control ------------------------------------------------------------------------


def _next(workflow: Workflow) -> str:
    """Where a pending workflow continues: `from step 2 'start_app'`."""
    if workflow.current_step >= render.step_count(workflow):
        return "no steps left: it completes when it runs next"
    return f"from {render.step_title(workflow, workflow.current_step)}"


@app.command()
def pause(cli: typer.Context, name: Name, reason: Reason = None) -> None:
    """Pause a workflow: at once if pending, after its current step if running.

    Example: wfectl pause maint-42 --reason "waiting for the DBA"
    """

    async def work(engine: Engine) -> Workflow:
        return await engine.pause(name, reason)

    workflow = run_engine(_settings(cli), work)
    if workflow.state is WorkflowState.RUNNING:
        render.say(f"pause requested for {name} (running: it pauses after its current step)")
    else:
        render.say(f"paused {name}")


@app.command()
def resume(cli: typer.Context, name: Name, reason: Reason = None) -> None:
    """Resume a paused workflow from the step it halted before.

    Example: wfectl resume maint-42 --reason "approved by ops"
    """

    async def work(engine: Engine) -> Workflow:
        return await engine.resume(name, reason)

    workflow = run_engine(_settings(cli), work)
    render.say(f"resumed {name} (pending, {_next(workflow)})")


@app.command()
def stop(cli: typer.Context, name: Name, reason: Reason = None) -> None:
    """Stop a workflow for good; a running step is cancelled by its daemon.

    Example: wfectl stop maint-42 --reason "wrong servers"
    """
    settings = _settings(cli)

    async def work(engine: Engine) -> Workflow:
        return await engine.stop(name, reason)

    workflow = run_engine(settings, work)
    if workflow.state is WorkflowState.RUNNING:
        interval = settings.config().daemon.control_interval
        render.say(
            f"stop requested for {name} (running: its daemon cancels the current step "
            f"within about {interval:g}s)"
        )
    else:
        render.say(f"stopped {name}")


@app.command()
def retry(cli: typer.Context, name: Name, reason: Reason = None) -> None:
    """Run a workflow in error again, from the step that failed.

    Example: wfectl retry maint-42 --reason "disk cleaned up"
    """

    async def work(engine: Engine) -> Workflow:
        return await engine.retry(name, reason)

    workflow = run_engine(_settings(cli), work)
    render.say(f"retrying {name} (pending, {_next(workflow)})")


@app.command()
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

    async def work(engine: Engine) -> tuple[Workflow, Workflow]:
        before = await engine.get(name)
        return before, await engine.skip(name, set_context=updates or None, reason=reason)

    before, after = run_engine(_settings(cli), work)
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

    async def work(engine: Engine) -> Workflow:
        return await engine.restart(name, from_step, reason)

    workflow = run_engine(_settings(cli), work)
    render.say(f"restarted {name} (pending, {_next(workflow)})")


@app.command()
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

    async def work(engine: Engine) -> Path | None:
        written = None
        if backup is not None:
            document = await engine.export(name)
            written = await asyncio.to_thread(_write_backup, backup, name, document)
        try:
            await engine.delete(name, reason)
        except WfedError:
            if written is not None:  # nothing was deleted: no backup of it either
                written.unlink(missing_ok=True)
            raise
        return written

    written = run_engine(_settings(cli), work)
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
        ContextAction, typer.Argument(metavar="set|unset", help="set KEY=VALUE… or unset KEY…")
    ],
    items: Annotated[list[str], typer.Argument(metavar="KEY=VALUE…|KEY…")],
    reason: Reason = None,
) -> None:
    """Edit the context of a workflow that is not running (VALUE: JSON, else a string).

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

    async def work(engine: Engine) -> Workflow:
        return await engine.set_context(name, updates, unset, reason)

    run_engine(_settings(cli), work)
    changes = [f"set {', '.join(updates)}"] if updates else []
    changes += [f"unset {', '.join(unset)}"] if unset else []
    render.say(f"context of {name}: {'; '.join(changes)}")


def main() -> None:
    """The `wfectl` entry point: every failure is one line and exit code 1."""
    configure_logging(level="warning")
    try:
        app(prog_name="wfectl")
    except WfedError as exc:
        fail(str(exc))
    except Exception as exc:
        if os.environ.get("WFECTL_DEBUG"):
            raise
        fail(
            f"unexpected error: {type(exc).__name__}: {exc} "
            "(set WFECTL_DEBUG=1 to see the traceback)"
        )
