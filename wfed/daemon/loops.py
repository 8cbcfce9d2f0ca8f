"""What the daemon's service loops share: the errors they ride out, the time limit of
their queries, waiting on "event or timeout" (never a bare sleep), and the outage backoff."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from wfed.metrics import Metrics
from wfed.store.database import OUTAGE_ERRORS, Database, is_outage

OUTAGE_BACKOFF_MAX = 10.0

# What a database loop rides out: an outage, or a query that outlived `query_limit`.
LOOP_ERRORS = (*OUTAGE_ERRORS, TimeoutError)


def ridden_out(exc: BaseException) -> bool:
    """Whether a loop carries on after `exc` (an outage or a timeout), rather than crash."""
    return isinstance(exc, TimeoutError) or is_outage(exc)


def describe(exc: BaseException) -> str:
    """One line for the log: the first line of the message, or the error's type."""
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


def query_limit(db: Database, lease: float) -> float | None:
    """How long a claim or heartbeat may take. One that hangs (packets silently dropped,
    no error) must not outlive the leases it is meant to renew, nor stall the claimer.
    SQLite has no network; there a slow one is waiting its turn for the write lock, and
    cutting it short would only hurt."""
    return None if db.backend == "sqlite" else lease / 2


async def wait_for(event: asyncio.Event, seconds: float) -> bool:
    """Wait for `event` at most `seconds`; returns whether it is set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()


async def wait_any(first: asyncio.Event, second: asyncio.Event, seconds: float) -> None:
    """Wait until either event is set, or `seconds`."""
    await wait_first((first, second), seconds)


async def wait_first(events: Sequence[asyncio.Event], seconds: float) -> None:
    """Wait until one of `events` is set, or `seconds`."""
    waits = {asyncio.ensure_future(event.wait()) for event in events}
    try:
        await asyncio.wait(waits, timeout=seconds, return_when="FIRST_COMPLETED")
    finally:
        for wait in waits:
            wait.cancel()


def note_failure(
    log: Any, metrics: Metrics, what: str, exc: BaseException, *, retry_in: float
) -> None:
    """Log a database problem of a loop (`{what}_failed`, with the seconds until it tries
    again) and count it."""
    log.warning(f"{what}_failed", error=describe(exc), retry_in=retry_in)
    metrics.database_errors.labels(type(exc).__name__).inc()


async def ride_out(
    log: Any,
    metrics: Metrics,
    what: str,
    exc: BaseException,
    delay: float,
    until: asyncio.Event,
) -> float:
    """Log a database problem of a loop (`{what}_failed`), wait `delay` (or until `until`
    is set), and return the delay before the try after next: doubled, up to a cap."""
    note_failure(log, metrics, what, exc, retry_in=delay)
    await wait_for(until, delay)
    return min(delay * 2, OUTAGE_BACKOFF_MAX)
