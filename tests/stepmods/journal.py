"""Steps for the daemon tests. Each step appends to a journal file (the context's
`journal` path) so a test can see from outside which process ran what, and when a step
has started, without sleeping."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, ClassVar

from wfed import Context, Step, step


def _journal(ctx: Context, line: str) -> None:
    # O_APPEND writes of one short line are atomic, even from several processes.
    with open(ctx["journal"], "a", encoding="utf-8") as journal:
        journal.write(f"{line} {os.getpid()}\n")


@step("mark")
def mark(ctx: Context, tag: str) -> None:
    """Record that this step ran."""
    _journal(ctx, f"ran {tag}")
    ctx[f"{tag}_by"] = os.getpid()


class Slow(Step):
    """Record the start, wait `seconds`, record the end; not idempotent."""

    name: ClassVar[str] = "slow"

    async def run(self, ctx: Context, tag: str = "slow", seconds: float = 1.0) -> None:  # type: ignore[override]
        _journal(ctx, f"start {tag}")
        await asyncio.sleep(seconds)
        _journal(ctx, f"end {tag}")
        ctx[f"{tag}_by"] = os.getpid()


class SlowIdempotent(Slow):
    """The same, but safe to re-run after an interruption."""

    name: ClassVar[str] = "slow_idempotent"
    idempotent: ClassVar[bool] = True


@step("slow_in_thread")
def slow_in_thread(ctx: Context, tag: str = "slow", seconds: float = 1.0) -> None:
    """`slow` as a plain function: it runs in a worker thread, which nothing can cancel."""
    _journal(ctx, f"start {tag}")
    time.sleep(seconds)
    _journal(ctx, f"end {tag}")


@step("fail")
def fail(ctx: Context, **args: Any) -> None:
    """Always fails."""
    raise RuntimeError("this step always fails")


@step("exit")
def exit_step(ctx: Context, code: int = 0) -> None:
    """Call sys.exit, as a careless runbook might (raises SystemExit)."""
    raise SystemExit(code)


@step("interrupt")
async def interrupt(ctx: Context) -> None:
    """Raise KeyboardInterrupt in the event loop's thread."""
    raise KeyboardInterrupt
