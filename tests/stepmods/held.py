"""A step that runs until its test lets it finish, for tests that change the world (the
clock, a request) while a step is running."""

from __future__ import annotations

import asyncio
from collections import Counter

from wfed import Context, step

STARTED: dict[str, asyncio.Event] = {}
"""Set by `held` once it runs, by key."""
RELEASE: dict[str, asyncio.Event] = {}
"""Set by the test to let `held` finish, by key."""
FINISHED: Counter[str] = Counter()
"""How many runs of `held` ran to their end, by key."""


def hold(key: str) -> tuple[asyncio.Event, asyncio.Event]:
    """The (started, release) events of the `held` step run with `key`."""
    STARTED[key] = asyncio.Event()
    RELEASE[key] = asyncio.Event()
    return STARTED[key], RELEASE[key]


@step("held")
async def held(ctx: Context, key: str) -> None:
    """Say it started, wait until released, then finish (counted)."""
    STARTED[key].set()
    await RELEASE[key].wait()
    FINISHED[key] += 1
    ctx["held"] = key
