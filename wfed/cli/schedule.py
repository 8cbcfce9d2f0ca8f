"""`wfectl schedule …` (docs/schedules.md): add, list, pause, resume, remove schedules,
and show their next runs. The daemons fire them.

A bad cron expression, time zone, step or runbook is one line and exit code 1 before
anything is written, as for `create` and `run`; options that do not go together are a
usage error (exit code 2).
"""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from . import render
from .app import AsJson, app, settings_of
from .parse import parse_assignments, parse_json_object, parse_step
from .run import run_engine

if TYPE_CHECKING:
    from datetime import datetime

    from wfed.engine import Engine
    from wfed.engine.schedules import ScheduleView, Tick


schedule_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Schedules: enqueue a workflow at each tick of a cron expression (docs/schedules.md).",
)
app.add_typer(schedule_app, name="schedule")

ScheduleName = Annotated[str, typer.Argument(metavar="NAME", help="The schedule's name.")]
CATCHUPS = ("once", "skip")


def _params(items: list[str]) -> dict[str, str]:
    given: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--param")
        given[key] = value
    return given


@schedule_app.command("add")
def add(
    cli: typer.Context,
    name: ScheduleName,
    cron: Annotated[
        str,
        typer.Option(
            "--cron",
            metavar="EXPR",
            help='A cron expression: "minute hour day-of-month month day-of-week" '
            '(e.g. "0 2 * * *"), or 6 fields with seconds first.',
        ),
    ],
    timezone: Annotated[
        str,
        typer.Option("--tz", metavar="ZONE", help="The expression's time zone (IANA name)."),
    ] = "UTC",
    runbook: Annotated[
        Path | None,
        typer.Option(
            "--runbook", metavar="FILE", dir_okay=False, help="A runbook file to enqueue."
        ),
    ] = None,
    params: Annotated[
        list[str] | None,
        typer.Option("--param", metavar="NAME=VALUE", help="A runbook parameter. Repeatable."),
    ] = None,
    steps: Annotated[
        list[str] | None,
        typer.Option(
            "--step",
            "-s",
            metavar="STEP",
            help="A step name or JSON object, as for `create`. Repeat in order.",
        ),
    ] = None,
    context_items: Annotated[
        list[str] | None,
        typer.Option("--ctx", metavar="KEY=VALUE", help="A context entry, as for `create`."),
    ] = None,
    context_json: Annotated[
        str | None,
        typer.Option("--ctx-json", metavar="JSON", help="The context as a JSON object."),
    ] = None,
    queue: Annotated[
        str | None, typer.Option("--queue", "-q", metavar="Q", help="The queue.")
    ] = None,
    priority: Annotated[
        int | None, typer.Option("--priority", "-p", help="Higher runs first.")
    ] = None,
    lock_keys: Annotated[
        list[str] | None,
        typer.Option(
            "--lock",
            metavar="KEY",
            help="A concurrency key each run holds, e.g. cluster:db1 (instead of the "
            "runbook's; docs/concurrency-keys.md). Repeatable.",
        ),
    ] = None,
    window_specs: Annotated[
        list[str] | None,
        typer.Option(
            "--window",
            metavar="SPEC",
            help="A maintenance window each run waits for, e.g. 'sat 02:00-05:00 "
            "Europe/Paris' (instead of the runbook's; docs/windows.md). Repeatable.",
        ),
    ] = None,
    catchup: Annotated[
        str | None,
        typer.Option(
            "--catchup",
            metavar="once|skip",
            help="A tick missed while no daemon ran: fire it once, or skip it. "
            "Default: the [schedules] catchup setting.",
        ),
    ] = None,
) -> None:
    """Add a schedule: at each tick, a daemon enqueues the steps (or the runbook, rendered
    now with its parameters) as a workflow named NAME-<tick in UTC>.

    \b
    Examples:
      wfectl schedule add nightly-logrotate --cron "0 2 * * *" --tz Europe/Paris \\
        --step '{"step": "shell", "args": {"cmd": ["logrotate", "-f", "/etc/logrotate.conf"]}}'
      wfectl schedule add weekly-maint --cron "0 3 * * sat" --tz Europe/Paris \\
        --runbook runbooks/maintenance.toml --param servers=intweb1,intweb2
    """
    if runbook is not None and steps:
        raise typer.BadParameter("give either --runbook FILE or --step, not both")
    if runbook is None and not steps:
        raise typer.BadParameter("give what to run: --runbook FILE or --step S (repeatable)")
    if runbook is not None and (context_items or context_json):
        raise typer.BadParameter("a runbook makes its own context: give --param instead")
    if runbook is None and params:
        raise typer.BadParameter("--param is for a runbook's parameters", param_hint="--param")
    if catchup is not None and catchup not in CATCHUPS:
        raise typer.BadParameter(f"{catchup!r} is not once or skip", param_hint="--catchup")
    given = _params(params or [])
    definition = [parse_step(step) for step in steps or []]
    context = parse_json_object(context_json, "--ctx-json") if context_json else {}
    context.update(parse_assignments(context_items or [], "--ctx"))

    from wfed.engine.schedule_times import CronTimes

    # Checked before connecting: a typo is told as such even with the database away.
    CronTimes.of(cron, timezone)

    async def work(engine: "Engine") -> "ScheduleView":
        return await engine.add_schedule(
            name,
            cron,
            timezone,
            steps=None if runbook is not None else definition,
            context=context,
            queue=queue,
            priority=priority,
            runbook=None if runbook is None else str(runbook),
            params=given,
            catchup=catchup,
            locks=lock_keys,
            windows=window_specs,
        )

    view = run_engine(settings_of(cli), work)
    template = view.template
    what = render.plural(len(template.steps), "step") if template else "its template"
    source = f" from {runbook}" if runbook is not None else ""
    render.say(
        f"added schedule {view.name}: {view.row.cron!r} in {view.row.timezone}, "
        f"next run {_local(view.next_local())} ({_utc(view.row.next_fire_at)}); "
        f"each run enqueues {what}{source} on queue "
        f"{template.queue if template else '?'}"
    )


