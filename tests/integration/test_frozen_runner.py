"""A runner frozen (SIGSTOP, a stalled host) past its lease does not run a step on waking:
by its own clock another owner may hold the workflow already, and a second run of the
step beside the new owner's is what leases exist to prevent."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

from conftest import TEST_QUEUE, Probe, unique_name
from stepmods.basic import CALLS

from wfed import Engine
from wfed.clock import utc_now
from wfed.engine.runner import Outcome

LEASE = 600.0


class FreezeAfterCommit:
    """Wraps a Database's transactions: once one commits after `ran()` is true, the
    owner's clock jumps past the lease, as if the process had been stopped right after
    that commit."""

    def __init__(self, engine: Engine, ran: Callable[[], bool]) -> None:
        self.ran = ran
        self.frozen = False
        self._transaction = engine.db.transaction
        engine.db.transaction = self.transaction  # type: ignore[method-assign]

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        async with self._transaction() as conn:
            yield conn
        if self.ran():
            self.frozen = True

    def clock(self) -> datetime:
        return utc_now() + timedelta(seconds=LEASE + 1 if self.frozen else 0)


async def test_a_started_step_is_not_run_once_the_lease_passed_while_frozen(
    engine: Engine, probe: Probe
) -> None:
    """The owner committed step 0 done and step 1 started, then was frozen past its lease:
    on waking it gives the workflow up as lost and does not run step 1 (whoever takes the
    workflow over finds it interrupted and decides by its idempotence)."""
    key = unique_name("frozen")
    name = unique_name("frozen")
    steps = [{"step": "record", "args": {"key": f"{key}-{i}"}} for i in range(2)]
    await engine.create_workflow(name, {}, steps, queue=TEST_QUEUE)
    # The first commit after step 0 ran finishes it and starts step 1.
    freeze = FreezeAfterCommit(engine, ran=lambda: CALLS[f"{key}-0"] > 0)
    runner = await probe.claimed_runner(name, "frozen", LEASE, freeze.clock)
    result = await runner.run()

    assert freeze.frozen
    assert result.outcome is Outcome.LOST
    assert (CALLS[f"{key}-0"], CALLS[f"{key}-1"]) == (1, 0)
    after = await engine.get(name)
    assert (after.row.state, after.row.current_step) == ("running", 1)
    assert [step.state for step in after.steps] == ["completed", "running"]
