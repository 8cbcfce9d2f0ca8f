"""An owner's hold on one workflow: its fencing token, when the hold ends, and the writes
made under it.

A claim bumps the workflow's fence and gives its owner a lease. Every write the owner
makes is guarded by that fence, so once another owner has taken the workflow over,
nothing the old one writes can land. The lease is renewed from outside (the daemon's
heartbeat, or `Engine.run`'s keeper); it is lost when a renewal finds another fence, or
when its end passes on the owner's own clock with no renewal (a database away for
longer than the lease: by then another owner may have taken over).

A write is ridden through an outage — retried with backoff — for as long as the lease
can still be valid, so a finished step's result is committed when the database returns
unless the workflow may have changed hands meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from wfed.clock import Clock
from wfed.errors import LeaseLost
from wfed.logging import get_logger
from wfed.states import Operation, Request
from wfed.store import leases
from wfed.store import workflows as workflow_store
from wfed.store.database import OUTAGE_ERRORS, Database, is_outage

T = TypeVar("T")

OUTAGE_BACKOFF_FIRST = 0.05
OUTAGE_BACKOFF_MAX = 5.0
ERROR_TEXT_MAX = 4000

log = get_logger("wfed.runner")


def error_text(exc: BaseException) -> str:
    """An error as one bounded text: its type, and its message if it has one. A database
    error gives its driver's first line, not the statement and the parameters."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        lines = str(exc.orig).strip().splitlines()
        return f"database error: {type(exc.orig).__name__}: {lines[0] if lines else ''}"[
            :ERROR_TEXT_MAX
        ]
    text = str(exc).strip()
    described = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return described[:ERROR_TEXT_MAX]


class Lease:
    """One owner's hold on one workflow."""

    def __init__(
        self,
        workflow_id: int,
        fence: int,
        expires_at: datetime,
        *,
        seconds: float,
        clock: Clock,
        on_lost: Callable[[], None] = lambda: None,
    ) -> None:
        self.workflow_id = workflow_id
        self.fence = fence
        self.expires_at = expires_at
        self.seconds = seconds
        self.clock = clock
        self.lost = False
        self._on_lost = on_lost
        self._uncommitted_expiry: datetime | None = None

    # -- renewal and loss, told from outside ------------------------------------------

    def renewed(self, expires_at: datetime) -> None:
        """A renewal committed: the hold lasts until `expires_at`."""
        self.expires_at = expires_at

    def lose(self) -> None:
        """Another owner holds the workflow (or may): write nothing more."""
        if not self.lost:
            self.lost = True
            self._on_lost()

    def expired(self) -> bool:
        """Whether the hold's end has passed on this owner's clock."""
        return self.clock() >= self.expires_at

    async def renew(self, db: Database) -> Request | None:
        """Renew the hold in a transaction of its own; returns the control request waiting
        on the workflow. Loses the lease (and raises LeaseLost) if another owner holds it."""
        now = self.clock()
        async with db.transaction() as conn:
            owned, request = await leases.workflow_renew_lease(
                conn, self.workflow_id, fence=self.fence, now=now, lease=self.seconds
            )
            # Our own end of turn landed (its reply perhaps lost): not a lost lease; the
            # write being retried finds it.
            ended = not owned and bool(
                await leases.workflows_ended_under(conn, {self.workflow_id: self.fence})
            )
        if ended:
            return None
        if not owned:
            self.lose()
            raise LeaseLost
        self.renewed(now + timedelta(seconds=self.seconds))
        return request

    # -- renewal carried by the owner's own writes ------------------------------------

    def next_expiry(self) -> datetime:
        """A renewed end for the write being built; it counts once that write commits."""
        expires = self.clock() + timedelta(seconds=self.seconds)
        self._uncommitted_expiry = expires
        return expires

    def renewal_due(self) -> datetime | None:
        """A renewed end for a step's commit once half of the lease is spent, else None.
        The heartbeat renews leases but skips rows a step commit holds, so a workflow
        whose row it kept finding locked renews its own."""
        if self.clock() < self.expires_at - timedelta(seconds=self.seconds / 2):
            return None
        return self.next_expiry()

    # -- guarded writes ---------------------------------------------------------------

    async def guard(
        self,
        conn: AsyncConnection,
        operation: Operation,
        values: dict[str, Any],
        *,
        unrequested: bool = False,
    ) -> bool:
        """Write `values` for `operation` if this owner still holds the workflow (and,
        with `unrequested`, no pause or stop request waits); returns whether it did."""
        return await workflow_store.workflow_update(
            conn,
            self.workflow_id,
            operation,
            fence=self.fence,
            unrequested=unrequested,
            values={"updated_at": self.clock(), **values},
        )

    async def must(
        self, conn: AsyncConnection, operation: Operation, values: dict[str, Any]
    ) -> None:
        """`guard`, raising LeaseLost when the write did not match."""
        if not await self.guard(conn, operation, values):
            raise LeaseLost

    async def write(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run `attempt` (one transaction), riding out database outages while the lease
        can still be valid; LeaseLost once it cannot, or once the lease is lost."""
        delay = OUTAGE_BACKOFF_FIRST
        while True:
            if self.lost:
                raise LeaseLost
            self._uncommitted_expiry = None
            try:
                result = await attempt()
            except OUTAGE_ERRORS as exc:
                if not is_outage(exc):
                    raise
                if self.expired():
                    log.warning("lease_expired_during_outage", error=error_text(exc))
                    raise LeaseLost from exc
                log.warning("database_write_retried", error=error_text(exc), delay=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, OUTAGE_BACKOFF_MAX)
            else:
                self._committed()
                return result

    def _committed(self) -> None:
        # A renewal carried by the write counts only once the write is committed.
        if self._uncommitted_expiry is not None:
            self.expires_at = self._uncommitted_expiry
