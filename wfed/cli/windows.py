"""`wfectl windows NAME`: replace or clear a workflow's own maintenance windows while it
does not run (docs/windows.md), recorded with the operator and reason. Clearing them is
how an operator lets a workflow run outside its windows."""

from typing import TYPE_CHECKING, Annotated

import typer

from . import render
from .app import Name, Reason, app, settings_of
from .run import run_engine

if TYPE_CHECKING:
    from wfed.engine import Engine
    from wfed.engine.views import Workflow


@app.command("windows")
def set_windows(
    cli: typer.Context,
    name: Name,
    window_specs: Annotated[
        list[str] | None,
        typer.Option(
            "--window",
            metavar="SPEC",
            help="The new windows, e.g. 'sat 02:00-05:00 Europe/Paris'. Repeatable.",
        ),
    ] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="No windows of its own: it may run at any time.")
    ] = False,
    reason: Reason = None,
) -> None:
    """Replace (--window …) or clear (--clear) the maintenance windows of a workflow that
    is not running. A workflow waiting for its window may run at once; one a window's
    closing paused is resumed by a daemon when its new windows are open.

    \b
    Example:
      wfectl windows maint-42 --clear --reason "approved outside the window"
    """
    if clear == bool(window_specs):
        raise typer.BadParameter("give either --window SPEC (repeatable) or --clear")
    specs = [] if clear else list(window_specs or [])

    async def work(engine: "Engine") -> "Workflow":
        return await engine.set_windows(name, specs, reason)

    run_engine(settings_of(cli), work)
    if specs:
        render.say(f"windows of {name}: {', '.join(specs)}")
    else:
        render.say(f"{name} has no windows of its own now")
