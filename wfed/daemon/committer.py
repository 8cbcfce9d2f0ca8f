"""Group commit: the step transitions of many runners share one transaction.

A daemon running dozens of workflows finishes steps at nearly the same moments. Instead of
one transaction per step, each runner hands its step-transition body to the committer,
which runs every body waiting at that moment inside one transaction and commits once:
each step is still committed before its next step starts, at a fraction of the commits.

Bodies run in workflow id order — the order in which the heartbeat's one-statement lease
renewal locks rows — so a batch and a heartbeat never deadlock on each other. A body may
raise a wfed error (a lost lease) only before it has written anything; that error goes to
its runner alone. A database error aborts the batch, and every runner in it retries on
its own terms (outage backoff, lease expiry).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from wfed.errors import WfedError
from wfed.store.database import Database

log = structlog.get_logger("wfed.daemon")

Body = Callable[[AsyncConnection], Awaitable[Any]]


class StepCommitter:
    """Runs waiting transaction bodies together, one transaction per batch."""

    def __init__(self, db: Database, max_batch: int = 16) -> None:
        self.db = db
        self.max_batch = max_batch
        self._waiting: list[tuple[int, Body, asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self.batches = 0
        self.bodies = 0

    async def run(self, workflow_id: int, body: Body) -> Any:
        """Run `body` in the next batch; returns its result (or raises its error)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((workflow_id, body, future))
        self._wake.set()
        return await future

    async def loop(self, finished: asyncio.Event) -> None:
        """Commit batches until `finished` is set and nothing waits. Several loops may run
        at once (each on its own connection): a workflow has at most one body waiting, so
        concurrent batches never touch the same rows."""
        while True:
            if not self._waiting:
                if finished.is_set():
                    return
                self._wake.clear()
                waker = asyncio.ensure_future(self._wake.wait())
                stopper = asyncio.ensure_future(finished.wait())
                try:
                    await asyncio.wait({waker, stopper}, return_when="FIRST_COMPLETED")
                finally:
                    waker.cancel()
                    stopper.cancel()
                continue
            batch = self._waiting[: self.max_batch]
            del self._waiting[: self.max_batch]
            await self._commit(sorted(batch, key=lambda item: item[0]))

    async def _commit(self, batch: list[tuple[int, Body, asyncio.Future[Any]]]) -> None:
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            async with self.db.transaction() as conn:
                for _, body, future in batch:
                    if future.cancelled():
                        continue  # its runner is gone (shutdown): write nothing for it
                    try:
                        outcomes.append((future, await body(conn), None))
                    except WfedError as exc:
                        outcomes.append((future, None, exc))
        except Exception as exc:  # the transaction failed: every body in it failed
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self.batches += 1
        self.bodies += len(outcomes)
        for future, result, error in outcomes:
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
