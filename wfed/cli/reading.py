"""wfectl's read commands: `list`, `show`, `history`, `export` and `steps`."""

from typing import TYPE_CHECKING, Annotated, Any

import typer

from wfed.clock import utc_now
from wfed.states import WorkflowState

from . import render, render_steps
from .app import AsJson, Name, app, settings_of
from .parse import choices, one_of
from .run import run_engine

if TYPE_CHECKING:
    from wfed.engine import Engine
    from wfed.engine.views import EventView, StepInfo, Workflow, WorkflowSummary


@app.command("list")
def list_workflows(
    cli: typer.Context,
    state: Annotated[
        list[WorkflowState] | None,
        typer.Option(
            "--state",
            parser=one_of(WorkflowState, "a workflow state"),
            metavar="STATE",
            help=f"Only workflows in this state ({choices(WorkflowState)}). Repeatable.",
        ),
    ] = None,
    queue: Annotated[str | None, typer.Option("--queue", "-q", help="Only this queue.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most N.")] = 100,
    as_json: AsJson = False,
) -> None:
    """List workflows, newest first.

    Example: wfectl list --state error --state paused
    """

    async def work(engine: "Engine") -> "list[WorkflowSummary]":
        return await engine.list(state=state or None, queue=queue, limit=limit)

    workflows = run_engine(settings_of(cli), work)
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

    async def work(engine: "Engine") -> "Workflow":
        return await engine.get(name)

    workflow = run_engine(settings_of(cli), work)
    if as_json:
        render.print_json(workflow.to_json())
    else:
        render.console().print(render.workflow_view(workflow, utc_now()))


@app.command()
def history(cli: typer.Context, name: Name, as_json: AsJson = False) -> None:
    """Show a workflow's events, oldest first (also once it is deleted).

    Example: wfectl history maint-42 --json
    """

    async def work(engine: "Engine") -> "list[EventView]":
        return await engine.history(name)

    events = run_engine(settings_of(cli), work)
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

    async def work(engine: "Engine") -> dict[str, Any]:
        return await engine.export(name)

    render.print_json(run_engine(settings_of(cli), work))


@app.command()
def steps(cli: typer.Context, as_json: AsJson = False) -> None:
    """List the steps workflows can use: the built-ins and those of the configured step modules.

    Example: wfectl steps --json
    """

    async def work(engine: "Engine") -> "list[StepInfo]":
        return engine.registered_steps()

    found = run_engine(settings_of(cli), work, connect=False)
    if as_json:
        render.print_json([step.to_json() for step in found])
    else:
        render.console().print(render_steps.steps_table(found))
