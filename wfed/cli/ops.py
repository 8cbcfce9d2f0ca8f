"""wfectl's commands for running the fleet: `daemons`, `health` and `purge`.

`health` is made for monitoring systems: exit code 0 and a short summary on stdout when
healthy; exit code 1 and one `wfectl: <problem>` line per problem on stderr otherwise
(with `--json`, the whole report is on stdout either way).
"""

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from wfed.clock import utc_now
from wfed.durations import parse_duration
from wfed.errors import WfedError
from wfed.states import WorkflowState

from . import render, render_fleet
from .app import AsJson, app, settings_of
from .run import run_engine, scrub

if TYPE_CHECKING:
    from wfed.engine import Engine
    from wfed.engine.views import Fleet, Health

PANEL = "Operations"


# -- daemons --------------------------------------------------------------------------


@app.command(rich_help_panel=PANEL)
def daemons(cli: typer.Context, as_json: AsJson = False) -> None:
    """List the daemons: host, pid, version, queues, heartbeat, running workflows.

    A daemon whose heartbeat is older than its lease is dead; the running workflows it
    owned await recovery by a live daemon serving their queue.

    Example: wfectl daemons
    """

    async def work(engine: "Engine") -> "Fleet":
        return await engine.fleet()

    fleet = run_engine(settings_of(cli), work)
    if as_json:
        render.print_json(fleet.to_json())
        return
    if fleet.daemons:
        render.console().print(render_fleet.daemons_table(fleet, utc_now()))
    else:
        render.say("no daemons registered")
    render.say(render_fleet.awaiting_recovery(fleet.awaiting_recovery))


# -- health ---------------------------------------------------------------------------


@app.command(rich_help_panel=PANEL)
def health(
    cli: typer.Context,
    queues: Annotated[
        list[str] | None,
        typer.Option(
            "--queue",
            "-q",
            metavar="Q",
            help="Check only this queue (default: every queue). Repeatable.",
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Check the database, the schema, and that each queue with runnable work has a daemon.

    Runnable: pending and due, or running with an expired lease. A daemon serves a queue
    while its heartbeat is younger than its lease. Exit code 0 when healthy, with a short
    summary; 1 with one line per problem on stderr.

    Example: wfectl health --queue default --queue dc2
    """
    from wfed.engine import Engine
    from wfed.engine.views import Health

    settings = settings_of(cli)
    chosen = sorted(set(queues or []))

    async def work(engine: "Engine") -> "Health":
        return await engine.health(chosen, schema=False)

    database = None
    try:
        database = Engine.display_url(settings.config().database.url)
        report = run_engine(settings, work)
    except WfedError as exc:  # unreachable, login refused, schema missing or behind
        report = Health(problems=[str(exc)], queues=chosen)
    problems = [scrub(problem) for problem in report.problems]
    if as_json:
        render.print_json(report.to_json(database, problems))
    elif report.healthy:
        for line in _summary(report):
            render.say(line)
    if not report.healthy:
        sys.stdout.flush()
        sys.stderr.write("".join(f"wfectl: {problem}\n" for problem in problems))
        raise typer.Exit(1)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{queue} {count}" for queue, count in sorted(counts.items())) or "none"


def _summary(report: "Health") -> list[str]:
    """The OK lines: live daemons, queues served, runnable workflows per queue."""
    fleet = report.fleet
    runnable = report.runnable or {}
    if fleet is None:  # not reached: a report without a fleet has a problem
        return ["OK"]
    live = fleet.live
    names = f" ({', '.join(d.id for d in live)})" if live else ""
    scope = f" (queues {', '.join(report.queues)})" if report.queues else ""
    lines = [
        f"OK{scope}: {len(live)} live daemon{'' if len(live) == 1 else 's'}{names}",
        f"queues served:  {', '.join(sorted(fleet.served())) or 'none'}",
        f"runnable now:   {_counts({q: n for q, n in runnable.items() if n or report.queues})}",
    ]
    if fleet.awaiting_recovery:
        waiting = render.plural(fleet.awaiting_recovery, "running workflow")
        lines.append(f"awaiting recovery: {waiting}")
    lines += [
        f"note: no live daemon serves queue {queue!r} (nothing runnable in it now)"
        for queue in report.unserved()
    ]
    return lines


# -- purge ----------------------------------------------------------------------------


def _purge_states(values: list[str] | None) -> list[WorkflowState]:
    """`--state completed,stopped` (comma-separated or repeated); only finished states."""
    from wfed.engine.retention import PURGEABLE

    names = [part.strip().lower() for value in values or [] for part in value.split(",")]
    names = [name for name in names if name]
    if not names:
        return sorted(PURGEABLE)
    allowed = {state.value for state in PURGEABLE}
    for name in names:
        if name not in allowed:
            raise typer.BadParameter(
                f"{name!r}: only finished workflows are purged by age: "
                f"{', '.join(sorted(allowed))} (delete others one by one with `wfectl delete`)",
                param_hint="--state",
            )
    return sorted({WorkflowState(name) for name in names})


@app.command(rich_help_panel=PANEL)
def purge(
    cli: typer.Context,
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            metavar="DURATION",
            help="Purge workflows that finished longer ago than this: 30d, 12h, 90m, 1w, 0s.",
        ),
    ],
    states: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            metavar="STATE[,STATE]",
            help="completed, stopped, or both (the default). Comma-separated or repeated.",
        ),
    ] = None,
    events: Annotated[
        bool,
        typer.Option(
            "--events",
            help="Delete their events too (default: keep them, plus a `purged` event each).",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what would be purged.")
    ] = False,
    batch_size: Annotated[
        int,
        typer.Option("--batch-size", metavar="N", min=1, help="Workflows deleted per transaction."),
    ] = 1000,
    as_json: AsJson = False,
) -> None:
    """Delete finished workflows (completed, stopped) by age, in short transactions.

    Example: wfectl purge --older-than 90d --dry-run
    """
    try:
        age = parse_duration(older_than)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--older-than") from None
    chosen = _purge_states(states)
    spelled = older_than.strip().lower()

    async def work(engine: "Engine") -> int:
        return await engine.purge(
            age, states=chosen, events=events, dry_run=dry_run, batch_size=batch_size
        )

    count = run_engine(settings_of(cli), work)
    if as_json:
        from wfed.engine.views import purge_json

        document = purge_json(
            count,
            dry_run=dry_run,
            states=chosen,
            older_than=spelled,
            older_than_seconds=int(age.total_seconds()),
            events_deleted=events and not dry_run,
        )
        render.print_json(document)
        return
    which = f"{count} {'/'.join(state.value for state in chosen)} workflow"
    which += "" if count == 1 else "s"
    if dry_run:
        render.say(
            f"dry run: {which} finished more than {spelled} ago would be purged"
            + (" with their events" if events else "")
            + "; nothing was deleted"
        )
    elif events:
        render.say(f"purged {which} finished more than {spelled} ago, and their events")
    else:
        render.say(
            f"purged {which} finished more than {spelled} ago; "
            "their events are kept, plus a `purged` event each"
        )
