"""A step's recorded run time is its own: when the commit that records it waits out a
database outage, the wait is not added to the step's duration."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from conftest import TEST_QUEUE, Probe, unique_name
from sqlalchemy.exc import OperationalError
from stepmods.basic import CALLS

from wfed import Engine, WorkflowState
from wfed.clock import utc_now
from wfed.daemon.committer import StepCommitter
from wfed.engine.runner import Outcome

LEASE = 600.0
OUTAGES = 3
OUTAGE_SECONDS = 120


class OutageAfterStep:
    """Wraps a Database's transactions: once the first step has run, the next
    transactions fail as an unreachable server does (MySQL's 2003), OUTAGES times, and the
    runner's clock moves OUTAGE_SECONDS on at each."""

    def __init__(self, engine: Engine, key: str) -> None:
        self.key = key
        self.failed = 0
        self.offset = timedelta()
        self._transaction = engine.db.transaction
        engine.db.transaction = self.transaction  # type: ignore[method-assign]

    def clock(self) -> datetime:
        return utc_now() + self.offset

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        if CALLS[self.key] > 0 and self.failed < OUTAGES:
            self.failed += 1
            self.offset += timedelta(seconds=OUTAGE_SECONDS)
            raise OperationalError(
                "BEGIN", None, Exception(2003, "Can't connect to MySQL server on '127.0.0.1'")
            )
        async with self._transaction() as conn:
            yield conn


@pytest.mark.parametrize("steps", [1, 2], ids=["completing", "advancing"])
@pytest.mark.parametrize("grouped", [False, True], ids=["own", "grouped"])
async def test_a_commit_that_waited_out_an_outage_does_not_lengthen_the_step(
    engine: Engine, probe: Probe, steps: int, grouped: bool
) -> None:
    """The first step runs at once; its commit (the workflow's completion, or the start
    of the next step) waits out three 2-minute outages. The step's recorded run time
    stays under a minute; a next step starts when the commit lands."""
    key = unique_name("outage")
    name = unique_name("outage")
    definition = [{"step": "record", "args": {"key": f"{key}-{i}"}} for i in range(steps)]
    await engine.create_workflow(name, {}, definition, queue=TEST_QUEUE)
    outage = OutageAfterStep(engine, f"{key}-0")
    runner = await probe.claimed_runner(name, "outage", LEASE, outage.clock)
    finished = asyncio.Event()
    loop = None
    if grouped:
        committer = StepCommitter(engine.db)
        runner.committer = committer.run
        loop = asyncio.create_task(committer.loop(finished))
    try:
        result = await runner.run()
    finally:
        finished.set()
        if loop is not None:
            await loop

    assert outage.failed == OUTAGES
    assert result.outcome is Outcome.COMPLETED
    workflow = await engine.get(name)
    assert workflow.state is WorkflowState.COMPLETED
    first = workflow.steps[0]
    assert first.started_at is not None
    assert first.finished_at is not None
    assert first.finished_at - first.started_at < timedelta(seconds=60)
    if steps == 2:
        second = workflow.steps[1]
        assert second.started_at is not None
        assert second.started_at - first.finished_at >= timedelta(seconds=OUTAGES * OUTAGE_SECONDS)
