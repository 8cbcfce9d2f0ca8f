"""The `shell` step: run a command, capture its output, and leave no process behind.

The command is an argument list run directly (no shell), so context values that end up in
it are single arguments, never shell syntax. `/bin/sh -c` is used only with `shell: true`.

The command is run by `wfed.steps.process.run_command`: in a process group of its own,
ended as a whole (SIGTERM, then SIGKILL after `kill_grace`) on cancellation, on the
step's `timeout` and when it leaves processes behind; only the tail of its output is kept,
and stdout and stderr are passed on line by line to the attempt's live-output sink
(`wfed.steps.base.step_output()`). This module holds the step and its arguments; the names
of `wfed.steps.process` that callers import from here are re-exported.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any, ClassVar

from wfed.steps.base import Context, Step, step_output
from wfed.steps.process import (
    LINE_MAX,
    MAX_OUTPUT,
    CommandFailed,
    CommandResult,
    CommandTimedOut,
    describe,
    exit_text,
    run_command,
    tail_lines,
)
from wfed.steps.template import is_reference

__all__ = [
    "LINE_MAX",
    "MAX_OUTPUT",
    "SHELL",
    "CommandFailed",
    "CommandResult",
    "CommandTimedOut",
    "Scalar",
    "Shell",
    "describe",
    "exit_text",
    "run_command",
    "scalar_text",
    "tail_lines",
]

Scalar = str | bool | int | float | None
"""An argv or env value: strings as they are, other JSON scalars as their JSON text
(`true`, `false`, `null`, `42`, `2.5`)."""

SHELL = "/bin/sh"


def scalar_text(value: Any) -> str:
    """An argument's text: a string as it is, anything else as its JSON (`true`, not
    Python's `True` or a `1`)."""
    return value if isinstance(value, str) else json.dumps(value)


def _argv(cmd: Sequence[Any]) -> list[str]:
    """The argument list: an element that is a list (e.g. `"{servers}"`) is spliced in."""
    argv: list[str] = []
    for item in cmd:
        if isinstance(item, list):
            argv.extend(scalar_text(part) for part in item)
        else:
            argv.append(scalar_text(item))
    return argv


class Shell(Step):
    """Run a command (an argument list; through /bin/sh -c only with `shell: true`)."""

    name: ClassVar[str] = "shell"
    idempotent: ClassVar[bool] = False
    description: ClassVar[str] = "run a command; argv list, /bin/sh only with shell: true"

    @classmethod
    def check_arguments(cls, args: dict[str, Any]) -> None:
        cmd, shell = args.get("cmd"), args.get("shell", False)
        if isinstance(cmd, str) and not is_reference(cmd):
            if shell is False:
                raise ValueError(
                    "cmd is a string but shell is not true: give an argument list like "
                    '["systemctl", "restart", "{app}"], or set "shell": true to run the '
                    "string with /bin/sh -c (context values in it are then shell syntax)"
                )
        elif isinstance(cmd, list):
            if not cmd:
                raise ValueError("cmd is an empty list: give the program and its arguments")
            if shell is True:
                raise ValueError(
                    'with "shell": true, cmd must be one string (the /bin/sh -c script)'
                )
        for key in ("timeout", "max_output"):
            value = args.get(key)
            if isinstance(value, int | float) and value <= 0:
                raise ValueError(f"argument {key!r} must be more than 0, got {value}")
        grace = args.get("kill_grace")
        if isinstance(grace, int | float) and grace < 0:
            raise ValueError(f"argument 'kill_grace' must be 0 or more, got {grace}")
        if args.get("ok_codes") == []:
            raise ValueError("argument 'ok_codes' is empty: list the exit codes that mean OK")

    async def run(  # type: ignore[override]
        self,
        ctx: Context,
        cmd: list[Scalar | list[Scalar]] | str,
        shell: bool = False,
        env: dict[str, Scalar] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the step's documented argument
        ok_codes: Sequence[int] = (0,),
        save_as: str | None = None,
        input: str | None = None,
        kill_grace: float = 5.0,
        max_output: int = MAX_OUTPUT,
    ) -> None:
        # Checked at definition time too; repeated for direct callers (tests, scripts).
        self.check_arguments({"cmd": cmd, "shell": shell, "ok_codes": list(ok_codes)})
        argv = [SHELL, "-c", cmd] if isinstance(cmd, str) else _argv(cmd)
        environment = None
        if env is not None:
            environment = {**os.environ, **{k: scalar_text(v) for k, v in env.items()}}
        result = await run_command(
            argv,
            env=environment,
            cwd=cwd,
            stdin=input,
            timeout=timeout,
            kill_grace=kill_grace,
            max_output=max_output,
            output=step_output(),
        )
        if result.rc not in ok_codes:
            tail = result.tail()
            raise CommandFailed(
                f"{describe(argv)} {exit_text(result.rc)}"
                + ("" if list(ok_codes) == [0] else f" (ok: {', '.join(map(str, ok_codes))})")
                + (f"; last output:\n{tail}" if tail else "; no output")
            )
        if save_as:
            ctx[save_as] = result.as_context()
