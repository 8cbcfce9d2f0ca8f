"""Bulk control: `pause`, `resume`, `stop`, `retry`, `skip` and `delete` on every workflow
a filter matches (`--state`, `--queue`, `--name-like`, `--older-than`) instead of NAME.

`by_filter(operation)` gives a control command of `wfed.cli.control` the filter options
(and `--yes`, `--json`) and makes its NAME optional; with a NAME the command runs as it
always did. With a filter, wfectl selects the workflows it matches among those the
operation applies to (`Engine.select`), says how many, asks for confirmation (`--yes`:
do not ask; without a terminal to ask on and without `--yes`, it refuses), then applies
the Engine's own per-workflow operation to each: its own guarded transition and its own
event (actor and `--reason`). One that changed meanwhile is left alone and reported.
Exit code 0 only if every workflow matched was changed.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, get_args

import typer

from wfed.errors import InvalidTransition, WorkflowNotFound
from wfed.states import Operation, WorkflowState

from .app import settings_of
from .bulk_report import confirm, report
from .parse import choices, one_of, parse_assignments
from .run import fail, run_engine

if TYPE_CHECKING:
    from wfed.engine import Engine
    from wfed.engine.bulk import Filter, Outcome, Selection

F = TypeVar("F", bound=Callable[..., None])

PANEL = "Instead of NAME: every workflow a filter matches"
"""Workflows named in the confirmation question (the rest are counted)."""

_FILTER_PARAMETERS = [
    inspect.Parameter(
        "filter_states",
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        default=None,
        annotation=Annotated[
            list[WorkflowState] | None,
            typer.Option(
                "--state",
                parser=one_of(WorkflowState, "a workflow state"),
                metavar="STATE",
                help=(
                    f"In this state ({choices(WorkflowState)}; default: any the command "
                    "applies to). Repeatable."
                ),
                rich_help_panel=PANEL,
            ),
        ],
    ),
    inspect.Parameter(
        "filter_queue",
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        default=None,
        annotation=Annotated[
            str | None,
            typer.Option(
                "--queue", "-q", metavar="Q", help="In this queue.", rich_help_panel=PANEL
            ),
        ],
    ),
    inspect.Parameter(
        "filter_name_like",
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        default=None,
        annotation=Annotated[
            str | None,
            typer.Option(
                "--name-like",
                metavar="PATTERN",
                help="Whose whole name matches: * or % any characters, ? one; the rest "
                "literal, case-sensitive (e.g. 'maint-2026-11-*').",
                rich_help_panel=PANEL,
            ),
        ],
    ),
    inspect.Parameter(
        "filter_older_than",
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        default=None,
        annotation=Annotated[
            str | None,
            typer.Option(
                "--older-than",
                metavar="DURATION",
                help="Last changed longer ago than this (updated_at): 30m, 12h, 7d, 1w.",
                rich_help_panel=PANEL,
            ),
        ],
    ),
    inspect.Parameter(
        "filter_yes",
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        default=False,
        annotation=Annotated[
            bool,
            typer.Option("--yes", "-y", help="Do not ask for confirmation.", rich_help_panel=PANEL),
        ],
    ),
    inspect.Parameter(
        "filter_json",
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        default=False,
        annotation=Annotated[
            bool,
            typer.Option(
                "--json",
                help="The outcome per workflow as JSON on stdout.",
                rich_help_panel=PANEL,
            ),
        ],
    ),
]
_FILTER_NAMES = [parameter.name for parameter in _FILTER_PARAMETERS]

_HELP = (
    "\n\nOr, instead of NAME, every workflow a filter matches (--state, --queue, --name-like, "
    "--older-than; all given must match): wfectl says how many and asks first (--yes: do not "
    "ask). Each is changed on its own, with its own event; one that changed meanwhile is left "
    "alone and reported. Exit code 0 only if every one was changed."
    '\n\nExample: wfectl {verb} --queue dc2 --state {state} --reason "dc2 maintenance" --yes'
)


def by_filter(operation: Operation) -> Callable[[F], F]:
    """Give a control command the filter options, and its NAME a default of none: with
    a filter it acts on every workflow the filter matches, else on NAME as before."""

    def decorate(command: F) -> F:
        signature = inspect.signature(command, eval_str=True)
        parameters = [
            _optional_name(p) if p.name == "name" else p for p in signature.parameters.values()
        ]

        @functools.wraps(command)
        def wrapper(cli: typer.Context, **values: Any) -> None:
            options = {key: values.pop(key) for key in _FILTER_NAMES}
            filter_ = _filter(options)
            if filter_ is None:
                if values.get("name") is None:
                    raise typer.BadParameter(
                        "give a workflow NAME, or a filter: --state, --queue, --name-like, "
                        "--older-than",
                        param_hint="NAME",
                    )
                if options["filter_json"]:
                    raise typer.BadParameter(
                        "goes with a filter, not with a NAME", param_hint="--json"
                    )
                command(cli, **values)
                return
            if values.get("name") is not None:
                raise typer.BadParameter(
                    "give a workflow NAME or a filter, not both", param_hint="NAME"
                )
            run_bulk(
                cli,
                operation,
                filter_,
                values,
                yes=options["filter_yes"],
                as_json=options["filter_json"],
            )

        wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*parameters, *_FILTER_PARAMETERS]
        )
        wrapper.__doc__ = (command.__doc__ or "").rstrip() + _HELP.format(
            verb=operation.value, state=_EXAMPLE_STATES[operation]
        )
        return wrapper  # type: ignore[return-value]

    return decorate


# The state of each command's example in its help.
_EXAMPLE_STATES = {
    Operation.PAUSE: "pending",
    Operation.RESUME: "paused",
    Operation.STOP: "paused",
    Operation.RETRY: "error",
    Operation.SKIP: "error",
    Operation.DELETE: "completed",
}


def _optional_name(parameter: inspect.Parameter) -> inspect.Parameter:
    """NAME, now optional: a filter may stand for it."""
    base, *extras = get_args(parameter.annotation)
    infos = []
    for extra in extras:
        info = copy.copy(extra)
        if isinstance(info, typer.models.ArgumentInfo):
            info.help = "The workflow's name (or give a filter instead)."
        infos.append(info)
    annotation = Annotated[(base | None, *infos)]  # type: ignore[valid-type]
    return parameter.replace(annotation=annotation, default=None)


def _filter(options: dict[str, Any]) -> Filter | None:
    """The filter the options give; None if none was given."""
    if not options["filter_states"] and all(
        options[key] is None for key in ("filter_queue", "filter_name_like", "filter_older_than")
    ):
        return None  # a NAME, then: the bulk machinery need not load
    from wfed.durations import parse_duration
    from wfed.engine.bulk import Filter

    older_than = None
    if options["filter_older_than"] is not None:
        try:
            older_than = parse_duration(options["filter_older_than"])
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--older-than") from None
    filter_ = Filter(
        states=frozenset(options["filter_states"] or ()),
        queue=options["filter_queue"],
        name_like=options["filter_name_like"],
        older_than=older_than,
    )
    return None if filter_.empty else filter_


# -- what each workflow gets ----------------------------------------------------------

Each = Callable[["Engine", "Selection"], Awaitable["Outcome"]]


def _each(operation: Operation, values: dict[str, Any]) -> Each:
    """The Engine's per-workflow operation, with the command's other options."""
    from wfed.engine.bulk import Outcome

    reason: str | None = values.get("reason")
    updates = parse_assignments(values.get("set_items") or [], "--set") or None
    backup: Path | None = values.get("backup")

    async def each(engine: Engine, selected: Selection) -> Outcome:
        name, expected = selected.name, selected.expected
        if operation is Operation.DELETE:
            await _delete(engine, name, reason, expected, backup)
            return Outcome(name, selected.state, changed=True, action="deleted")
        if operation is Operation.SKIP:
            workflow = await engine.skip(
                name, set_context=updates, reason=reason, expected=expected
            )
        else:
            act = {
                Operation.PAUSE: engine.pause,
                Operation.RESUME: engine.resume,
                Operation.STOP: engine.stop,
                Operation.RETRY: engine.retry,
            }[operation]
            workflow = await act(name, reason, expected=expected)
        action = _ACTIONS[operation]
        if workflow.state is WorkflowState.RUNNING and operation in _REQUESTS:
            action = _REQUESTS[operation]
        return Outcome(name, selected.state, changed=True, action=action, state=workflow.state)

    return each


_ACTIONS = {
    Operation.PAUSE: "paused",
    Operation.RESUME: "resumed",
    Operation.STOP: "stopped",
    Operation.RETRY: "retried",
    Operation.SKIP: "skipped",
    Operation.DELETE: "deleted",
}
_REQUESTS = {Operation.PAUSE: "pause_requested", Operation.STOP: "stop_requested"}


async def _delete(
    engine: Engine, name: str, reason: str | None, expected: Any, backup: Path | None
) -> None:
    """Delete, after writing its export to `backup` if given (removed if not deleted)."""
    import asyncio

    from wfed.errors import WfedError

    from .control import _write_backup

    written = None
    if backup is not None:
        document = await engine.export(name)
        written = await asyncio.to_thread(_write_backup, backup, name, document)
    try:
        await engine.delete(name, reason, expected=expected)
    except WfedError:
        if written is not None:
            written.unlink(missing_ok=True)
        raise


# -- the command ----------------------------------------------------------------------


def run_bulk(
    cli: typer.Context,
    operation: Operation,
    filter_: Filter,
    values: dict[str, Any],
    *,
    yes: bool,
    as_json: bool,
) -> None:
    """Select, confirm, apply one by one, report."""
    settings = settings_of(cli)
    each = _each(operation, values)
    reason: str | None = values.get("reason")

    async def select(engine: Engine) -> list[Selection]:
        return await engine.select(operation, filter_)

    try:
        selected = run_engine(settings, select)
    except InvalidTransition as exc:  # a --state the operation never applies to
        raise typer.BadParameter(str(exc), param_hint="--state") from None
    if not selected:
        report(operation, filter_, [], reason, as_json)
        return
    if not yes:
        confirm(operation, selected, as_json)

    async def apply(engine: Engine) -> list[Outcome]:
        outcomes = []
        for selection in selected:
            try:
                outcomes.append(await each(engine, selection))
            except (InvalidTransition, WorkflowNotFound) as exc:
                outcomes.append(_left_alone(selection, str(exc)))
            except BaseException:
                # The database went away (or worse): say what was done, then fail.
                report(operation, filter_, outcomes, reason, as_json, engine, partial=True)
                raise
        report(operation, filter_, outcomes, reason, as_json, engine)
        return outcomes

    outcomes = run_engine(settings, apply)
    left = [outcome for outcome in outcomes if not outcome.changed]
    if left:
        fail(
            f"{len(left)} of {len(outcomes)} workflows left alone (changed meanwhile, or "
            "the operation no longer applies)"
        )


def _left_alone(selection: Selection, why: str) -> Outcome:
    from wfed.engine.bulk import Outcome

    return Outcome(selection.name, selection.state, changed=False, message=why)
