"""wfectl, the control tool (README, "Operating wfed"): `wfed.cli:main` is its entry point."""

# Each command module registers its commands on `app` when imported: `wfectl --help`
# lists them in the order of these imports. All of them are imported by every command, so
# at their top they import only typer and wfed's light modules (errors, states, clock),
# and the engine, SQLAlchemy and rich inside the commands, or for typing only
# (tests/acceptance/test_wfectl_startup.py checks what `--help`, `show` and `pause` load).
# The modules that declare commands do without `from __future__ import annotations`:
# typer reads every command's annotations several times when it builds the command tree, and
# an annotation kept as a string is compiled and evaluated each time (a third of the
# tree's cost). Names imported for typing only are quoted there.
from wfed.cli import create  # noqa: F401, I001
from wfed.cli import runbook  # noqa: F401
from wfed.cli import schedule  # noqa: F401
from wfed.cli import reading  # noqa: F401
from wfed.cli import watch  # noqa: F401
from wfed.cli import logs  # noqa: F401
from wfed.cli import control  # noqa: F401
from wfed.cli import ops  # noqa: F401
from wfed.cli import windows  # noqa: F401
from wfed.cli import locks  # noqa: F401
from wfed.cli import notify  # noqa: F401
from wfed.cli.app import app, main

__all__ = ["app", "main"]
