"""Concurrency keys: a workflow's `locks` are taken when it is claimed, all or none, up
to each key's limit; they are kept while it is pending again, paused or in error, and
given up when it completes, is stopped or is deleted; `show` tells who a waiting
workflow waits for, and an operator can release a key.

Every test uses keys and queues of its own (unique names), so the session's shared
databases never mix tests; what a test creates is deleted at its end.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import delete, select, text

from wfed import Engine, InvalidDefinition, WorkflowHalted, WorkflowLocked, WorkflowState
from wfed.clock import utc_now
from wfed.config import DaemonConfig, LocksConfig
from wfed.daemon.claimer import Claimer
from wfed.errors import InvalidTransition
from wfed.metrics import Metrics
from wfed.store import claims, locks
from wfed.store.locks import LimitOf, one_slot
from wfed.store.rows import WorkflowRow
from wfed.store.schema import workflow_locks, workflows

S = WorkflowState
W = workflows.c
L = workflow_locks.c


@pytest.fixture
async def keyed(engine: Engine, new_name: Callable[..., str]) -> AsyncIterator[Callable[..., Any]]:
    """`await keyed(queue, keys, steps=["noop"], **options)`: a workflow in `queue` naming
    `keys`; returns its name. Every workflow of the test's queues is deleted afterwards
    (their slot rows go with them)."""
    queues: set[str] = set()

    async def make(
        queue: str, keys: list[str], steps: list[Any] | None = None, **options: Any
    ) -> str:
        name = new_name("k")
        queues.add(queue)
        await engine.create_workflow(
            name, {}, steps or ["noop"], queue=queue, locks=keys, **options
        )
        return name

    yield make
    async with engine.db.transaction() as conn:
        await conn.execute(delete(workflows).where(W.queue.in_(sorted(queues))))


async def claim(
    engine: Engine, queue: str, *, limit: int = 10, limit_of: LimitOf = one_slot, lookahead: int = 0
) -> claims.PendingClaim:
    async with engine.db.transaction() as conn:
        return await claims.workflow_claim_pending_counted(
            conn,
            owner="claimer",
            queues=[queue],
            limit=limit,
            now=utc_now(),
            lease=60,
            limit_of=limit_of,
            lookahead=lookahead,
        )


async def slots(engine: Engine, keys: list[str]) -> list[tuple[str, int, str]]:
    """(key, slot, holder's name) of every held slot of `keys`."""
    async with engine.db.transaction() as conn:
        rows = await conn.execute(
            select(L.lock_key, L.slot, W.name)
            .join(workflows, W.id == L.workflow_id)
            .where(L.lock_key.in_(keys))
            .order_by(L.lock_key, L.slot)
        )
        return [(key, slot, name) for key, slot, name in rows]


def names(rows: list[WorkflowRow]) -> list[str]:
    return [row.name for row in rows]


async def test_limit_one_claims_one_holder(engine: Engine, keyed, new_name) -> None:
    """Three workflows on one key of limit 1: a claim takes the oldest only; the others stay
    pending, counted as waiting, and a second claim takes nothing."""
    queue, key = new_name("q"), new_name("cluster")
    first, second, third = [await keyed(queue, [key]) for _ in range(3)]

    taken = await claim(engine, queue)
    again = await claim(engine, queue, lookahead=5)

    assert names(taken.rows) == [first]
    assert taken.waiting == 2
    assert again.rows == []
    assert again.waiting == 2
    assert await slots(engine, [key]) == [(key, 0, first)]
    assert (await engine.get(second)).state is S.PENDING
    assert (await engine.get(third)).state is S.PENDING


async def test_prefix_limit_two(engine: Engine, keyed, new_name) -> None:
    """A limit set for a key prefix gives each key under it two slots: two of three
    workflows on `pool:…:web` are claimed, and a key outside the prefix keeps one slot."""
    queue, pool = new_name("q"), new_name("pool")
    limits = LocksConfig(limits={pool: 2})
    web, other = f"{pool}:web", new_name("single")
    on_web = [await keyed(queue, [web]) for _ in range(3)]
    on_other = [await keyed(queue, [other]) for _ in range(2)]

    taken = await claim(engine, queue, limit_of=limits.limit_of, lookahead=10)

    assert names(taken.rows) == [*on_web[:2], on_other[0]]
    assert await slots(engine, [web, other]) == sorted(
        [(other, 0, on_other[0]), (web, 0, on_web[0]), (web, 1, on_web[1])]
    )


async def test_all_or_nothing_and_no_starvation(engine: Engine, keyed, new_name) -> None:
    """A workflow needing [a, b] while a is full takes neither (no slot of b is held for
    it), and the workflow on b queued behind it is claimed in the same pass."""
    queue, a, b = new_name("q"), new_name("a"), new_name("b")
    holder = await keyed(queue, [a])
    assert names((await claim(engine, queue)).rows) == [holder]
    both = await keyed(queue, [b, a], priority=5)
    on_b = await keyed(queue, [b])

    taken = await claim(engine, queue, limit=1, lookahead=1)

    assert names(taken.rows) == [on_b]
    assert taken.waiting == 1
    assert await slots(engine, [a, b]) == [(a, 0, holder), (b, 0, on_b)]
    assert (await engine.get(both)).state is S.PENDING


class _NoSlots:
    """The daemon's slots as a claimer sees them, in a test that passes `free` itself."""

    freed = asyncio.Event()

    def free(self) -> int:
        return 0

    def held(self) -> list[int]:
        return []


async def test_the_claimer_reaches_work_behind_a_line_of_waiting_workflows(
    engine: Engine, keyed, new_name
) -> None:
    """A daemon's claimer with one free slot, in front of three higher-priority workflows
    waiting for a full key: each pass looks past twice as many waiting workflows as the
    last one passed over, until it reaches the workflow behind them; the metric says how
    many it passed over."""
    queue, key = new_name("q"), new_name("cluster")
    holder = await keyed(queue, [key], priority=9)
    assert names((await claim(engine, queue)).rows) == [holder]
    for _ in range(3):
        await keyed(queue, [key], priority=5)
    behind = await keyed(queue, [new_name("other")])
    started: list[WorkflowRow] = []
    metrics = Metrics()
    claimer = Claimer(
        engine.db,
        DaemonConfig(queues=[queue]),
        daemon_id="keys-claimer",
        slots=_NoSlots(),
        start=started.append,
        metrics=metrics,
    )

    passed_over = []
    for _ in range(3):
        await claimer.run_once(1)
        passed_over.append(metrics.registry.get_sample_value("wfed_waiting_for_keys"))

    assert passed_over == [1, 3, 3]
    assert names(started) == [behind]
    await claimer.run_once(1)  # claims nothing: the next pass asks first
    assert metrics.registry.get_sample_value("wfed_waiting_for_keys") == 3
    async with engine.db.transaction() as conn:  # nothing pending any more
        await conn.execute(
            workflows.update().where(W.queue == queue, W.state == "pending").values(state="paused")
        )
    await claimer.run_once(1)
    assert metrics.registry.get_sample_value("wfed_waiting_for_keys") == 0


async def test_keys_differing_in_case_are_one_key(engine: Engine, keyed, new_name) -> None:
    """`Cluster:DB1` and `cluster:db1` are the same key on every backend: one holder."""
    queue, key = new_name("q"), new_name("cluster")
    upper = await keyed(queue, [key.upper()])
    lower = await keyed(queue, [key])

    taken = await claim(engine, queue)

    assert names(taken.rows) == [upper]
    assert await slots(engine, [key]) == [(key, 0, upper)]
    waiting = (await engine.get(lower)).keys
    assert waiting is not None
    assert [w.key for w in waiting.waiting_for] == [key]
    freed = await engine.release_lock(key.upper(), reason="case")
    assert [h.workflow for h in freed] == [upper]


async def test_crossed_orders_never_split(engine: Engine, keyed, new_name) -> None:
    """Two workflows wanting [a, b] and [b, a] in one claim: the first takes both keys,
    the second none (keys are taken in one sorted order)."""
    queue, a, b = new_name("q"), new_name("a"), new_name("b")
    first = await keyed(queue, [a, b])
    second = await keyed(queue, [b, a])

    taken = await claim(engine, queue)

    assert names(taken.rows) == [first]
    assert await slots(engine, [a, b]) == [(a, 0, first), (b, 0, first)]
    assert (await engine.get(second)).state is S.PENDING


async def test_a_slot_lost_to_another_claimer_gives_back_the_others(
    engine: Engine, keyed, new_name
) -> None:
    """When the slots a claim picked from its read are inserted and one of them was taken
    meanwhile (by another daemon's claim), the workflow keeps none of the others: all or
    nothing, decided by the primary key."""
    queue, a, b = new_name("q"), new_name("a"), new_name("b")
    quicker = await keyed(queue, [b])
    slower = await keyed(queue, [a, b])
    ids = {name: (await engine.get(name)).row.id for name in (quicker, slower)}
    async with engine.db.transaction() as conn:
        # The quicker claim took b's slot after the slower one read it free.
        assert await locks.locks_take_all(conn, ids[quicker], [b], one_slot, utc_now()) is None
        got = await locks._take_picked(conn, {ids[slower]: [(a, 0), (b, 0)]}, utc_now())

    assert got == set()
    assert await slots(engine, [a, b]) == [(b, 0, quicker)]


async def test_waiting_workflow_shows_its_holder(engine: Engine, keyed, new_name) -> None:
    """`show` of a pending workflow waiting for a full key names the key, its limit and
    the holder with its state; the holder's `show` lists the slot it holds."""
    queue, key = new_name("q"), new_name("cluster")
    holder = await keyed(queue, [key])
    waiter = await keyed(queue, [key])
    await claim(engine, queue)

    waiting = await engine.get(waiter)
    held = await engine.get(holder)

    assert waiting.keys is not None
    assert waiting.keys.named == [key]
    assert waiting.keys.held == []
    [wait] = waiting.keys.waiting_for
    assert (wait.key, wait.limit) == (key, 1)
    assert [(h.workflow, h.state) for h in wait.holders] == [(holder, S.RUNNING)]
    document = waiting.to_json()["locks"]
    assert document["waiting_for"][0]["holders"][0]["workflow"] == holder
    assert document["waiting_for"][0]["holders"][0]["state"] == "running"
    assert held.to_json()["locks"]["held"][0]["key"] == key
    assert held.to_json()["locks"]["waiting_for"] == []


async def test_run_completes_and_releases(engine: Engine, keyed, new_name) -> None:
    """`Engine.run` takes the key, and completing gives it up in the same transaction: the
    next workflow on the key can then run."""
    queue, key = new_name("q"), new_name("cluster")
    first = await keyed(queue, [key])
    second = await keyed(queue, [key])

    await engine.run(first)
    assert await slots(engine, [key]) == []
    await engine.run(second)

    assert (await engine.get(first)).state is S.COMPLETED
    assert (await engine.get(second)).state is S.COMPLETED
    kinds = [event.kind for event in await engine.history(second)]
    assert kinds[-1] == "completed"


async def first_step_started(engine: Engine, name: str) -> None:
    """Wait until the workflow's first step has started (a look every 10 ms)."""
    for _ in range(6000):
        if (await engine.get(name)).steps[0].started_at is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the first step of {name} never started")


async def test_stop_of_a_running_holder_releases(engine: Engine, keyed, new_name) -> None:
    """A running holder stopped by an operator gives its key up in the transaction that
    records it stopped (its owner honours the request)."""
    queue, key = new_name("q"), new_name("cluster")
    name = await keyed(queue, [key], steps=[{"step": "sleep", "args": {"seconds": 600}}])
    running = asyncio.create_task(engine.run(name))
    try:
        await first_step_started(engine, name)
        assert await slots(engine, [key]) == [(key, 0, name)]
        await engine.stop(name, reason="enough")
        with pytest.raises(WorkflowHalted):
            await running
    finally:
        running.cancel()
    assert (await engine.get(name)).state is S.STOPPED
    assert await slots(engine, [key]) == []


async def test_error_keeps_key_and_stop_releases(engine: Engine, keyed, new_name) -> None:
    """A workflow in error keeps its key: another on the key cannot run (WorkflowLocked
    naming the holder); stopping the holder frees it."""
    queue, key = new_name("q"), new_name("cluster")
    failing = await keyed(queue, [key], steps=["fail"])
    waiter = await keyed(queue, [key])
    with pytest.raises(Exception, match="boom"):
        await engine.run(failing)
    assert (await engine.get(failing)).state is S.ERROR
    assert await slots(engine, [key]) == [(key, 0, failing)]

    with pytest.raises(WorkflowLocked, match=rf"{key}.*{failing} \(error\)"):
        await engine.run(waiter)
    assert (await engine.get(waiter)).state is S.PENDING  # the claim was rolled back

    await engine.stop(failing, reason="given up")
    assert await slots(engine, [key]) == []
    await engine.run(waiter)
    assert (await engine.get(waiter)).state is S.COMPLETED


async def test_paused_keeps_key_and_delete_releases(engine: Engine, keyed, new_name) -> None:
    """A workflow paused at a gate keeps its key (pending again after resume, it still
    holds it); deleting it frees the key by the foreign key's cascade."""
    queue, key = new_name("q"), new_name("cluster")
    gated = await keyed(queue, [key], steps=[{"step": "pause", "args": {"prompt": "ok?"}}, "noop"])
    with pytest.raises(Exception, match="paused"):
        await engine.run(gated)
    assert (await engine.get(gated)).state is S.PAUSED
    assert await slots(engine, [key]) == [(key, 0, gated)]
    await engine.resume(gated)
    assert await slots(engine, [key]) == [(key, 0, gated)]
    # Pending again, holding its key: a claim takes it without asking for the key anew.
    assert names((await claim(engine, queue)).rows) == [gated]

    async with engine.db.transaction() as conn:  # hand it back, as a shutdown would
        await conn.execute(
            workflows.update().where(W.name == gated).values(state="paused", claimed_by=None)
        )
    await engine.delete(gated)
    assert await slots(engine, [key]) == []


async def test_operator_releases_a_key(engine: Engine, keyed, new_name) -> None:
    """`release_lock` frees the key of a workflow in error, records `lock_released` with
    the actor and reason on the holder, and refuses a key nobody holds."""
    queue, key = new_name("q"), new_name("cluster")
    failing = await keyed(queue, [key], steps=["fail"])
    with pytest.raises(Exception, match="boom"):
        await engine.run(failing)

    freed = await engine.release_lock(key, workflow=failing, reason="checked db1 by hand")

    assert [(h.key, h.slot, h.workflow, h.state) for h in freed] == [(key, 0, failing, S.ERROR)]
    assert await slots(engine, [key]) == []
    [event] = [e for e in await engine.history(failing) if e.kind == "lock_released"]
    assert (event.actor, event.reason) == ("tester@host", "checked db1 by hand")
    assert event.detail == {"key": key, "slot": 0, "state": "error"}
    with pytest.raises(InvalidTransition, match="not held"):
        await engine.release_lock(key, reason="again")


async def test_locks_listing(engine: Engine, keyed, new_name) -> None:
    """`Engine.locks` lists a held key with its limit, holder and the pending workflows
    waiting for it."""
    queue, key = new_name("q"), new_name("cluster")
    holder = await keyed(queue, [key])
    waiter = await keyed(queue, [key])
    await claim(engine, queue)

    [status] = [s for s in await engine.locks() if s.key == key]

    assert status.limit == 1
    assert [(h.workflow, h.state) for h in status.holders] == [(holder, S.RUNNING)]
    assert status.waiting == [waiter]
    assert status.to_json()["held"] == 1


HOSTILE = {
    "object": '{"key": "cluster:db1"}',
    "numbers": "[1, 2, 3]",
    "string": '"cluster:db1"',
    "empty key": '[""]',
    "long key": json.dumps(["k" * 300]),
    "many keys": json.dumps([f"k{i}" for i in range(5000)]),
    "huge key": json.dumps(["x" * 200_000]),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
async def test_hostile_locks_value_goes_to_error(engine: Engine, new_name, kind: str) -> None:
    """A `locks` value that is no list of key names (plain-SQL INSERT) sends that workflow
    alone to error with a bounded message naming `locks`; a good workflow claimed beside
    it runs."""
    queue, key = new_name("q"), new_name("cluster")
    bad, good = new_name("bad"), new_name("good")
    async with engine.db.transaction() as conn:
        await conn.execute(
            text(
                "INSERT INTO workflows (name, steps, context, queue, locks) "
                "VALUES (:name, :steps, '{}', :queue, :locks)"
            ),
            [
                {"name": bad, "steps": '["noop"]', "queue": queue, "locks": HOSTILE[kind]},
                {"name": good, "steps": '["noop"]', "queue": queue, "locks": json.dumps([key])},
            ],
        )
    try:
        taken = await claim(engine, queue)
        assert sorted(names(taken.rows)) == sorted([bad, good])
        await _release_to_pending(engine, [bad, good])
        with pytest.raises(InvalidDefinition, match="locks"):
            await engine.run(bad)
        await engine.run(good)

        row = (await engine.get(bad)).row
        assert row.state is S.ERROR
        assert row.last_error is not None
        assert "`locks` must be a JSON list" in row.last_error
        assert len(row.last_error) < 500
        assert (await engine.get(good)).state is S.COMPLETED
        shown = (await engine.get(bad)).keys
        assert shown is not None
        assert shown.invalid is not None
    finally:
        async with engine.db.transaction() as conn:
            await conn.execute(delete(workflows).where(W.queue == queue))


async def test_locks_not_json_on_sqlite_goes_to_error(
    sqlite_url: str, make_engine: Callable[..., Engine], new_name
) -> None:
    """SQLite stores any text in a JSON column: `locks` that is not JSON at all sends its
    workflow to error saying so, and the claim beside it is not disturbed."""
    engine = make_engine(sqlite_url)
    queue, name = new_name("q"), new_name("bad")
    async with engine.db.transaction() as conn:
        await conn.execute(
            text(
                "INSERT INTO workflows (name, steps, context, queue, locks) "
                "VALUES (:name, '[\"noop\"]', '{}', :queue, 'not json [')"
            ),
            {"name": name, "queue": queue},
        )
    try:
        assert names((await claim(engine, queue)).rows) == [name]
        await _release_to_pending(engine, [name])
        with pytest.raises(InvalidDefinition, match="not valid JSON"):
            await engine.run(name)
        assert (await engine.get(name)).state is S.ERROR
    finally:
        async with engine.db.transaction() as conn:
            await conn.execute(delete(workflows).where(W.queue == queue))


async def _release_to_pending(engine: Engine, names_: list[str]) -> None:
    """Hand claimed workflows back (as a daemon's shutdown does) for `Engine.run`."""
    async with engine.db.transaction() as conn:
        await conn.execute(
            workflows.update()
            .where(W.name.in_(names_))
            .values(state="pending", claimed_by=None, lease_expires_at=None)
        )


async def test_create_refuses_bad_keys(engine: Engine, new_name) -> None:
    """`create_workflow` checks the keys before writing anything."""
    name = new_name("k")
    with pytest.raises(InvalidDefinition, match="element 1"):
        await engine.create_workflow(name, {}, ["noop"], locks=["ok", 7])  # type: ignore[list-item]
    with pytest.raises(InvalidDefinition, match="at most 32"):
        await engine.create_workflow(name, {}, ["noop"], locks=[f"k{i}" for i in range(33)])
    with pytest.raises(Exception, match="no workflow"):
        await engine.get(name)
