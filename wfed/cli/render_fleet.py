"""How wfectl shows the daemon fleet: the `daemons` table, the line under it about
running workflows awaiting recovery, and what `stop` on a running workflow will do.

rich is imported by the functions that draw a table, not with this module.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING

from .render import age, span, when

if TYPE_CHECKING:
    from rich.table import Table

    from wfed.engine.views import DaemonStatus, Fleet, Workflow

_LATE_BEATS = 3
"""Heartbeats a daemon may miss (of one per control interval) before it counts as late."""


# -- daemons ------------------------------------------------------------------------


def daemons_table(fleet: Fleet, now: datetime) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(show_edge=False, header_style="bold")
    for column in ("id", "host", "pid", "version", "queues", "max"):
        table.add_column(column)
    table.add_column("running", justify="right")
    for column in ("started", "heartbeat", "status"):
        table.add_column(column)
    for daemon in fleet.daemons:
        running = Text(str(daemon.running))
        if not daemon.alive and daemon.running:
            running = Text(f"{daemon.running} awaiting recovery", style="bold red")
        table.add_row(
            Text(daemon.id, style="bold"),
            Text(daemon.host),
            Text(str(daemon.pid)),
            Text(daemon.version),
            Text(", ".join(str(q) for q in daemon.queues)),
            Text(str(daemon.max_workflows)),
            running,
            Text(when(daemon.started_at, now)),
            Text(age(daemon.heartbeat_at, now)),
            Text("alive", style="green")
            if daemon.alive
            else Text(
                f"dead (heartbeat older than its {daemon.lease_seconds}s lease)", style="bold red"
            ),
        )
    return table


def stop_requested(
    workflow: Workflow, owner: DaemonStatus | None, interval: float, now: datetime
) -> str:
    """What `stop` on a running workflow will do, as its owner's heartbeat tells: a
    daemon that beats cancels the current step within about a control interval; one gone
    silent does nothing, and the stop takes effect only once a live daemon serving the
    queue takes the workflow over, after its lease expires."""
    row = workflow.row
    said = f"stop requested for {row.name} (running"
    holder = row.claimed_by or "nobody"
    lease = row.lease_expires_at
    left = (lease - now).total_seconds() if lease is not None else 0.0
    takeover = f"a live daemon serving queue {row.queue!r} takes the workflow over"
    if owner is None:
        return (
            f"{said} under {holder}, not a registered daemon: if it is alive it cancels the "
            f"current step within about {interval:g}s; if not, the stop takes effect "
            + (f"when its lease expires, in ≤ {math.ceil(left)}s, and " if left > 0 else "when ")
            + f"{takeover})"
        )
    if owner.alive and owner.heartbeat_age <= _LATE_BEATS * interval + 1:
        return f"{said}: its daemon {owner.id} cancels the current step within about {interval:g}s)"
    beat = f"its owner {owner.id} last sent a heartbeat {span(owner.heartbeat_age)} ago"
    if left > 0:
        return (
            f"{said}, but {beat}: if it is dead, the stop takes effect when its lease "
            f"expires, in ≤ {math.ceil(left)}s, and {takeover})"
        )
    return (
        f"{said}, but {beat} and its lease expired {age(lease, now)}: the stop takes effect "
        f"when {takeover})"
    )


def awaiting_recovery(count: int) -> str:
    """The line under `daemons`: running workflows no live owner holds."""
    if count == 0:
        return "no running workflows await recovery"
    noun = "workflow awaits" if count == 1 else "workflows await"
    return (
        f"{count} running {noun} recovery (owner dead or not a daemon, or lease expired): "
        "a live daemon serving the queue takes it over once the lease has expired"
    )
