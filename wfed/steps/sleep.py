"""The `sleep` step: wait a number of seconds (cancellable by stop and shutdown)."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from wfed.steps.base import Context, Step


class Sleep(Step):
    """Wait `seconds` seconds."""

    name: ClassVar[str] = "sleep"
    idempotent: ClassVar[bool] = True
    description: ClassVar[str] = "wait a number of seconds"

    async def run(self, ctx: Context, seconds: float = 0.0) -> None:  # type: ignore[override]
        await asyncio.sleep(seconds)
