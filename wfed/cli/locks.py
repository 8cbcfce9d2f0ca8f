"""wfectl's concurrency-key commands: `locks` (every held key, its slots, holders and
waiters) and `locks release KEY` (free a stuck key, recorded with the operator and
reason). See docs/concurrency-keys.md."""

from typing import TYPE_CHECKING, Annotated

import typer

from wfed.clock import utc_now

from . import render
from .app import AsJson, app, settings_of
from .run import run_engine

if TYPE_CHECKING:
    from datetime import datetime

    from rich.table import Table

    from wfed.engine import Engine
    from wfed.engine.views import KeyHolder, KeyStatus

locks_app = typer.Typer(
    no_args_is_help=False,
    invoke_without_command=True,
    rich_markup_mode=None,
)
app.add_typer(locks_app, name="locks", rich_help_panel="Operations")


@locks_app.callback()
def locks(cli: typer.Context, as_json: AsJson = False) -> None:
    """List the held concurrency keys: limit, slots, holders and their states, waiters.

    A holder keeps its key from its claim until it completes, is stopped or is deleted;
    paused and in error it keeps it. `wfectl locks release KEY` frees a stuck one.

    Example: wfectl locks --json
    """
    if cli.invoked_subcommand is not None:
        return

    async def work(engine: "Engine") -> "list[KeyStatus]":
        return await engine.locks()

    statuses = run_engine(settings_of(cli), work)
    if as_json:
        render.print_json([status.to_json() for status in statuses])
    elif statuses:
        render.console().print(_keys_table(statuses, utc_now()))
    else:
        render.say("no concurrency key is held")


@locks_app.command("release")
def release(
    cli: typer.Context,
    key: Annotated[str, typer.Argument(metavar="KEY", help="The concurrency key.")],
    reason: Annotated[
        str,
        typer.Option("--reason", "-r", metavar="TEXT", help="Why; recorded in the history."),
    ],
    workflow: Annotated[
        str | None,
        typer.Option("--workflow", "-w", metavar="NAME", help="Only the slot this workflow holds."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Free a concurrency key's slots (all, or one workflow's), whatever their holders do.

    The holders go on as they are (a running one is not stopped), and the next claim may
    start another workflow on the key. Each holder's history records the release, the
    operator and the reason.

    Example: wfectl locks release cluster:db1 --workflow maint-41 -r "db1 checked by hand"
    """

    async def work(engine: "Engine") -> "list[KeyHolder]":
        return await engine.release_lock(key, workflow=workflow, reason=reason)

    freed = run_engine(settings_of(cli), work)
    if as_json:
        render.print_json([holder.to_json() for holder in freed])
        return
    for holder in freed:
        render.say(
            f"released {key} slot {holder.slot} held by {holder.workflow} ({holder.state.value})"
        )


def _keys_table(statuses: "list[KeyStatus]", now: "datetime") -> "Table":
    from rich.table import Table
    from rich.text import Text

    table = Table(show_edge=False, pad_edge=False, box=None)
    for column in ("KEY", "SLOT", "HOLDER", "STATE", "OWNER", "SINCE", "WAITING"):
        table.add_column(column)
    for status in statuses:
        waiting = (
            f"{len(status.waiting)}: {', '.join(status.waiting[:3])}" if status.waiting else ""
        )
        if len(status.waiting) > 3:
            waiting += ", …"
        for index, holder in enumerate(status.holders):
            first = index == 0
            table.add_row(
                Text(f"{status.key} ({len(status.holders)}/{status.limit})" if first else ""),
                Text(str(holder.slot)),
                Text(holder.workflow),
                render.state_text(holder.state),
                Text(holder.claimed_by or ""),
                Text(render.when(holder.acquired_at, now)),
                Text(waiting if first else ""),
            )
    return table
