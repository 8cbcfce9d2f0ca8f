"""Group commit: several runners' step transitions in one transaction."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from conftest import TEST_QUEUE, Probe, unique_name
from sqlalchemy import event, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from wfed import Engine
from wfed.clock import utc_now
from wfed.daemon.committer import StepCommitter
from wfed.engine.group_commit import BatchableAdvance, BatchableStart
from wfed.errors import DatabaseUnavailable, LeaseLost
from wfed.states import EventKind, Operation, StepState, WorkflowState
from wfed.store import claims
from wfed.store import events as event_store
from wfed.store import steps as step_store
from wfed.store import workflows as workflow_store
from wfed.store.events import Event
from wfed.store.rows import WorkflowRow
from wfed.store.schema import workflow_locks
from wfed.store.steps import NewSteps, StepMove
from wfed.store.workflows import Advance, Start


async def _names(engine: Engine, prefix: str) -> set[str]:
    async with engine.db.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT name FROM workflows WHERE name LIKE :p"), {"p": f"{prefix}%"}
        )
        return {row.name for row in rows}


def _insert(name: str, fail: BaseException | None = None):
    async def body(conn: AsyncConnection) -> str:
        if fail is not None:
            raise fail
        await conn.execute(
            text("INSERT INTO workflows (name, steps, queue) VALUES (:n, '[]', 'committer')"),
            {"n": name},
        )
        return name

    return body


async def test_waiting_bodies_share_one_commit_and_keep_their_own_results(
    engine: Engine, new_name
) -> None:
    """Bodies waiting together run in one transaction; each caller gets its own result,
    and a body's lost lease fails that caller alone."""
    prefix = new_name("grp")
    committer = StepCommitter(engine.db, max_batch=16)
    finished = asyncio.Event()
    commits: list[int] = []
    event.listen(engine.db.engine.sync_engine, "commit", lambda conn: commits.append(1))
    calls = [committer.run(i, _insert(f"{prefix}-{i}")) for i in range(5)]
    calls.append(committer.run(99, _insert(f"{prefix}-lost", LeaseLost())))
    results = asyncio.gather(*calls, return_exceptions=True)
    loop = asyncio.create_task(committer.loop(finished))
    outcome = await results
    finished.set()
    await loop
    assert outcome[:5] == [f"{prefix}-{i}" for i in range(5)]
    assert isinstance(outcome[5], LeaseLost)
    assert await _names(engine, prefix) == {f"{prefix}-{i}" for i in range(5)}
    assert len(commits) == 1
    assert (committer.batches, committer.bodies) == (1, 6)


async def test_a_database_error_fails_only_the_body_it_comes_from(engine: Engine, new_name) -> None:
    """A body whose write the database refuses (not an outage) fails alone: the batch is
    split until the innocent bodies commit without it."""
    prefix = new_name("grpfail")
    committer = StepCommitter(engine.db)
    finished = asyncio.Event()

    async def broken(conn: AsyncConnection) -> None:
        await conn.execute(text("SELECT * FROM no_such_table_here"))

    calls = [committer.run(i, _insert(f"{prefix}-{i}")) for i in range(4)]
    calls.insert(2, committer.run(99, broken))
    results = asyncio.gather(*calls, return_exceptions=True)
    loop = asyncio.create_task(committer.loop(finished))
    outcome = await results
    finished.set()
    await loop
    assert isinstance(outcome[2], DBAPIError)
    assert [outcome[i] for i in (0, 1, 3, 4)] == [f"{prefix}-{i}" for i in range(4)]
    assert await _names(engine, prefix) == {f"{prefix}-{i}" for i in range(4)}
    assert committer.split >= 1


async def test_an_outage_fails_the_whole_batch(engine: Engine, new_name) -> None:
    """An outage rolls the batch back: every caller sees it (and rides it out on its own
    terms), nothing of the batch is written, and the batch is not split."""
    prefix = new_name("grpout")
    committer = StepCommitter(engine.db)
    finished = asyncio.Event()

    async def unreachable(conn: AsyncConnection) -> None:
        raise ConnectionResetError("connection reset by peer")

    calls = [committer.run(1, _insert(f"{prefix}-1")), committer.run(2, unreachable)]
    results = asyncio.gather(*calls, return_exceptions=True)
    loop = asyncio.create_task(committer.loop(finished))
    outcome = await results
    finished.set()
    await loop
    assert all(isinstance(result, DatabaseUnavailable) for result in outcome)
    assert await _names(engine, prefix) == set()
    assert committer.split == 0


