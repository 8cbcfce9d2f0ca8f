"""Runbook files (docs/runbooks.md): `wfectl run FILE` enqueues one with its parameters,
`wfectl runbook lint DIR` checks a directory of them (for a pre-commit hook or CI).

A bad file or parameter is one line naming the file (and the line, where the TOML parser
gives one, and the field) and exit code 1, before anything is written.
"""

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from . import render, render_steps
from .app import app, settings_of
from .parse import parse_when
from .run import run_engine

if TYPE_CHECKING:
    from wfed.engine import Engine
    from wfed.engine.runbooks import Enqueue
    from wfed.engine.views import PlannedStep, Workflow

    from .watch import Ending

runbook_app = typer.Typer(
    no_args_is_help=True,
    help="Runbook files: check them (docs/runbooks.md). Example: wfectl runbook lint runbooks/",
)
app.add_typer(runbook_app, name="runbook")

RunbookFile = Annotated[
    Path,
    typer.Argument(
        metavar="FILE",
        dir_okay=False,
        help="The runbook: TOML, or JSON for a .json file.",
    ),
]


def _params(items: list[str]) -> dict[str, str]:
    """`--param NAME=VALUE` as text by name (the runbook gives each its type)."""
    given: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(
                f"{item!r} is not NAME=VALUE (e.g. servers=web1,web2 or count=3)",
                param_hint="--param",
            )
        given[key] = value
    return given


@app.command("run")
def run_runbook(
    cli: typer.Context,
    file: RunbookFile,
    params: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            metavar="NAME=VALUE",
            help="A parameter of the runbook, given as text: a list is a JSON list or "
            "items separated by commas, a bool is true or false. Repeatable.",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", metavar="NAME", help="The workflow's name, instead of the pattern."),
    ] = None,
    queue: Annotated[
        str | None,
        typer.Option("--queue", "-q", metavar="Q", help="The queue, instead of the runbook's."),
    ] = None,
    after: Annotated[
        str | None,
        typer.Option(
            "--after",
            metavar="WHEN",
            help="Not before WHEN: ISO-8601 (UTC unless it has an offset) or relative "
            "(+30s, +10m, +2h, +1d).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and show the plan; write nothing.")
    ] = False,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="Then follow it live, as `wfectl watch` (exit code 1 if it halts).",
        ),
    ] = False,
) -> None:
    """Enqueue a runbook file with its parameters; a daemon runs it.

    The file's path and sha256 and the parameters are recorded in the workflow's first
    event (`wfectl history`).

    \b
    Example:
      wfectl run examples/maintenance.toml --param servers=intweb1,intweb2 --watch
    """
    from wfed.clock import utc_now

    given = _params(params or [])
    run_after = None
    if after:
        try:
            run_after = parse_when(after, utc_now())
        except typer.BadParameter as exc:
            exc.param_hint = "--after"
            raise
    path = str(file)
    settings = settings_of(cli)

    if dry_run:

        async def plan(engine: "Engine") -> "tuple[Enqueue, list[PlannedStep], str]":
            from wfed.engine.views import PlannedStep

            from .create import check_new_name

            row, plans = engine.plan_runbook(path, given, name=name, queue=queue)
            name_note = await check_new_name(engine, row.name)
            return row, [PlannedStep.of(plan) for plan in plans], name_note

        row, steps, name_note = run_engine(settings, plan, connect=False)
        workflow, context = row.name, row.context
        where = _where(row.queue, row.priority, run_after)
        if row.locks:
            where += f", keys {', '.join(sorted(set(row.locks)))}"
        if row.windows:
            count = render.plural(len(row.windows), "window")
            where += f", in {count} ({', '.join(row.windows)})"
        render.say(
            f"dry run: {workflow} would get {render.plural(len(steps), 'step')}, {where}; "
            f"nothing was written{name_note}"
        )
        render.console().print(render_steps.plan_view(steps, context))
        return

    from .watch import finish, watch_workflow

    async def work(engine: "Engine") -> "Ending | None":
        workflow = await engine.run_runbook(
            path, given, name=name, queue=queue, run_after=run_after
        )
        _created(workflow, path, run_after)
        if not watch:
            return None
        sys.stdout.flush()
        return await watch_workflow(engine, workflow.name)

    ending = run_engine(settings, work)
    if ending is not None:
        finish(ending)


def _where(queue: str, priority: int, run_after: object) -> str:
    from datetime import datetime

    from wfed.clock import utc_now

    where = f"queue {queue}, priority {priority}"
    if isinstance(run_after, datetime):
        where += f", runs after {render.when(run_after, utc_now())}"
    return where


def _created(workflow: "Workflow", path: str, run_after: object) -> None:
    row = workflow.row
    render.say(
        f"created {workflow.name} from {path}: "
        f"{render.plural(render.step_count(workflow), 'step')}, "
        f"{_where(row.queue, row.priority, run_after)}"
    )


@runbook_app.command("lint")
def lint(
    cli: typer.Context,
    directory: Annotated[
        Path,
        typer.Argument(
            metavar="DIR",
            exists=True,
            file_okay=False,
            help="The directory of runbooks (*.toml, *.json; subdirectories too).",
        ),
    ],
) -> None:
    """Check every runbook file under DIR: syntax, keys, parameter types and defaults,
    steps and their arguments (against the configured step modules).

    One line per problem and exit code 1 when there is any; nothing is written.

    Example: wfectl --config /etc/wfed/config.toml runbook lint runbooks/
    """

    async def work(engine: "Engine") -> list[str]:
        return engine.lint_runbooks(str(directory))

    problems = run_engine(settings_of(cli), work, connect=False)
    if problems:
        sys.stdout.write("".join(f"{problem}\n" for problem in problems))
        raise typer.Exit(1)
    count = sum(1 for p in directory.rglob("*") if p.suffix in {".toml", ".json"})
    render.say(f"{count} runbook file{'' if count == 1 else 's'} under {directory}: no problems")
