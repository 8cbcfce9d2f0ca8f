"""Defines a step named `dup`."""

from __future__ import annotations

from wfed.steps.base import Context, Step


class DupA(Step):
    """One of two different classes named `dup`."""

    name = "dup"

    async def run(self, ctx: Context) -> None:
        ctx["dup"] = "a"
