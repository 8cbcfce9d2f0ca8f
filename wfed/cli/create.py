"""`wfectl create`: validate a definition and context, then write a pending workflow (or,
with `--dry-run`, only show the plan)."""

from typing import TYPE_CHECKING, Annotated

import typer

from wfed.clock import utc_now

from . import render, render_steps
from .app import app, settings_of
from .parse import parse_assignments, parse_json_object, parse_step, parse_when
from .run import run_engine

if TYPE_CHECKING:
    from wfed.engine import Engine
    from wfed.engine.views import PlannedStep, Workflow


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
            help="A context entry; VALUE is JSON where it parses, else a string (but one "
            "starting with { or [ must be JSON). Repeatable.",
        ),
    ] = None,
    context_json: Annotated[
        str | None,
        typer.Option("--ctx-json", metavar="JSON", help="The context as a JSON object."),
    ] = None,
    queue: Annotated[str, typer.Option("--queue", "-q", help="The queue.")] = "default",
    priority: Annotated[int, typer.Option("--priority", "-p", help="Higher runs first.")] = 0,
    lock_keys: Annotated[
        list[str] | None,
        typer.Option(
            "--lock",
            metavar="KEY",
            help="A concurrency key it holds from its start to its end, e.g. cluster:db1 "
            "(docs/concurrency-keys.md). Repeatable.",
        ),
    ] = None,
    run_after: Annotated[
        str | None,
        typer.Option(
            "--run-after",
            metavar="WHEN",
            help="Not before WHEN: ISO-8601 (UTC unless it has an offset) or relative "
            "(+30s, +10m, +2h, +1d).",
        ),
    ] = None,
    window_specs: Annotated[
        list[str] | None,
        typer.Option(
            "--window",
            metavar="SPEC",
            help="Run only inside this maintenance window, e.g. 'sat 02:00-05:00 "
            "Europe/Paris' (docs/windows.md). Repeatable: any of them.",
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
    settings = settings_of(cli)
    where = f"queue {queue}, priority {priority}"
    if after is not None:
        where += f", runs after {render.when(after, utc_now())}"
    if lock_keys:
        where += f", keys {', '.join(sorted(set(lock_keys)))}"
    if window_specs:
        where += f", in {render.plural(len(window_specs), 'window')} ({', '.join(window_specs)})"

    if dry_run:

        async def plan(engine: "Engine") -> "tuple[list[PlannedStep], str]":
            from wfed.engine.window_reads import checked

            checked(window_specs)
            engine.check_lock_keys(lock_keys)
            engine.check_placement(queue, priority)
            plans = engine.dry_run(definition, context)
            return plans, await check_new_name(engine, name)

        plans, name_note = run_engine(settings, plan, connect=False)
        count = render.plural(len(plans), "step")
        render.say(f"dry run: {name} would get {count}, {where}; nothing was written{name_note}")
        render.console().print(render_steps.plan_view(plans, context))
        return

    async def work(engine: "Engine") -> "Workflow":
        return await engine.create_workflow(
            name,
            context,
            definition,
            queue=queue,
            priority=priority,
            run_after=after,
            windows=window_specs,
            locks=lock_keys,
        )

    workflow = run_engine(settings, work)
    render.say(f"created {name}: {render.steps_of(workflow)}, {where}")


async def check_new_name(engine: "Engine", name: str) -> str:
    """Refuse a dry run whose name is taken or no name at all, as the create itself
    would be refused (WorkflowExists, InvalidDefinition). A database that cannot answer
    does not fail the dry run, which validates offline too: what was left unchecked is
    said instead; nothing is returned when the name was checked."""
    from wfed.errors import DatabaseUnavailable, SchemaOutdated, WorkflowExists

    engine.check_name(name)
    try:
        taken = await engine.name_taken(name)
    except (DatabaseUnavailable, SchemaOutdated) as exc:
        return f" (the name was not checked against the database: {exc})"
    if taken:
        raise WorkflowExists(f"a workflow named {name!r} already exists")
    return ""
