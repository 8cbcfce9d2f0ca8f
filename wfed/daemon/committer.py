"""Group commit: the step transitions of many runners share one transaction.

A daemon running dozens of workflows finishes steps at nearly the same moments. Instead of
one transaction per step, each runner hands its step-transition body to the committer,
which runs every body waiting at that moment inside one transaction and commits once:
each step is still committed before its next step starts, at a fraction of the commits.

The commonest transition — step N completed, step N+1 started, no request waiting — also
comes as plain data (a `wfed.engine.group_commit.BatchableAdvance`), and so does the
commonest end — the last step completed, and with it the workflow. The committer writes
all of a batch's advances with one UPDATE per table instead of two statements per
workflow, and its completions with one UPDATE per table, one INSERT of their events and
one DELETE of the concurrency keys they held instead of three or four statements per
workflow. The commonest beginning — a workflow just claimed starting its first step —
comes as data too (`BatchableStart`): its lease renewal, step rows and claim event are
written for the whole batch with five statements instead of four per workflow; one
whose step rows show an earlier run gets its body run instead. If any guard does not
hold (a pause or stop request arrived before an advance or a start, or the workflow
changed owner), that transaction is rolled back and the batch runs again body by body,
where each runner's own code decides what the guard failure means. Nothing is written
twice: the rolled-back transaction left no trace.

A batch locks its advances', completions' and starts' rows first, then runs the other
bodies in workflow id order.
The heartbeat and the claims skip locked rows, so they never wait on a batch; two batches
never share a workflow. A body may raise a wfed error (a lost lease) only before it has
written anything; that error goes to its runner alone. A runner gone by the time its
turn comes (cancelled at shutdown) gets nothing written. An outage aborts the batch, and
every runner in it retries on its own terms (outage backoff, lease expiry); any other
database error splits the batch in halves until the body it comes from fails alone.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from wfed.engine.group_commit import (
    Batchable,
    BatchableAdvance,
    BatchableStart,
    TransactionBody,
)
from wfed.errors import WfedError
from wfed.states import StepState
from wfed.store import events as event_store
from wfed.store import locks as lock_store
from wfed.store import steps as step_store
from wfed.store import workflows as workflow_store
from wfed.store.database import Database, is_outage
from wfed.store.steps import StepMove

log = structlog.get_logger("wfed.daemon")


@dataclass
class _Waiting:
    workflow_id: int
    body: TransactionBody
    advance: Batchable | None
    future: asyncio.Future[Any]


class _Diverged(Exception):
    """A batched advance did not match its guard: redo the batch body by body."""


class StepCommitter:
    """Runs waiting transaction bodies together, one transaction per batch."""

    def __init__(self, db: Database, max_batch: int = 32) -> None:
        # Larger batches cost a step less CPU (fewer statements per step), smaller ones
        # let several batches be under way at once, the database working on one while
        # the runners of another run their next steps. With 64 slots, batches of 32
        # gave the most steps a second (16: as many, at 10 % more CPU a step; 64: 15 %
        # fewer steps a second, all runners waiting on one commit at a time).
        self.db = db
        self.max_batch = max_batch
        self._waiting: list[_Waiting] = []
        self._wake = asyncio.Event()
        self.batches = 0
        self.bodies = 0
        self.diverged = 0
        self.split = 0

    async def run(
        self, workflow_id: int, body: TransactionBody, advance: Batchable | None = None
    ) -> Any:
        """Run `body` (or apply `advance`) in the next batch; returns its result (or raises
        its error)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(workflow_id, body, advance, future))
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
            await self._commit(sorted(batch, key=lambda item: item.workflow_id))

    async def _commit(self, batch: list[_Waiting]) -> None:
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            try:
                async with self.db.transaction() as conn:
                    outcomes = await self._run_batched(conn, batch)
            except _Diverged:
                self.diverged += 1
                async with self.db.transaction() as conn:
                    outcomes = await self._run_bodies(conn, batch)
        except Exception as exc:
            live = [item for item in batch if not item.future.done()]
            if len(live) > 1 and not is_outage(exc):
                # One body's write was refused (bad data, say): commit the batch in
                # halves, so the innocent commit and the guilty one fails alone.
                self.split += 1
                half = len(live) // 2
                await self._commit(live[:half])
                await self._commit(live[half:])
                return
            # An outage, or a body alone: its runners ride it out on their own terms.
            for item in live:
                item.future.set_exception(exc)
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

    async def _run_batched(
        self, conn: AsyncConnection, batch: list[_Waiting]
    ) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        """All advances and completions as one statement per table, then the other bodies
        one by one."""
        fast: list[tuple[_Waiting, BatchableAdvance]] = []
        starts: list[tuple[_Waiting, BatchableStart]] = []
        others: list[_Waiting] = []
        for item in batch:
            if item.future.cancelled():
                continue  # its runner is gone (shutdown): write nothing for it
            if item.advance is None or not item.advance.applies():
                others.append(item)
            elif isinstance(item.advance, BatchableStart):
                starts.append((item, item.advance))
            else:
                fast.append((item, item.advance))
        if fast:
            await self._write_batched(conn, [advance for _, advance in fast])
        outcomes = [(item.future, advance.result, None) for item, advance in fast]
        if starts:
            started, declined = await self._write_starts(conn, starts)
            outcomes += [(item.future, start.result, None) for item, start in started]
            others = sorted(others + declined, key=lambda item: item.workflow_id)
        return outcomes + await self._run_bodies(conn, others)

    @staticmethod
    async def _write_starts(
        conn: AsyncConnection, starts: list[tuple[_Waiting, BatchableStart]]
    ) -> tuple[list[tuple[_Waiting, BatchableStart]], list[_Waiting]]:
        """Write the first steps of just-claimed workflows: one UPDATE of their rows (the
        guard; _Diverged if it failed), one SELECT of their step rows, one INSERT of the
        step rows of those that have none, one UPDATE starting the step of those whose
        rows are untouched, one INSERT of their events. Returns the starts written, and
        those whose step rows show an earlier run: their bodies decide."""
        now = max(start.now for _, start in starts)
        matched = await workflow_store.workflows_start_many(
            conn,
            [start.start for _, start in starts],
            now=now,
            lease_expires_at=max(start.lease_expires_at for _, start in starts),
        )
        if matched != len(starts):
            raise _Diverged
        progress = await step_store.steps_progress_many(
            conn, [start.start.workflow_id for _, start in starts]
        )
        fresh: list[tuple[_Waiting, BatchableStart]] = []
        untouched: list[tuple[_Waiting, BatchableStart]] = []
        declined: list[_Waiting] = []
        for item, start in starts:
            rows = progress.get(start.start.workflow_id)
            if rows is None:
                fresh.append((item, start))
            elif len(rows) == len(start.steps.rows) and all(
                state == StepState.PENDING.value and attempts == 0 for _, state, attempts in rows
            ):
                untouched.append((item, start))
            else:
                declined.append(item)
        if fresh:
            await step_store.steps_insert_many(conn, [start.steps for _, start in fresh], now)
        if untouched:
            positions = [(start.start.workflow_id, start.start.position) for _, start in untouched]
            await step_store.steps_start_many(conn, positions, now)
        started = fresh + untouched
        await event_store.events_insert(conn, *(start.claimed for _, start in started))
        return started, declined

    @staticmethod
    async def _write_batched(conn: AsyncConnection, batched: list[BatchableAdvance]) -> None:
        """Write the advances with one UPDATE per table, and the completions with one
        UPDATE per table, one DELETE of the keys they held and one INSERT of their
        events; _Diverged if a guard failed."""
        now = max(item.now for item in batched)
        advances = [item for item in batched if item.completes is None]
        completions = [item for item in batched if item.completes is not None]
        if advances:
            # A lease renewed by one advance is renewed for the whole batch (to the latest
            # end asked for): longer than its runner counts on, which is the safe side.
            leases = [item.lease_expires_at for item in advances if item.lease_expires_at]
            moved = await workflow_store.workflows_advance_many(
                conn,
                [item.move for item in advances],
                now=now,
                lease_expires_at=max(leases) if leases else None,
            )
            if moved != len(advances):
                raise _Diverged
            await step_store.steps_finish_and_start_next_many(
                conn, [_step_move(item) for item in advances], now
            )
        if completions:
            completed = await workflow_store.workflows_complete_many(
                conn, [item.move for item in completions], now=now
            )
            if completed != len(completions):
                raise _Diverged
            holders = [item.move.workflow_id for item in completions if item.releases_keys]
            if holders:
                await lock_store.locks_release_workflows(conn, holders)
            await step_store.steps_complete_many(
                conn, [_step_move(item) for item in completions], now
            )
            await event_store.events_insert(
                conn, *(item.completes for item in completions if item.completes is not None)
            )

    @staticmethod
    async def _run_bodies(
        conn: AsyncConnection, batch: list[_Waiting]
    ) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        for item in batch:
            if item.future.cancelled():
                continue  # its runner is gone (shutdown): write nothing for it
            try:
                outcomes.append((item.future, await item.body(conn), None))
            except WfedError as exc:
                outcomes.append((item.future, None, exc))
        return outcomes


def _step_move(item: BatchableAdvance) -> StepMove:
    """The step row's part of a batched advance or completion."""
    return StepMove(item.move.workflow_id, item.move.position, item.finished_at or item.now)
