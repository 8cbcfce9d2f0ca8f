"""What a runner hands over to be committed: a transaction body, and for the commonest
transition (step N completed, step N+1 started) the same effect as plain data, which a
committer can write together with other workflows' in one statement per table.

The daemon's implementation is `wfed.daemon.committer.StepCommitter`; without one (e.g.
`Engine.run`) a runner runs its bodies in transactions of their own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from wfed.store.workflows import Advance

Body = Callable[[AsyncConnection], Awaitable[Any]]


@dataclass(frozen=True)
class FastAdvance:
    """A body's effect when its guard holds: write `move` (with this timestamp, or a
    later one; and a lease ending at `lease_expires_at` or later, if given) and hand back
    `result`. When the guard fails the body runs instead and decides what the failure
    means. `applies` is asked again when the batch is built: a runner told to release
    its workflow meanwhile wants its body to run, not the advance."""

    move: Advance
    now: datetime
    result: Any
    lease_expires_at: datetime | None = None
    applies: Callable[[], bool] = field(default=lambda: True)


class Committer(Protocol):
    """Runs `body` (or applies `fast`) in a transaction, perhaps shared with other
    runners' transitions; returns the body's result or raises its error."""

    def __call__(
        self, workflow_id: int, body: Body, fast: FastAdvance | None = None
    ) -> Awaitable[Any]: ...
