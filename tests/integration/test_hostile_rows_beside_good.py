"""Rows inserted by plain SQL whose content wfed cannot run, claimed beside good rows.

Each hostile row must end in `error` on its own, with a bounded, readable `last_error`
(or be refused by the database at INSERT); the good rows claimed in the same claim must
complete; nothing raises out of the claim or the runners.
"""

from __future__ import annotations

import asyncio
import json

from conftest import unique_name
from sqlalchemy import text

from wfed import Engine, WorkflowState
from wfed.clock import utc_now
from wfed.daemon.committer import StepCommitter
from wfed.engine.runner import Outcome, WorkflowRunner
from wfed.store import claims
from wfed.store.bounded import TEXT_MAX

DEEP = 10_000


def _nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


# name -> (steps text, context text, a phrase last_error must contain)
HOSTILE: dict[str, tuple[str, str, str]] = {
    "deep-context": ('["noop"]', _nested(DEEP), "nested too deeply"),
    "deep-steps": ('[{"step": "noop", "args": ' + _nested(DEEP) + "}]", "{}", "nested"),
    "nested-context": ('["noop"]', _nested(100), "deeper than"),
    # PostgreSQL's JSONB keeps 1e400 as an integer of 401 digits; the others read inf.
    "infinite-number": ('["noop"]', '{"x": 1e400}', "not a finite number|64 bits"),
    "huge-integer": ('["noop"]', '{"x": ' + "9" * 40 + "}", "64 bits"),
    "huge-step-name": (json.dumps([{"step": "x" * 70_000}]), "{}", "at most 255"),
    "huge-retry-delay": ('[{"step": "noop", "retry_delay": 1e300}]', "{}", "retry_delay"),
    "huge-backoff": ('[{"step": "noop", "backoff": 1e300}]', "{}", "backoff"),
    "module-name": ('["os.system"]', "{}", "unknown step 'os.system'"),
    "dunder-name": ('["__import__"]', "{}", "unknown step"),
    "steps-not-a-list": ('{"step": "noop"}', "{}", "must be a non-empty JSON list"),
    "steps-empty": ("[]", "{}", "empty list"),
    "context-a-list": ('["noop"]', "[1, 2]", "context must be a JSON object"),
    "unknown-argument": ('[{"step": "noop", "args": {"rm": "-rf /"}}]', "{}", "unknown argument"),
    "template-attribute": (
        '[{"step": "record", "args": {"key": "{x.__class__}"}}]',
        '{"x": 1}',
        "record",
    ),
}


async def test_hostile_rows_end_in_error_and_good_rows_beside_them_complete(
    engine: Engine,
) -> None:
    """Every hostile row inserted by plain SQL ends in error with a bounded last_error
    naming its problem (or is refused at INSERT), while the good rows claimed with them
    complete."""
    queue = unique_name("hostile")
    refused: set[str] = set()
    names = {kind: unique_name(kind) for kind in HOSTILE}
    good = [unique_name("good") for _ in range(3)]
    for kind, (steps, context, _) in HOSTILE.items():
        try:
            async with engine.db.transaction() as conn:
                await _insert(conn, names[kind], steps, context, queue)
        except Exception:
            refused.add(kind)
    async with engine.db.transaction() as conn:
        for name in good:
            await _insert(conn, name, '["noop", "noop"]', '{"ok": true}', queue)

    async with engine.db.transaction() as conn:
        claimed = await claims.workflow_claim_pending(
            conn, owner="hostile-test", queues=[queue], limit=100, now=utc_now(), lease=600
        )
    assert len(claimed) == len(HOSTILE) - len(refused) + len(good)
    runners = [
        WorkflowRunner(engine.db, engine.registry, row, actor="hostile-test", lease_seconds=600)
        for row in claimed
    ]
    results = await asyncio.gather(*(runner.run() for runner in runners))
    outcome = {
        runner.workflow.name: result.outcome
        for runner, result in zip(runners, results, strict=True)
    }

    for name in good:
        assert outcome[name] is Outcome.COMPLETED
        assert (await engine.get(name)).state is WorkflowState.COMPLETED
    # Only nesting the database itself refuses to store (MariaDB's JSON CHECK stops at
    # 32 levels) may be refused at INSERT.
    assert refused <= {"deep-context", "deep-steps", "nested-context"}
    for kind, (_, _, phrase) in HOSTILE.items():
        if kind in refused:
            continue
        workflow = await engine.get(names[kind])
        assert outcome[names[kind]] is Outcome.ERROR, kind
        assert workflow.state is WorkflowState.ERROR, kind
        assert workflow.last_error is not None
        assert len(workflow.last_error) <= TEXT_MAX, kind
        readable = any(part in workflow.last_error for part in phrase.split("|"))
        assert readable, (kind, workflow.last_error[:300])


