"""The `pause` step: an approval gate. The workflow pauses here until `wfectl resume`."""

from __future__ import annotations

from typing import ClassVar

from wfed.steps.base import Context, PauseWorkflow, Step


class Pause(Step):
    """Pause the workflow with `prompt` as the reason; resume continues after this step."""

    name: ClassVar[str] = "pause"
    idempotent: ClassVar[bool] = True
    description: ClassVar[str] = "approval gate: pause until an operator resumes"

    async def run(  # type: ignore[override]
        self, ctx: Context, prompt: str = "waiting for approval: `wfectl resume` to continue"
    ) -> None:
        raise PauseWorkflow(prompt)