@schedule_app.command("list")
def list_(cli: typer.Context, as_json: AsJson = False) -> None:
    """List the schedules: state, cron expression and zone, next and last runs.

    Example: wfectl schedule list --json
    """

    async def work(engine: "Engine") -> "list[ScheduleView]":
        return await engine.schedules()

    views = run_engine(settings_of(cli), work)
    if as_json:
        render.print_json([view.to_json() for view in views])
        return
    if not views:
        render.say("no schedules")
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(show_edge=False, header_style="bold")
    for column in ("name", "state", "cron", "zone", "next run", "next (UTC)", "last fired"):
        table.add_column(column, no_wrap=column != "name")
    table.add_column("queue")
    table.add_column("catchup")
    table.add_column("enqueues", overflow="ellipsis", max_width=50)
    for view in views:
        document = view.to_json()
        runbook = document["runbook"]
        table.add_row(
            Text(view.name, style="bold"),
            Text(view.row.state, style="yellow" if view.row.state == "paused" else "green"),
            Text(view.row.cron),
            Text(view.row.timezone),
            Text(_local(view.next_local()) if view.row.state == "active" else "-"),
            Text(_utc(view.row.next_fire_at) if view.row.state == "active" else "-"),
            Text(_utc(view.row.last_fired_at)),
            Text(str(document["queue"])),
            Text(view.catchup),
            Text(runbook or render.plural(document["steps"], "step")),
        )
    render.console().print(table)


@schedule_app.command("pause")
def pause(cli: typer.Context, name: ScheduleName) -> None:
    """Fire no more ticks until `schedule resume` (workflows already enqueued run).

    Example: wfectl schedule pause nightly-logrotate
    """

    async def work(engine: "Engine") -> "ScheduleView":
        return await engine.pause_schedule(name)

    view = run_engine(settings_of(cli), work)
    render.say(f"paused schedule {view.name}")


@schedule_app.command("resume")
def resume(cli: typer.Context, name: ScheduleName) -> None:
    """Fire again from the next tick to come (the ticks of the pause are not fired).

    Example: wfectl schedule resume nightly-logrotate
    """

    async def work(engine: "Engine") -> "ScheduleView":
        return await engine.resume_schedule(name)

    view = run_engine(settings_of(cli), work)
    render.say(
        f"resumed schedule {view.name}: next run {_local(view.next_local())} "
        f"({_utc(view.row.next_fire_at)})"
    )


@schedule_app.command("remove")
def remove(cli: typer.Context, name: ScheduleName) -> None:
    """Delete a schedule; the workflows it enqueued stay.

    Example: wfectl schedule remove nightly-logrotate
    """

    async def work(engine: "Engine") -> None:
        await engine.remove_schedule(name)

    run_engine(settings_of(cli), work)
    render.say(f"removed schedule {name}")


@schedule_app.command("next")
def next_(
    cli: typer.Context,
    name: ScheduleName,
    count: Annotated[
        int, typer.Option("--count", "-n", min=1, max=1000, help="How many runs.")
    ] = 5,
    as_json: AsJson = False,
) -> None:
    """The next runs of a schedule, in its time zone and in UTC.

    Example: wfectl schedule next nightly-logrotate --count 3
    """

    async def work(engine: "Engine") -> "tuple[ScheduleView, list[Tick]]":
        return await engine.schedule(name), await engine.next_ticks(name, count)

    view, ticks = run_engine(settings_of(cli), work)
    if as_json:
        render.print_json([tick.to_json() for tick in ticks])
        return
    if view.row.state != "active":
        render.say(f"schedule {name} is {view.row.state}: these run only once it is resumed")
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold")
    table.add_column(f"local ({view.row.timezone})", no_wrap=True)
    table.add_column("UTC", no_wrap=True)
    for tick in ticks:
        table.add_row(_local(tick.local), _utc(tick.utc))
    render.console().print(table)


def _local(moment: "datetime | None") -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S %Z")


def _utc(moment: "datetime | None") -> str:
    return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S}Z"
