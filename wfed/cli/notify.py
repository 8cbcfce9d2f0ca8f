"""wfectl's notification commands: `notifications` (the deliveries to the webhooks) and
`notify test NAME` (a test message to a configured webhook)."""

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from wfed.clock import utc_now
from wfed.errors import WfedError

from . import render
from .app import AsJson, app, settings_of
from .parse import choices, one_of
from .run import run_engine

if TYPE_CHECKING:
    from rich.table import Table

    from wfed.engine import Engine
    from wfed.engine.views import DeliveryView

PANEL = "Notifications"

notify_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="The webhooks of [notify]: send a test message.",
)
app.add_typer(notify_app, name="notify", rich_help_panel=PANEL)


class DeliveryState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


@app.command(rich_help_panel=PANEL)
def notifications(
    cli: typer.Context,
    state: Annotated[
        DeliveryState | None,
        typer.Option(
            "--state",
            parser=one_of(DeliveryState, "a delivery state"),
            metavar="STATE",
            help=f"Only deliveries in this state ({choices(DeliveryState)}).",
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most N.")] = 100,
    as_json: AsJson = False,
) -> None:
    """List the deliveries of workflow events to the webhooks, newest first.

    A delivery is pending (to send, or to try again after a failure), sent, or failed
    (its retries spent; the last error says why).

    Example: wfectl notifications --state failed
    """

    async def work(engine: "Engine") -> "list[DeliveryView]":
        return await engine.notifications(state=state.value if state else None, limit=limit)

    found = run_engine(settings_of(cli), work)
    if as_json:
        render.print_json([delivery.to_json() for delivery in found])
    elif found:
        render.console().print(_deliveries_table(found))
    else:
        render.say("no deliveries")


@notify_app.command("test")
def notify_test(
    cli: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The webhook's name.")],
) -> None:
    """POST a test message to the webhook NAME of [notify], in its format, now.

    Nothing is recorded. Exit code 0 when the webhook answered 2xx, else 1 saying why.

    Example: wfectl notify test oncall
    """
    settings = settings_of(cli)
    hook = settings.config().notify.webhook(name)
    if hook is None:
        known = ", ".join(h.name for h in settings.config().notify.webhooks) or "none"
        raise WfedError(f"no webhook {name!r} in [notify] (configured: {known})")

    async def work(engine: "Engine") -> int:
        return await engine.notify_test(hook)

    status = run_engine(settings, work, connect=False)
    render.say(f"webhook {name!r} answered HTTP {status}")


def _deliveries_table(found: "list[DeliveryView]") -> "Table":
    from rich.table import Table
    from rich.text import Text

    now = utc_now()
    styles = {"sent": "green", "failed": "bold red", "pending": "yellow"}
    table = Table(show_edge=False, header_style="bold")
    for column in ("id", "webhook", "workflow", "event", "state", "tries", "when", "error"):
        table.add_column(column)
    for delivery in found:
        moment = delivery.sent_at or delivery.next_attempt_at or delivery.created_at
        table.add_row(
            Text(str(delivery.id)),
            Text(delivery.webhook, style="bold"),
            Text(delivery.workflow or "(event purged)"),
            Text(delivery.kind or "-"),
            Text(delivery.state, style=styles.get(delivery.state, "")),
            Text(str(delivery.attempts)),
            Text(render.when(moment, now)),
            Text(delivery.last_error or ""),
        )
    return table
