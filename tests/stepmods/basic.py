"""Small steps the integration tests compose into workflows.

Module-level state (`CALLS`, `_FAILURES`) is keyed by a per-test unique key passed as a step
argument, so tests running one after another in the same process never see each other's
counts.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import ClassVar

from wfed import Context, Step, step

CALLS: Counter[str] = Counter()
"""How many times `record` (and `fail_times`) ran, by key."""

_FAILURES: Counter[str] = Counter()


@step("noop")
async def noop(ctx: Context) -> None:
    """Do nothing."""


@step("write_a")
async def write_a(ctx: Context) -> None:
    """An async step: write `a` into the context, and note it ran on the event loop."""
    ctx["a"] = 1
    ctx["a_on_main_thread"] = threading.current_thread() is threading.main_thread()


@step("read_a_write_b")
def read_a_write_b(ctx: Context) -> None:
    """A plain `def` step: read `a`, write `b`, and note which thread it ran in."""
    ctx["b"] = ctx["a"] + 1
    ctx["b_on_main_thread"] = threading.current_thread() is threading.main_thread()


@step("record")
def record(ctx: Context, key: str) -> None:
    """Count a run under `key` (so a test can tell whether and how often a step ran)."""
    CALLS[key] += 1


@step("fail")
async def fail(ctx: Context, message: str = "boom") -> None:
    """Always fail with `message`, after writing to the context (which must be dropped)."""
    ctx["written_by_failed_step"] = True
    raise RuntimeError(message)


@step("fail_times")
async def fail_times(ctx: Context, key: str, times: int) -> None:
    """Fail the first `times` runs under `key`, then succeed."""
    CALLS[key] += 1
    if _FAILURES[key] < times:
        _FAILURES[key] += 1
        raise RuntimeError(f"planned failure {_FAILURES[key]} of {times}")
    ctx[f"passed_{key}"] = CALLS[key]


class BadContext(Step):
    """Leave a value that is not JSON (a set) in the context."""

    name: ClassVar[str] = "bad_context"

    async def run(self, ctx: Context) -> None:  # type: ignore[override]
        ctx["not_json"] = {1, 2, 3}


@step("write_nan")
async def write_nan(ctx: Context) -> None:
    """Leave a number in the context that JSON cannot hold."""
    ctx["x"] = float("nan")


class Abandon(BaseException):
    """An exception of a step's own that is not an Exception."""


_NOT_EXCEPTIONS: dict[str, BaseException] = {
    "exit": SystemExit(3),
    "interrupt": KeyboardInterrupt(),
    "own": Abandon("giving up"),
}


@step("raise_base")
async def raise_base(ctx: Context, kind: str) -> None:
    """Raise a BaseException that is not an Exception (see `_NOT_EXCEPTIONS`)."""
    raise _NOT_EXCEPTIONS[kind]


@step("raise_base_in_thread")
def raise_base_in_thread(ctx: Context, kind: str) -> None:
    """The same from a plain `def` step, which runs in a worker thread."""
    raise _NOT_EXCEPTIONS[kind]


@step("write_unstorable")
async def write_unstorable(ctx: Context, kind: str) -> None:
    """Leave what JSON can carry but a claim would refuse: a 2**80 integer, or a key that
    is not a string."""
    if kind == "bigint":
        ctx["big"] = 2**80 + 1
    else:
        ctx[1] = "one"  # type: ignore[index]
