"""The hand-over from a runner to a group commit: what a runner asks to have committed.

A runner's write is a transaction body. The daemon runs the bodies of many runners in
one transaction (`wfed.daemon.committer.StepCommitter`); for the commonest write — step N
completed, step N+1 started — a runner also hands over the same effect as plain data, a
`BatchableAdvance`, which the group commit writes together with other workflows'
advances in one statement per table; so does the commonest end of a run, the last step
completed and with it the workflow, and the commonest beginning of one, a workflow just
claimed taking its first step (`BatchableStart`). Without a group commit (`Engine.run`),
a runner runs its bodies in transactions of their own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from wfed.store.events import Event
from wfed.store.steps import NewSteps
from wfed.store.workflows import Advance, Start

TransactionBody = Callable[[AsyncConnection], Awaitable[Any]]


@dataclass(frozen=True)
class BatchableAdvance:
    """A body's effect when its guard holds: write `move` (with this timestamp, or a
    later one; and a lease ending at `lease_expires_at` or later, if given) and hand back
    `result`. When the guard fails the body runs instead and decides what the failure
    means. `applies` is asked again when the batch is built: a runner told to release
    its workflow meanwhile wants its body to run, not the advance.

    With `completes`, step `move.position` was the workflow's last: the workflow is
    completed (its lease, owner and any waiting request cleared, and with
    `releases_keys` its concurrency keys given up) and `completes` is the event that
    records it."""

    move: Advance
    now: datetime
    result: Any
    finished_at: datetime | None = None
    """When the completed step ended (its own run time, not the commit's); else `now`."""
    lease_expires_at: datetime | None = None
    applies: Callable[[], bool] = field(default=lambda: True)
    completes: Event | None = None
    releases_keys: bool = False


@dataclass(frozen=True)
class BatchableStart:
    """The commonest first write of a turn, as data: a workflow just claimed, with no
    request waiting and its windows open, that never ran a step — it has no step rows
    yet (`steps` are created, step `start.position` running), or only the untouched ones
    its creation wrote (that step is started). Its lease is renewed to
    `lease_expires_at` or later, `claimed` is recorded, and `result` handed back.

    A guard that fails makes the batch run body by body (as for an advance); a workflow
    whose step rows show it ran before gets its body run instead, which decides."""

    start: Start
    steps: NewSteps
    now: datetime
    lease_expires_at: datetime
    claimed: Event
    result: Any
    applies: Callable[[], bool] = field(default=lambda: True)


Batchable = BatchableAdvance | BatchableStart


class GroupCommit(Protocol):
    """Runs `body` (or applies `advance`) in a transaction, perhaps shared with other
    runners' writes; returns the body's result or raises its error. A body raises a wfed
    error only before it has written anything, so that error is its runner's alone."""

    def __call__(
        self, workflow_id: int, body: TransactionBody, advance: Batchable | None = None
    ) -> Awaitable[Any]: ...
