"""How wfectl shows what steps there are: `steps` (the registered step kinds) and
`create --dry-run` (the validated plan of a workflow, with its context).

rich is imported by the functions that draw a table, not with this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .render import _cell, _compact, _json

if TYPE_CHECKING:
    from rich.console import Group
    from rich.table import Table

    from wfed.engine.views import PlannedStep, StepInfo


# -- create --dry-run ----------------------------------------------------------------


def plan_view(plans: Iterable[PlannedStep], context: dict[str, Any]) -> Group:
    """`create --dry-run`: the validated steps with their policies, and the context."""
    from rich.console import Group
    from rich.text import Text

    return Group(_plan_table(plans), Text(""), Text("context", style="bold"), _json(context))


def _plan_table(plans: Iterable[PlannedStep]) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(show_edge=False, header_style="bold")
    table.add_column("#", justify="right")
    for column in ("step", "label", "args", "retries", "timeout", "idempotent"):
        table.add_column(column)
    for plan in plans:
        retries = str(plan.retries)
        if plan.retries:
            retries += f" (every {plan.retry_delay:g}s"
            retries += f", x{plan.backoff:g})" if plan.backoff != 1 else ")"
        table.add_row(
            Text(str(plan.position)),
            Text(plan.name),
            _cell(plan.label),
            _cell(_compact(plan.args) if plan.args else None),
            Text(retries),
            _cell(f"{plan.timeout:g}s" if plan.timeout else None),
            Text("yes" if plan.idempotent else "no"),
        )
    return table


# -- steps --------------------------------------------------------------------------


def steps_table(steps: Iterable[StepInfo]) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(show_edge=False, header_style="bold")
    for column in ("name", "kind", "idempotent", "retries", "timeout", "args"):
        table.add_column(column)
    table.add_column("description", overflow="fold")
    for step in steps:
        args = ", ".join(
            arg.name if arg.required else f"{arg.name}={_compact(arg.default, 16)}"
            for arg in step.args
        )
        retries = str(step.retries)
        if step.retries:
            retries += f" (every {step.retry_delay:g}s)"
        table.add_row(
            Text(step.name, style="bold"),
            Text(step.kind),
            Text("yes" if step.idempotent else "no"),
            Text(retries),
            _cell(f"{step.timeout:g}s" if step.timeout else None),
            _cell(args),
            _cell(step.description),
        )
    return table
