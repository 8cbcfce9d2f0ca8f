"""The daemon's shutdown signals: SIGTERM and SIGINT only set the supervisor's events
(through its handler); the first asks for a graceful stop, a second for an immediate one."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable

SHUTDOWN = (signal.SIGTERM, signal.SIGINT)


def install(handler: Callable[[], None]) -> None:
    """Call `handler` (in the event loop) on each shutdown signal."""
    loop = asyncio.get_running_loop()
    for signum in SHUTDOWN:
        loop.add_signal_handler(signum, handler)


def remove() -> None:
    """Give the shutdown signals back their default action."""
    with contextlib.suppress(RuntimeError):
        loop = asyncio.get_running_loop()
        for signum in SHUTDOWN:
            loop.remove_signal_handler(signum)
