"""Steps for the benchmark daemons (`[steps] modules = ["bench.steps"]`).

`noop` measures the engine itself: the step does nothing, so a step's cost is the daemon's
bookkeeping (claim, commit, logging). `sleep60` holds a slot for a minute, for the stop
latency and memory workloads; the built-in `sleep` with `seconds` gives steps of any
other known length.
"""

from __future__ import annotations

import asyncio

from wfed import Context, step


@step("noop", idempotent=True)
async def noop(ctx: Context) -> None:
    """Do nothing."""


@step("sleep60", idempotent=True)
async def sleep60(ctx: Context) -> None:
    """Sleep 60 seconds (cancellable by stop and shutdown)."""
    await asyncio.sleep(60)
