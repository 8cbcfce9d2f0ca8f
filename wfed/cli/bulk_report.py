"""What bulk control says: the confirmation asked before changing the workflows a filter
matches, and the report of each one's outcome (a line each, or the `--json` document).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from . import render
from .run import fail

if TYPE_CHECKING:
    from wfed.engine import Engine
    from wfed.engine.bulk import Filter, Outcome, Selection
    from wfed.states import Operation

SHOWN = 10


def confirm(operation: Operation, selected: list[Selection], as_json: bool) -> None:
    """Say how many match and ask; refuse without a terminal to ask on."""
    count = len(selected)
    noun = "workflow matches" if count == 1 else "workflows match"
    by_state: dict[str, int] = {}
    for selection in selected:
        by_state[selection.state.value] = by_state.get(selection.state.value, 0) + 1
    states = ", ".join(f"{n} {state}" for state, n in sorted(by_state.items()))
    if not sys.stdin.isatty():
        fail(
            f"{count} {noun} ({states}); add --yes to {operation.value} them "
            "without a terminal to confirm on"
        )
    names = ", ".join(selection.name for selection in selected[:SHOWN])
    more = f" and {count - SHOWN} more" if count > SHOWN else ""
    out = sys.stderr if as_json else sys.stdout
    out.write(f"{count} {noun} ({states}): {names}{more}\n")
    out.flush()
    question = f"{operation.value.capitalize()} {'it' if count == 1 else f'these {count}'}?"
    if not typer.confirm(question, default=False, err=as_json):
        fail(f"nothing was done: {count} {noun}, not confirmed")


def report(
    operation: Operation,
    filter_: Filter,
    outcomes: list[Outcome],
    reason: str | None,
    as_json: bool,
    engine: Engine | None = None,
    *,
    partial: bool = False,
) -> None:
    """Each workflow's outcome (a line each, or the `--json` document), then the count."""
    from wfed.clock import utc_now
    from wfed.engine.bulk import bulk_json, counts
    from wfed.engine.facade import default_actor

    if as_json:
        actor = engine.actor if engine is not None else default_actor()
        render.print_json(
            bulk_json(operation, filter_, outcomes, reason=reason, actor=actor, at=utc_now())
        )
        return
    if not outcomes and not partial:
        render.say("no workflows match")
        return
    for outcome in outcomes:
        if outcome.changed:
            did = (outcome.action or "").replace("_", " ")
            render.say(f"{did} {outcome.name} (was {outcome.selected_state.value})")
        else:
            render.say(f"left alone {outcome.name}: {outcome.message}")
    changed, left = counts(outcomes)
    summary = f"{operation.value}: {changed} of {len(outcomes)} workflows changed"
    if left:
        summary += f", {left} left alone"
    render.say(summary + (" before the failure below" if partial else ""))
