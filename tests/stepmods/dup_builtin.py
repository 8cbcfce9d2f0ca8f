"""Defines a step that takes the name of the built-in `sleep`."""

from __future__ import annotations

from wfed.steps.base import Context, step


@step("sleep")
def my_sleep(ctx: Context, seconds: float = 0.0) -> None:
    """A second, different `sleep`."""
