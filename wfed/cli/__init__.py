"""wfectl, the control tool (README, "Operating wfed"): `wfed.cli:main` is its entry point."""

from wfed.cli import ops  # noqa: F401 - registers the operations commands on `app`
from wfed.cli.app import app, main

__all__ = ["app", "main"]
