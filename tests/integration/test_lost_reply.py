"""A commit that lands but whose reply is lost (the connection drops at COMMIT).

The database is real; the fault is injected at the one place it happens: after the
transaction has committed, the caller gets the error a dropped connection gives
(MySQL's 2013). The runner must re-read and carry on — never take its own write for a
lost lease, nor its own started step for an interrupted one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import TEST_QUEUE, Probe, unique_name
from sqlalchemy.exc import OperationalError
from stepmods.basic import CALLS

from wfed import Engine, WorkflowState
from wfed.daemon.committer import StepCommitter
from wfed.engine.runner import Outcome

STEPS = 3
# The runner's transactions of a 3-step run: start, two advances, completion.
RUNNER_TRANSACTIONS = STEPS + 1


class LostReplies:
    """Wraps a Database's transactions: the `nth` one (counted from 1) commits for real,
    then raises what a connection lost at COMMIT raises."""

    def __init__(self, engine: Engine, nth: int) -> None:
        self.nth = nth
        self.count = 0
        self.lost = 0
        self._transaction = engine.db.transaction
        engine.db.transaction = self.transaction  # type: ignore[method-assign]

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        self.count += 1
        async with self._transaction() as conn:
            yield conn
        if self.count == self.nth:
            self.lost += 1
            raise OperationalError(
                "COMMIT", None, Exception(2013, "Lost connection to server during query")
            )


@pytest.mark.parametrize("nth", range(1, RUNNER_TRANSACTIONS + 1))
@pytest.mark.parametrize("grouped", [False, True], ids=["own", "grouped"])
async def test_a_lost_reply_never_fails_a_healthy_workflow(
    engine: Engine, probe: Probe, nth: int, grouped: bool
) -> None:
    """Whichever of a run's commits loses its reply, alone or in a group commit, the
    workflow of non-idempotent steps completes and every step ran exactly once."""
    key = unique_name("lost")
    name = unique_name("lost")
    steps = [{"step": "record", "args": {"key": f"{key}-{i}"}} for i in range(STEPS)]
    await engine.create_workflow(name, {}, steps, queue=TEST_QUEUE)
    runner = await probe.claimed_runner(name, "lost-reply", 600)
    faults = LostReplies(engine, nth)
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
    assert faults.lost == 1
    assert (result.outcome, result.message) == (Outcome.COMPLETED, None)
    workflow = await engine.get(name)
    assert workflow.state is WorkflowState.COMPLETED
    assert [step.attempts for step in workflow.steps] == [1] * STEPS
    assert [CALLS[f"{key}-{i}"] for i in range(STEPS)] == [1] * STEPS
    kinds = await probe.kinds(name)
    assert kinds.count("completed") == 1
    assert "step_interrupted" not in kinds