async def _insert(conn, name: str, steps: str, context: str, queue: str) -> None:
    await conn.execute(
        text("INSERT INTO workflows (name, steps, context, queue) VALUES (:n, :s, :c, :q)"),
        {"n": name, "s": steps, "c": context, "q": queue},
    )


async def test_a_step_leaving_nan_fails_alone_in_a_group_commit(engine: Engine) -> None:
    """A step that leaves NaN in the context fails its own workflow; the workflows whose
    step commits share its group commit complete."""
    queue = unique_name("nan")
    names = [unique_name("nan-good") for _ in range(4)]
    bad = unique_name("nan-bad")
    for name in names:
        await engine.create_workflow(name, {}, ["noop", "noop", "noop"], queue=queue)
    await engine.create_workflow(bad, {}, ["noop", "write_nan", "noop"], queue=queue)
    async with engine.db.transaction() as conn:
        claimed = await claims.workflow_claim_pending(
            conn, owner="nan-test", queues=[queue], limit=10, now=utc_now(), lease=600
        )
    committer = StepCommitter(engine.db)
    finished = asyncio.Event()
    loop = asyncio.create_task(committer.loop(finished))
    runners = [
        WorkflowRunner(
            engine.db,
            engine.registry,
            row,
            actor="nan-test",
            lease_seconds=600,
            committer=committer.run,
        )
        for row in claimed
    ]
    await asyncio.gather(*(runner.run() for runner in runners))
    finished.set()
    await loop
    for name in names:
        assert (await engine.get(name)).state is WorkflowState.COMPLETED
    failed = await engine.get(bad)
    assert failed.state is WorkflowState.ERROR
    assert failed.last_error is not None
    assert "not JSON" in failed.last_error


async def test_a_fence_no_claim_can_bump_sends_its_row_alone_to_error(engine: Engine) -> None:
    """A `fence` set by hand past what claims ever reach (up to the column's largest
    value, whose bump would overflow it) or below 0: the claim sends that row to error
    naming the column, with its fence set back to 0, and claims the good rows beside it
    (pending ones, and one whose lease expired); a retry then runs the bad one."""
    queue = unique_name("fence")
    bad = {unique_name("fence-max"): 2**63 - 1, unique_name("fence-neg"): -5}
    good = [unique_name("fence-good") for _ in range(2)]
    expired = unique_name("fence-expired")
    async with engine.db.transaction() as conn:
        for name, fence in bad.items():
            await conn.execute(
                text(
                    "INSERT INTO workflows (name, steps, context, queue, fence) "
                    "VALUES (:n, '[\"noop\"]', '{}', :q, :f)"
                ),
                {"n": name, "q": queue, "f": fence},
            )
        for name in good:
            await _insert(conn, name, '["noop"]', "{}", queue)
        await conn.execute(
            text(
                "INSERT INTO workflows (name, steps, context, queue, state, claimed_by, "
                "lease_expires_at, fence) VALUES (:n, '[\"noop\"]', '{}', :q, 'running', "
                "'gone:1', :at, :f)"
            ),
            {"n": expired, "q": queue, "at": utc_now(), "f": 2**63 - 1},
        )

    async with engine.db.transaction() as conn:
        claimed = await claims.workflow_claim_pending(
            conn, owner="fence-test", queues=[queue], limit=10, now=utc_now(), lease=600
        )
        rescued = await claims.workflow_claim_expired(
            conn, owner="fence-test", queues=[queue], limit=10, now=utc_now(), lease=600
        )

    assert sorted(row.name for row in claimed) == sorted(good)
    assert rescued == []
    for name in [*bad, expired]:
        workflow = await engine.get(name)
        assert workflow.state is WorkflowState.ERROR
        assert workflow.row.fence == 0
        assert workflow.row.claimed_by is None
        assert "fence holds" in (workflow.last_error or "")
    retried = next(iter(bad))
    await engine.retry(retried)
    assert (await engine.run(retried)).state is WorkflowState.COMPLETED