@pytest.mark.parametrize("max_batch", [1, 3])
async def test_batches_are_bounded(engine: Engine, new_name, max_batch: int) -> None:
    """No batch holds more than `max_batch` bodies."""
    prefix = new_name(f"grpmax{max_batch}")
    committer = StepCommitter(engine.db, max_batch=max_batch)
    finished = asyncio.Event()
    results = asyncio.gather(*(committer.run(i, _insert(f"{prefix}-{i}")) for i in range(7)))
    loop = asyncio.create_task(committer.loop(finished))
    await results
    finished.set()
    await loop
    assert committer.bodies == 7
    assert committer.batches == -(-7 // max_batch)


# -- the batched advance ----------------------------------------------------------------

OWNER = "batch-daemon:1"


@contextlib.asynccontextmanager
async def running_workflows(
    engine: Engine, probe: Probe, count: int, steps: int = 3
) -> AsyncIterator[list[WorkflowRow]]:
    """`count` workflows held by OWNER, each with its step rows and step 0 running (as a
    daemon leaves them after claiming); stopped afterwards so no daemon ever finds them."""
    rows = []
    for _ in range(count):
        name = unique_name("batch")
        await engine.create_workflow(name, None, ["noop"] * steps, queue=TEST_QUEUE)
        row = await probe.row(name)
        async with engine.db.transaction() as conn:
            assert await claims.workflow_claim_by_id(
                conn, row.id, owner=OWNER, now=utc_now(), lease=600
            )
            if not await step_store.steps_get(conn, row.id):
                await step_store.steps_insert(conn, row.id, [("noop", None, {})] * steps)
            await step_store.step_start(conn, row.id, 0, utc_now())
        rows.append(await probe.row(name))
    try:
        yield rows
    finally:
        await _let_go(engine, rows)


async def _let_go(engine: Engine, rows: list[WorkflowRow]) -> None:
    """Stop the workflows a test held as OWNER, so that no daemon ever finds them."""
    async with engine.db.transaction() as conn:
        for row in rows:
            await workflow_store.workflow_update(
                conn, row.id, Operation.HONOUR_STOP, values={"claimed_by": None}
            )


def _fast(row: WorkflowRow, context: dict[str, Any], result: Any, fence: int | None = None):
    now = utc_now()
    move = Advance(row.id, row.fence if fence is None else fence, 0, context)
    return BatchableAdvance(move, now, result)


async def _never(conn: AsyncConnection) -> None:
    raise AssertionError("the body ran although the batched advance applied")


def _slow_advance(row: WorkflowRow, context: dict[str, Any], result: Any):
    """What a runner's body does for a plain advance (the batch's fallback)."""

    async def body(conn: AsyncConnection) -> Any:
        now = utc_now()
        assert await workflow_store.workflow_advance(
            conn,
            row.id,
            fence=row.fence,
            context=context,
            current_step=1,
            now=now,
        )
        await step_store.step_finish_and_start_next(conn, StepMove(row.id, 0, now), now)
        return result

    return body


async def _run_batch(committer: StepCommitter, calls: list[Awaitable[Any]]) -> list[Any]:
    """Submit every call before the committer loop starts, so they form one batch."""
    finished = asyncio.Event()
    results = asyncio.gather(*calls, return_exceptions=True)
    loop = asyncio.create_task(committer.loop(finished))
    outcome = await results
    finished.set()
    await loop
    return outcome


def _statements_by_table(engine: Engine) -> Counter[tuple[str, str]]:
    """Counts the UPDATE, INSERT and DELETE statements sent on `engine`, by (verb, table)."""
    counts: Counter[tuple[str, str]] = Counter()
    table_word = {"UPDATE": 1, "INSERT": 2, "DELETE": 2}  # UPDATE t, INSERT INTO t, DELETE FROM t

    def seen(conn, cursor, statement: str, *args: Any) -> None:
        words = statement.split()
        verb = words[0].upper() if words else ""
        if verb in table_word and len(words) > table_word[verb]:
            counts[verb, words[table_word[verb]].strip('`"')] += 1

    event.listen(engine.db.engine.sync_engine, "before_cursor_execute", seen)
    return counts


def _updates(statements: Counter[tuple[str, str]]) -> dict[str, int]:
    """The UPDATE counts of `_statements_by_table`, by table."""
    return {table: n for (verb, table), n in statements.items() if verb == "UPDATE"}


async def test_plain_advances_are_written_with_one_update_per_table(
    engine: Engine, probe: Probe
) -> None:
    """Advances waiting together are written by one UPDATE of `workflows` and one of
    `workflow_steps`, never through their bodies: each workflow gets its own context and
    next step (its lease untouched), step 0 completed, step 1 running with one attempt,
    step 2 untouched."""
    committer = StepCommitter(engine.db)
    async with running_workflows(engine, probe, 4) as rows:
        statements = _statements_by_table(engine)
        outcome = await _run_batch(
            committer,
            [committer.run(r.id, _never, _fast(r, {"i": i}, i)) for i, r in enumerate(rows)],
        )
        assert outcome == [0, 1, 2, 3]
        assert _updates(statements) == {"workflows": 1, "workflow_steps": 1}
        assert (committer.batches, committer.bodies, committer.diverged) == (1, 4, 0)
        for i, row in enumerate(rows):
            after = await probe.row(row.name)
            assert (after.current_step, after.context, after.fence) == (1, {"i": i}, row.fence)
            # The lease is the heartbeat's to renew: a step's commit leaves it (and
            # every other indexed column) alone.
            assert after.lease_expires_at == row.lease_expires_at
            assert (after.state, after.claimed_by) == (row.state, row.claimed_by)
            async with engine.db.transaction() as conn:
                steps = await step_store.steps_get(conn, row.id)
            assert [(s.state, s.attempts) for s in steps] == [
                (StepState.COMPLETED, 1),
                (StepState.RUNNING, 1),
                (StepState.PENDING, 0),
            ]
            assert steps[0].finished_at is not None
            assert steps[1].started_at is not None


async def test_a_failed_guard_redoes_the_batch_body_by_body(engine: Engine, probe: Probe) -> None:
    """One advance whose guard fails (a pause request waits; another a stale fence) rolls
    the batched write back; the batch then runs body by body: the requested workflow's
    body decides, the stale one's lost lease fails that caller alone, and the others are
    advanced exactly once (one attempt on step 1, not two)."""
    committer = StepCommitter(engine.db)
    async with running_workflows(engine, probe, 4) as rows:
        plain, requested, stale, last = rows
        await engine.pause(requested.name)

        async def honour(conn: AsyncConnection) -> str:
            return "honoured"

        async def lost(conn: AsyncConnection) -> None:
            raise LeaseLost

        outcome = await _run_batch(
            committer,
            [
                committer.run(
                    plain.id, _slow_advance(plain, {"n": 1}, "slow"), _fast(plain, {"n": 1}, "fast")
                ),
                committer.run(requested.id, honour, _fast(requested, {"n": 2}, "fast")),
                committer.run(
                    stale.id, lost, _fast(stale, {"n": 3}, "fast", fence=stale.fence - 1)
                ),
                committer.run(
                    last.id, _slow_advance(last, {"n": 4}, "slow"), _fast(last, {"n": 4}, "fast")
                ),
            ],
        )
        assert [outcome[0], outcome[1], outcome[3]] == ["slow", "honoured", "slow"]
        assert isinstance(outcome[2], LeaseLost)
        assert committer.diverged == 1
        for row, context in ((plain, {"n": 1}), (last, {"n": 4})):
            after = await probe.row(row.name)
            assert (after.current_step, after.context) == (1, context)
            async with engine.db.transaction() as conn:
                steps = await step_store.steps_get(conn, row.id)
            assert [(s.state, s.attempts) for s in steps[:2]] == [
                (StepState.COMPLETED, 1),
                (StepState.RUNNING, 1),
            ]
        for row in (requested, stale):
            after = await probe.row(row.name)
            assert (after.current_step, after.context) == (0, row.context)


async def test_batched_advance_finds_rows_by_index_on_mariadb(
    mariadb_url: str, make_engine, new_name
) -> None:
    """On MariaDB the two batched UPDATEs find their rows through the primary key and
    the (workflow_id, position) index: not one row is read by a table scan, with
    thousands of other workflows and steps in the tables."""
    engine = make_engine(mariadb_url)
    filler = new_name("filler")
    async with engine.db.transaction() as conn:
        await conn.execute(
            text(
                "INSERT INTO workflows (name, steps, queue, state) "
                "SELECT CONCAT(:prefix, seq), '[]', :queue, 'completed' FROM seq_1_to_3000"
            ),
            {"prefix": f"{filler}-", "queue": filler},
        )
        await conn.execute(
            text(
                "INSERT INTO workflow_steps (workflow_id, position, step, args, state) "
                "SELECT w.id, p.seq, 'noop', '{}', 'completed' "
                "FROM workflows w, seq_0_to_2 p WHERE w.queue = :queue"
            ),
            {"queue": filler},
        )
        await conn.execute(text("ANALYZE TABLE workflows, workflow_steps"))
    try:
        async with running_workflows(engine, Probe(engine), 5) as rows:
            async with engine.db.transaction() as conn:

                async def scanned() -> int:
                    result = await conn.execute(
                        text("SHOW SESSION STATUS LIKE 'Handler_read_rnd_next'")
                    )
                    return int(result.one()[1])

                # SHOW STATUS scans a little itself: what one costs is subtracted.
                first = await scanned()
                before = await scanned()
                moves = [Advance(r.id, r.fence, 0, {"i": i}) for i, r in enumerate(rows)]
                now = utc_now()
                moved = await workflow_store.workflows_advance_many(conn, moves, now=now)
                await step_store.steps_finish_and_start_next_many(
                    conn, [StepMove(r.id, 0, now) for r in rows], now
                )
                after = await scanned()
            assert moved == 5
            assert after - before - (before - first) == 0
    finally:
        async with engine.db.transaction() as conn:
            await conn.execute(text("DELETE FROM workflows WHERE queue = :q"), {"q": filler})


async def test_an_advance_that_no_longer_applies_runs_its_body(
    engine: Engine, probe: Probe
) -> None:
    """An advance whose runner was told to release its workflow after queueing it (its
    `applies()` is now false) is not written in the batch: its body runs instead, while
    the other advances are still batched."""
    committer = StepCommitter(engine.db)
    async with running_workflows(engine, probe, 2) as (released, plain):

        async def release(conn: AsyncConnection) -> str:
            return "body"

        withdrawn = _fast(released, {"n": 1}, "fast")
        withdrawn = BatchableAdvance(withdrawn.move, withdrawn.now, "fast", applies=lambda: False)
        outcome = await _run_batch(
            committer,
            [
                committer.run(released.id, release, withdrawn),
                committer.run(plain.id, _never, _fast(plain, {"n": 2}, "fast")),
            ],
        )
        assert outcome == ["body", "fast"]
        assert committer.diverged == 0
        assert (await probe.row(released.name)).current_step == 0
        assert (await probe.row(plain.name)).current_step == 1


async def test_a_half_spent_lease_is_renewed_with_the_batch(engine: Engine, probe: Probe) -> None:
    """An advance that asks for a renewed lease (its heartbeat kept finding the row
    locked) gets it in the batched write, and so do the other rows of that batch (a
    later end than their runners count on is the safe side)."""
    committer = StepCommitter(engine.db)
    async with running_workflows(engine, probe, 2) as (renewing, other):
        new_end = utc_now() + timedelta(hours=2)
        asked = _fast(renewing, {}, "renewed")
        asked = BatchableAdvance(asked.move, asked.now, "renewed", lease_expires_at=new_end)
        outcome = await _run_batch(
            committer,
            [
                committer.run(renewing.id, _never, asked),
                committer.run(other.id, _never, _fast(other, {}, "plain")),
            ],
        )
        assert outcome == ["renewed", "plain"]
        for row in (renewing, other):
            after = await probe.row(row.name)
            assert after.lease_expires_at is not None
            assert after.lease_expires_at > utc_now() + timedelta(minutes=100)


async def test_a_runner_gone_before_its_batch_gets_nothing_written(
    engine: Engine, probe: Probe
) -> None:
    """A runner cancelled (shutdown) while its advance waited: the batch writes the
    others and leaves its workflow as it was."""
    committer = StepCommitter(engine.db)
    async with running_workflows(engine, probe, 2) as (gone, kept):
        cancelled = asyncio.ensure_future(committer.run(gone.id, _never, _fast(gone, {}, "x")))
        await asyncio.sleep(0)  # it is waiting in the committer now
        cancelled.cancel()
        outcome = await _run_batch(
            committer, [committer.run(kept.id, _never, _fast(kept, {}, "kept"))]
        )
        assert outcome == ["kept"]
        assert cancelled.cancelled()
        assert (await probe.row(gone.name)).current_step == 0
        assert (await probe.row(kept.name)).current_step == 1


def _completion(row: WorkflowRow, context: dict[str, Any], fence: int | None = None):
    """A batched completion of a workflow whose step 0 was its last."""
    now = utc_now()
    done = Event(row.id, row.name, EventKind.COMPLETED.value, OWNER, now)
    move = Advance(row.id, row.fence if fence is None else fence, 0, context)
    return BatchableAdvance(move, now, f"completed {row.name}", completes=done)


async def test_completions_are_written_with_one_statement_per_table(
    engine: Engine, probe: Probe
) -> None:
    """Completions waiting together, beside an advance, are written by one UPDATE of
    `workflows`, one of `workflow_steps` and one INSERT of their events, never through
    their bodies: each workflow completed with its own context, its owner, lease and a
    waiting pause request cleared, its last step completed, one `completed`
    event each."""
    committer = StepCommitter(engine.db)
    async with (
        running_workflows(engine, probe, 3, steps=1) as ending,
        running_workflows(engine, probe, 1) as (advancing,),
    ):
        await engine.pause(ending[1].name)  # a request that comes too late to matter
        statements = _statements_by_table(engine)
        outcome = await _run_batch(
            committer,
            [committer.run(r.id, _never, _completion(r, {"i": i})) for i, r in enumerate(ending)]
            + [committer.run(advancing.id, _never, _fast(advancing, {}, "advanced"))],
        )
        assert outcome == [f"completed {r.name}" for r in ending] + ["advanced"]
        assert statements == {
            ("UPDATE", "workflows"): 2,
            ("UPDATE", "workflow_steps"): 2,
            ("INSERT", "workflow_events"): 1,
        }
        assert (committer.batches, committer.bodies, committer.diverged) == (1, 4, 0)
        for i, row in enumerate(ending):
            after = await probe.row(row.name)
            assert after.state is WorkflowState.COMPLETED
            assert (after.current_step, after.context, after.fence) == (1, {"i": i}, row.fence)
            assert (after.claimed_by, after.lease_expires_at, after.requested) == (None, None, None)
            assert after.finished_at is not None
            async with engine.db.transaction() as conn:
                (step,) = await step_store.steps_get(conn, row.id)
            assert (step.state, step.attempts, step.error) == (StepState.COMPLETED, 1, None)
            assert step.finished_at is not None
            assert (await probe.kinds(row.name)).count("completed") == 1
        assert (await probe.row(advancing.name)).current_step == 1


async def test_a_completion_that_lost_its_lease_fails_alone(engine: Engine, probe: Probe) -> None:
    """A completion whose owner changed (a stale fence) rolls the batched write back; the
    batch runs again body by body: that runner's body finds the lease lost, and the other
    completion is written once (one event, not two)."""
    committer = StepCommitter(engine.db)
    async with running_workflows(engine, probe, 2, steps=1) as (stale, good):

        async def lost(conn: AsyncConnection) -> None:
            raise LeaseLost

        async def complete_alone(conn: AsyncConnection) -> str:
            now = utc_now()
            assert await workflow_store.workflow_update(
                conn,
                good.id,
                Operation.COMPLETE,
                fence=good.fence,
                values={"claimed_by": None, "lease_expires_at": None, "finished_at": now},
            )
            await step_store.step_finish(conn, good.id, 0, StepState.COMPLETED, now)
            done = Event(good.id, good.name, EventKind.COMPLETED.value, OWNER, now)
            await event_store.events_insert(conn, done)
            return "body"

        outcome = await _run_batch(
            committer,
            [
                committer.run(stale.id, lost, _completion(stale, {}, fence=stale.fence - 1)),
                committer.run(good.id, complete_alone, _completion(good, {})),
            ],
        )
        assert isinstance(outcome[0], LeaseLost)
        assert outcome[1] == "body"
        assert committer.diverged == 1
        assert (await probe.row(good.name)).state is WorkflowState.COMPLETED
        assert (await probe.kinds(good.name)).count("completed") == 1
        assert (await probe.row(stale.name)).state is WorkflowState.RUNNING
        assert "completed" not in await probe.kinds(stale.name)


async def test_batched_completions_give_up_the_keys_of_their_workflows_only(
    engine: Engine, probe: Probe
) -> None:
    """A batched completion of a workflow that holds concurrency keys gives them up with
    one DELETE for the batch; a completion whose workflow took none deletes nothing, and
    a workflow outside the batch keeps its slot."""
    committer = StepCommitter(engine.db)
    async with running_workflows(engine, probe, 3, steps=1) as (keyed, plain, bystander):
        async with engine.db.transaction() as conn:
            for row, key in ((keyed, "k:a"), (keyed, "k:b"), (bystander, "k:c")):
                await conn.execute(
                    workflow_locks.insert().values(lock_key=key, slot=0, workflow_id=row.id)
                )
        statements = _statements_by_table(engine)
        holding = replace(_completion(keyed, {}), releases_keys=True)
        outcome = await _run_batch(
            committer,
            [
                committer.run(keyed.id, _never, holding),
                committer.run(plain.id, _never, _completion(plain, {})),
            ],
        )
        assert outcome == [f"completed {keyed.name}", f"completed {plain.name}"]
        deletes = {key: n for key, n in statements.items() if key[0] == "DELETE"}
        assert deletes == {("DELETE", "workflow_locks"): 1}
        async with engine.db.engine.connect() as conn:
            held = await conn.execute(
                select(workflow_locks.c.lock_key, workflow_locks.c.workflow_id)
            )
            assert sorted(held.all()) == [("k:c", bystander.id)]


# -- the batched start --------------------------------------------------------------------


@contextlib.asynccontextmanager
async def claimed_workflows(
    engine: Engine, probe: Probe, kinds: list[str], steps: int = 3
) -> AsyncIterator[list[WorkflowRow]]:
    """Workflows just claimed by OWNER, as a daemon finds them before its first write:
    `fresh` (a plain-SQL row, no step rows yet), `untouched` (created by wfectl, its step
    rows never run) or `ran` (step 0 completed in an earlier turn, now at step 1)."""
    rows = []
    for kind in kinds:
        name = unique_name(f"start-{kind}")
        definition = ["noop"] * steps
        if kind == "fresh":
            async with engine.db.transaction() as conn:
                await conn.execute(
                    text("INSERT INTO workflows (name, steps, queue) VALUES (:n, :s, :q)"),
                    {"n": name, "s": json.dumps(definition), "q": TEST_QUEUE},
                )
        else:
            await engine.create_workflow(name, None, definition, queue=TEST_QUEUE)
        row = await probe.row(name)
        async with engine.db.transaction() as conn:
            if kind == "ran":
                await step_store.step_start(conn, row.id, 0, utc_now())
                await step_store.step_finish(conn, row.id, 0, StepState.COMPLETED, utc_now())
                await conn.execute(
                    text("UPDATE workflows SET current_step = 1 WHERE id = :i"), {"i": row.id}
                )
            assert await claims.workflow_claim_by_id(
                conn, row.id, owner=OWNER, now=utc_now(), lease=600
            )
        rows.append(await probe.row(name))
    try:
        yield rows
    finally:
        await _let_go(engine, rows)


def _start(row: WorkflowRow, result: Any, steps: int = 3, fence: int | None = None):
    """What a runner hands over for its first write of a turn (see TurnStart._batchable)."""
    now = utc_now()
    fence = row.fence if fence is None else fence
    position = row.current_step
    return BatchableStart(
        Start(row.id, fence, position),
        NewSteps(row.id, [("noop", None, {})] * steps, running=position, skipped_before=position),
        now,
        now + timedelta(seconds=600),
        Event(row.id, row.name, EventKind.CLAIMED, OWNER, now, position=position),
        result,
    )


async def _step_rows(engine: Engine, row: WorkflowRow) -> list[tuple[StepState, int]]:
    async with engine.db.transaction() as conn:
        return [(s.state, s.attempts) for s in await step_store.steps_get(conn, row.id)]


async def test_first_starts_are_written_with_one_statement_per_table(
    engine: Engine, probe: Probe
) -> None:
    """Just-claimed workflows start their first step together: one UPDATE of `workflows`
    (their leases), one INSERT of the step rows of those that had none, one UPDATE
    starting the step of those whose rows were never run, one INSERT of their claim
    events. A workflow that ran before gets its own body run instead, in the same batch."""
    committer = StepCommitter(engine.db)
    kinds = ["fresh", "untouched", "fresh", "ran"]
    async with claimed_workflows(engine, probe, kinds) as rows:
        fresh, untouched, other_fresh, ran = rows
        statements = _statements_by_table(engine)

        async def ran_body(conn: AsyncConnection) -> str:
            return "decided by its body"

        outcome = await _run_batch(
            committer,
            [
                committer.run(fresh.id, _never, _start(fresh, "fresh")),
                committer.run(untouched.id, _never, _start(untouched, "untouched")),
                committer.run(other_fresh.id, _never, _start(other_fresh, "other")),
                committer.run(ran.id, ran_body, _start(ran, "batched")),
            ],
        )

        assert outcome == ["fresh", "untouched", "other", "decided by its body"]
        assert statements == Counter(
            {
                ("UPDATE", "workflows"): 1,
                ("INSERT", "workflow_steps"): 1,
                ("UPDATE", "workflow_steps"): 1,
                ("INSERT", "workflow_events"): 1,
            }
        )
        assert (committer.batches, committer.diverged) == (1, 0)
        started = [(StepState.RUNNING, 1), (StepState.PENDING, 0), (StepState.PENDING, 0)]
        for row in (fresh, untouched, other_fresh):
            assert await _step_rows(engine, row) == started
            after = await probe.row(row.name)
            assert after.lease_expires_at is not None
            assert after.lease_expires_at > row.lease_expires_at
            created = ["created"] if row is untouched else []
            assert await probe.kinds(row.name) == [*created, "claimed"]
        assert await _step_rows(engine, ran) == [
            (StepState.COMPLETED, 1),
            (StepState.PENDING, 0),
            (StepState.PENDING, 0),
        ]


async def test_a_start_at_a_later_step_skips_the_steps_before(engine: Engine, probe: Probe) -> None:
    """A plain-SQL row that starts at step 1 gets step 0 recorded skipped, step 1 running."""
    committer = StepCommitter(engine.db)
    async with claimed_workflows(engine, probe, ["fresh"]) as (row,):
        async with engine.db.transaction() as conn:
            await conn.execute(
                text("UPDATE workflows SET current_step = 1 WHERE id = :i"), {"i": row.id}
            )
        later = await probe.row(row.name)
        assert await _run_batch(committer, [committer.run(row.id, _never, _start(later, 1))]) == [1]
        assert await _step_rows(engine, row) == [
            (StepState.SKIPPED, 0),
            (StepState.RUNNING, 1),
            (StepState.PENDING, 0),
        ]


async def test_a_start_whose_guard_fails_redoes_the_batch_body_by_body(
    engine: Engine, probe: Probe
) -> None:
    """A start whose guard fails (a pause requested since the claim; a stale fence) rolls
    the batched write back: every workflow's body runs instead, and nothing of the
    batched write is left (no step rows, no claim events)."""
    committer = StepCommitter(engine.db)
    async with claimed_workflows(engine, probe, ["fresh", "fresh", "fresh"]) as rows:
        plain, requested, stale = rows
        async with engine.db.transaction() as conn:
            await conn.execute(
                text("UPDATE workflows SET requested = 'pause' WHERE id = :i"), {"i": requested.id}
            )

        def body(answer: str):
            async def run(conn: AsyncConnection) -> str:
                return answer

            return run

        outcome = await _run_batch(
            committer,
            [
                committer.run(plain.id, body("plain body"), _start(plain, "batched")),
                committer.run(requested.id, body("honoured"), _start(requested, "batched")),
                committer.run(
                    stale.id, body("lost"), _start(stale, "batched", fence=stale.fence - 1)
                ),
            ],
        )

        assert outcome == ["plain body", "honoured", "lost"]
        assert committer.diverged == 1
        for row in rows:
            assert await _step_rows(engine, row) == []
            assert "claimed" not in await probe.kinds(row.name)
