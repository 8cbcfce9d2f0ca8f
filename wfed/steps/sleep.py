"""The `sleep` step: wait a number of seconds (cancellable by stop and shutdown)."""

from __future__ import annotations

import asyncio
from typing import Annotated, ClassVar

from pydantic import Field

from wfed.steps.base import Context, Step
from wfed.steps.definition import MAX_DELAY

# At most a week, as a retry delay or a timeout: a longer wait is a `run_after`.
Seconds = Annotated[float, Field(ge=0, le=MAX_DELAY, allow_inf_nan=False)]


class Sleep(Step):
    """Wait `seconds` seconds."""

    name: ClassVar[str] = "sleep"
    idempotent: ClassVar[bool] = True
    description: ClassVar[str] = "wait a number of seconds"

    async def run(self, ctx: Context, seconds: Seconds = 0.0) -> None:  # type: ignore[override]
        await asyncio.sleep(seconds)
