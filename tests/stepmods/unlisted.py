"""Steps that are registered only if this module itself is listed."""

from __future__ import annotations

from wfed.steps.base import Context, Step, step


class Hidden(Step):
    """A class step of an unlisted module."""

    name = "hidden_class"

    async def run(self, ctx: Context) -> None:
        ctx["hidden"] = True


@step("hidden_function")
async def hidden_function(ctx: Context) -> None:
    """A function step of an unlisted module."""
