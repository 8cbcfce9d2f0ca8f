"""The worker threads plain `def` steps run in, counted while they run.

A thread cannot be cancelled: a `def` step cut off by a stop or a shutdown goes on in its
thread until it returns. The daemon asks `running()` once it has shut down, so that such
a thread does not keep the process alive (and the step running beside the one another
daemon has started meanwhile) until the step happens to end.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any


class _Count:
    """A count that worker threads change under a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self, delta: int) -> None:
        with self._lock:
            self.value += delta


_running = _Count()


def running() -> int:
    """How many `def` steps are running in worker threads now."""
    return _running.value


async def run_in_thread(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """`asyncio.to_thread(func, …)`, counted by `running` while `func` runs."""
    return await asyncio.to_thread(_counted, func, *args, **kwargs)


def _counted(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    _running.add(1)
    try:
        return func(*args, **kwargs)
    finally:
        _running.add(-1)
