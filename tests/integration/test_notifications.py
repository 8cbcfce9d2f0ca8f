"""The notifier's passes (`Notifier.run_once`) on the real databases, against a local HTTP
receiver: one POST per (event, webhook), its body, retries and their backoff, failing and
hanging webhooks, several notifiers at once, events committed out of id order, and a new
webhook that is not sent the history."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from notify_receiver import GATED, HANG, Receiver, eventually, receiving
from sqlalchemy import delete, event, insert, select, update
from structlog.testing import capture_logs

from wfed import Engine, StepError, WorkflowHalted
from wfed.clock import utc_now
from wfed.config import NotifyConfig, WebhookConfig
from wfed.daemon.notifier import Notifier
from wfed.metrics import Metrics
from wfed.store import claims
from wfed.store import steps as step_store
from wfed.store.database import Database
from wfed.store.notifications import DeliveryRow
from wfed.store.schema import (
    notification_cursors,
    notification_deliveries,
    workflow_events,
    workflows,
)


class ShiftedClock:
    """The real time moved on by `ahead`, which a test advances instead of waiting."""

    def __init__(self) -> None:
        self.ahead = timedelta()

    def __call__(self) -> datetime:
        return utc_now() + self.ahead


class Ticker:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as server:
        yield server


class Setup:
    """Webhooks and notifiers of one test: its own queue and webhook names, so the events
    of other tests sharing the database are never its concern."""

    def __init__(self, engine: Engine, receiver: Receiver, url: str) -> None:
        self.engine = engine
        self.receiver = receiver
        self.url = url
        self.queue = f"nq-{uuid.uuid4().hex[:10]}"
        self.tag = uuid.uuid4().hex[:8]
        self.targets: list[str] = []
        self.clock = ShiftedClock()
        self.ticker = Ticker()
        self.databases: list[Database] = []

    def hook(self, name: str, **options: Any) -> WebhookConfig:
        target = f"{name}-{self.tag}"
        self.targets.append(target)
        options.setdefault("queues", [self.queue])
        options.setdefault("backoff", 5.0)
        return WebhookConfig(name=target, url=self.receiver.url(f"/{target}"), **options)

    def notifier(
        self, *hooks: WebhookConfig, daemon_id: str = "notifier-1", **options: Any
    ) -> Notifier:
        """A notifier on a connection pool of its own (as another daemon would have)."""
        db = Database(self.url)
        self.databases.append(db)
        return Notifier(
            db,
            NotifyConfig(webhooks=list(hooks)),
            daemon_id=daemon_id,
            metrics=options.pop("metrics", Metrics()),
            clock=self.clock,
            monotonic=self.ticker,
            **options,
        )

    async def workflow(self, steps: list[Any], context: dict[str, Any] | None = None) -> str:
        name = f"wf-{uuid.uuid4().hex[:12]}"
        await self.engine.create_workflow(name, context, steps, queue=self.queue)
        return name

    async def failed_workflow(self, message: str = "disk full") -> str:
        name = await self.workflow([{"step": "fail", "args": {"message": message}}])
        with pytest.raises(StepError):
            await self.engine.run(name)
        return name

    async def deliveries(self, target: str) -> list[DeliveryRow]:
        async with self.engine.db.transaction() as conn:
            rows = await conn.execute(
                select(notification_deliveries)
                .where(notification_deliveries.c.target == target)
                .order_by(notification_deliveries.c.id)
            )
            return [DeliveryRow.from_mapping(row) for row in rows.mappings()]

    async def cleanup(self) -> None:
        for db in self.databases:
            await db.dispose()
        if self.targets:
            async with self.engine.db.transaction() as conn:
                await conn.execute(
                    delete(notification_deliveries).where(
                        notification_deliveries.c.target.in_(self.targets)
                    )
                )
                await conn.execute(
                    delete(notification_cursors).where(
                        notification_cursors.c.target.in_(self.targets)
                    )
                )


@pytest.fixture
async def setup(engine: Engine, receiver: Receiver, database_url: str) -> AsyncIterator[Setup]:
    made = Setup(engine, receiver, database_url)
    yield made
    await made.cleanup()


def counted(metrics: Metrics, webhook: str, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "wfed_notifications_total", {"webhook": webhook, "outcome": outcome}
    )
    return value or 0.0


async def test_a_failed_workflow_is_posted_once_with_what_happened(setup: Setup) -> None:
    """A workflow that errors is POSTed once to the webhook, as a JSON document naming the
    workflow, its state, the step, the error and the actor; a second pass sends nothing."""
    hook = setup.hook("errors", events=["error"])
    notifier = setup.notifier(hook)
    await notifier.run_once()  # the webhook's cursor starts here
    name = await setup.failed_workflow("disk full")

    done = await notifier.run_once()
    assert [s.outcome for s in done.sent] == ["sent"]
    await notifier.run_once()

    bodies = setup.receiver.to(f"/{hook.name}")
    assert len(bodies) == 1
    body = bodies[0]
    assert body["workflow"] == name
    assert body["event"] == body["kind"] == "error"
    assert body["state"] == "error"
    assert body["queue"] == setup.queue
    assert body["position"] == 0
    assert body["step"] == "fail"
    assert "disk full" in body["reason"]
    assert body["actor"] == setup.engine.actor
    assert body["webhook"] == hook.name
    assert body["text"].startswith(f"wfed: workflow {name!r} failed at step 0 'fail': ")
    history = await setup.engine.history(name)
    assert body["id"] == next(e.id for e in history if e.kind == "error")
    [row] = await setup.deliveries(hook.name)
    assert (row.state, row.attempts, row.claimed_by) == ("sent", 1, None)
    assert row.sent_at is not None


async def test_slack_format_posts_one_text_line(setup: Setup) -> None:
    """A `slack` webhook gets {"text": …}: the one-line account of the event."""
    hook = setup.hook("slack", events=["error"], format="slack")
    notifier = setup.notifier(hook)
    await notifier.run_once()
    name = await setup.failed_workflow("no space left")
    await notifier.run_once()

    [body] = setup.receiver.to(f"/{hook.name}")
    assert set(body) == {"text"}
    assert body["text"].startswith(f"wfed: workflow {name!r} failed at step 0 'fail': ")
    assert "no space left" in body["text"]
    assert body["text"].endswith(f"(by {setup.engine.actor})")


async def test_only_the_events_and_queues_asked_for(setup: Setup) -> None:
    """A webhook is told only of the events it names, of workflows in its queues; a pause
    step's gate answers to both `paused` and `gate`."""
    completed = setup.hook("done", events=["completed"])
    gates = setup.hook("gates", events=["gate"])
    elsewhere = setup.hook("other-queue", events=["error", "completed"], queues=["nowhere"])
    notifier = setup.notifier(completed, gates, elsewhere)
    await notifier.run_once()
    done = await setup.workflow(["noop"])
    await setup.engine.run(done)
    gated = await setup.workflow([{"step": "pause", "args": {"prompt": "approve?"}}, "noop"])
    with pytest.raises(WorkflowHalted):
        await setup.engine.run(gated)
    await setup.failed_workflow()
    await notifier.run_once()

    assert [b["workflow"] for b in setup.receiver.to(f"/{completed.name}")] == [done]
    [gate] = setup.receiver.to(f"/{gates.name}")
    assert (gate["workflow"], gate["event"], gate["state"]) == (gated, "gate", "paused")
    assert gate["reason"] == "approve?"
    assert setup.receiver.to(f"/{elsewhere.name}") == []


async def test_operator_stop_is_notified(setup: Setup) -> None:
    """A stop made by an operator (no daemon involved) is found and sent by the next pass,
    naming the operator and the reason."""
    hook = setup.hook("stops", events=["stopped"])
    notifier = setup.notifier(hook)
    await notifier.run_once()
    name = await setup.workflow(["noop"])
    await setup.engine.stop(name, reason="change freeze")
    await notifier.run_once()

    [body] = setup.receiver.to(f"/{hook.name}")
    assert (body["workflow"], body["state"], body["reason"]) == (name, "stopped", "change freeze")
    assert body["actor"] == setup.engine.actor


async def test_a_new_webhook_is_not_sent_the_history(setup: Setup) -> None:
    """Events from before a webhook's first pass are never sent to it; later ones are."""
    hook = setup.hook("fresh", events=["error"])
    await setup.failed_workflow("before")
    notifier = setup.notifier(hook)
    assert (await notifier.run_once()).sent == []
    after = await setup.failed_workflow("after")
    await notifier.run_once()
    assert [b["workflow"] for b in setup.receiver.to(f"/{hook.name}")] == [after]


async def test_two_notifiers_deliver_each_event_once(setup: Setup) -> None:
    """Two notifiers (two daemons' connections) passing at the same time over the same
    events: each event is POSTed once, and recorded once."""
    hook = setup.hook("pair", events=["error", "completed"])
    first = setup.notifier(hook, daemon_id="notifier-a")
    second = setup.notifier(hook, daemon_id="notifier-b")
    await first.run_once()
    await second.run_once()
    names = [await setup.failed_workflow(f"e{i}") for i in range(4)]
    for _ in range(4):
        name = await setup.workflow(["noop"])
        await setup.engine.run(name)
        names.append(name)

    for _ in range(3):
        await asyncio.gather(first.run_once(), second.run_once())

    bodies = setup.receiver.to(f"/{hook.name}")
    assert sorted(b["workflow"] for b in bodies) == sorted(names)
    assert len({b["id"] for b in bodies}) == len(names)
    rows = await setup.deliveries(hook.name)
    assert len(rows) == len(names)
    assert {r.state for r in rows} == {"sent"}


async def test_a_500_is_retried_after_its_backoff_then_sent(setup: Setup) -> None:
    """A webhook answering 500 is tried again once its backoff (reckoned from the
    notifier's clock) has passed, and the delivery is then sent; its metrics count it."""
    hook = setup.hook("flaky", events=["error"], retries=3, backoff=7.0)
    setup.receiver.script(f"/{hook.name}", 500)
    metrics = Metrics()
    notifier = setup.notifier(hook, metrics=metrics)
    await notifier.run_once()
    await setup.failed_workflow()

    first = await notifier.run_once()
    assert [s.outcome for s in first.sent] == ["retried"]
    [row] = await setup.deliveries(hook.name)
    assert (row.state, row.attempts) == ("pending", 1)
    assert row.last_error == "HTTP 500: receiver says no"
    assert row.next_attempt_at is not None
    assert (await notifier.run_once()).sent == []  # not due yet

    setup.clock.ahead = row.next_attempt_at - utc_now() + timedelta(seconds=1)
    second = await notifier.run_once()
    assert [s.outcome for s in second.sent] == ["sent"]
    assert len(setup.receiver.to(f"/{hook.name}")) == 2
    [row] = await setup.deliveries(hook.name)
    assert (row.state, row.attempts) == ("sent", 2)
    assert counted(metrics, hook.name, "retried") == 1
    assert counted(metrics, hook.name, "sent") == 1


async def test_backoff_doubles_from_the_notifier_clock(setup: Setup) -> None:
    """Each retry waits twice the one before, from the time the failure was written."""
    hook = setup.hook("doubling", events=["error"], retries=5, backoff=3.0)
    setup.receiver.script(f"/{hook.name}", 500, 500, 500)
    frozen = utc_now()
    setup.clock.ahead = timedelta()
    notifier = setup.notifier(hook)
    notifier.clock = lambda: frozen + setup.clock.ahead
    await notifier.run_once()
    await setup.failed_workflow()
    waits = []
    for _ in range(3):
        await notifier.run_once()
        [row] = await setup.deliveries(hook.name)
        assert row.next_attempt_at is not None
        now = frozen + setup.clock.ahead
        waits.append((row.next_attempt_at - now).total_seconds())
        setup.clock.ahead = row.next_attempt_at - frozen
    assert waits == [3.0, 6.0, 12.0]


async def test_a_webhook_that_always_fails_ends_failed_and_spares_the_rest(
    setup: Setup,
) -> None:
    """A webhook refusing every POST: `failed` after 1 + retries tries, with its last
    error, counted in the metrics; another webhook's delivery of the same event is sent,
    and the workflow is as the failure left it."""
    broken = setup.hook("broken", events=["error"], retries=2, backoff=0.0)
    healthy = setup.hook("healthy", events=["error"])
    setup.receiver.script(f"/{broken.name}", 503, 503, 503)
    metrics = Metrics()
    notifier = setup.notifier(broken, healthy, metrics=metrics)
    await notifier.run_once()
    name = await setup.failed_workflow()

    outcomes = []
    for _ in range(4):
        outcomes += [(s.target, s.outcome) for s in (await notifier.run_once()).sent]
    assert outcomes.count((broken.name, "retried")) == 2
    assert outcomes.count((broken.name, "failed")) == 1
    assert outcomes.count((healthy.name, "sent")) == 1
    assert len(setup.receiver.to(f"/{broken.name}")) == 3
    [row] = await setup.deliveries(broken.name)
    assert (row.state, row.attempts) == ("failed", 3)
    assert row.last_error == "HTTP 503: receiver says no"
    assert counted(metrics, broken.name, "failed") == 1
    assert counted(metrics, broken.name, "retried") == 2
    assert counted(metrics, healthy.name, "sent") == 1
    assert (await setup.engine.get(name)).state == "error"


async def test_a_hanging_webhook_times_out_and_ends_failed(setup: Setup) -> None:
    """A webhook that never answers is cut at its timeout; without retries the delivery
    is `failed`, saying so, while another webhook's delivery is sent in the same pass."""
    hanging = setup.hook("hanging", events=["error"], retries=0, timeout=0.3)
    healthy = setup.hook("beside", events=["error"])
    setup.receiver.script(f"/{hanging.name}", HANG)
    metrics = Metrics()
    notifier = setup.notifier(hanging, healthy, metrics=metrics)
    await notifier.run_once()
    await setup.failed_workflow()

    done = await notifier.run_once()
    assert sorted((s.target, s.outcome) for s in done.sent) == sorted(
        [(hanging.name, "failed"), (healthy.name, "sent")]
    )
    [row] = await setup.deliveries(hanging.name)
    assert (row.state, row.last_error) == ("failed", "no answer within 0.3 s")
    assert counted(metrics, hanging.name, "failed") == 1


async def test_a_claim_that_expired_is_taken_over(setup: Setup) -> None:
    """A delivery claimed by a daemon that died before sending is sent by another once
    the claim has expired, not before."""
    hook = setup.hook("takeover", events=["error"])
    first = setup.notifier(hook, daemon_id="dies")
    second = setup.notifier(hook, daemon_id="survives")
    await first.run_once()
    await second.run_once()
    await setup.failed_workflow()
    await first.record()
    async with first.db.transaction() as conn:  # the claim the dead daemon left behind
        from wfed.store import notifications as store  # noqa: PLC0415

        now = setup.clock()
        claimed = await store.deliveries_claim(
            conn,
            [hook.name],
            owner="dies",
            now=now,
            until=now + timedelta(seconds=40),
            limit=10,
            skip_locked=first.db.supports_skip_locked,
        )
    assert len(claimed) == 1
    assert (await second.run_once()).sent == []
    setup.clock.ahead = timedelta(seconds=41)
    assert [s.outcome for s in (await second.run_once()).sent] == ["sent"]
    assert len(setup.receiver.to(f"/{hook.name}")) == 1


async def test_a_claim_lasts_the_webhooks_timeout_and_the_claim_margin(setup: Setup) -> None:
    """A delivery under way is claimed for the webhook's timeout plus the notifier's
    claim margin (a daemon passes its lease): a dead claimer's delivery waits no longer."""
    hook = setup.hook("claim-length", events=["error"], timeout=3, retries=0)
    setup.receiver.script(f"/{hook.name}", HANG)
    notifier = setup.notifier(hook, daemon_id="claimer", claim_margin=7.0, final_grace=0.0)
    await notifier.run_once()
    await setup.failed_workflow()
    await notifier.record()
    before = setup.clock()
    await notifier.deliver(wait=False)
    after = setup.clock()
    await eventually(lambda: setup.receiver.hanging == 1, what="the POST under way")
    [row] = await setup.deliveries(hook.name)
    assert row.claimed_by == "claimer"
    assert row.claimed_until is not None
    # Whole seconds either way: a backend may keep no fraction of a second.
    length = timedelta(seconds=3 + 7)
    second = timedelta(seconds=1)
    assert before + length - second <= row.claimed_until <= after + length + second
    await notifier.close()


async def test_an_event_committed_out_of_id_order_is_not_skipped(setup: Setup) -> None:
    """An event whose transaction commits after a later event was read (its id lower) is
    still delivered; the stored cursor waits below it until it settles."""
    if setup.engine.db.backend == "sqlite":
        pytest.skip("SQLite has one writer at a time: ids commit in their order")
    hook = setup.hook("late", events=["error"])
    notifier = setup.notifier(hook, settle=30.0)
    await notifier.run_once()
    early = await setup.workflow(["noop"])
    late = await setup.workflow(["noop"])
    early_row = (await setup.engine.get(early)).row
    late_row = (await setup.engine.get(late)).row

    def event(row: Any, reason: str) -> dict[str, Any]:
        return {
            "workflow_id": row.id,
            "workflow_name": row.name,
            "kind": "error",
            "actor": "sql@host",
            "at": utc_now(),
            "reason": reason,
        }

    async with setup.engine.db.engine.connect() as held:
        transaction = await held.begin()
        result = await held.execute(insert(workflow_events).values(event(early_row, "early")))
        early_id = result.inserted_primary_key[0]
        async with setup.engine.db.transaction() as conn:
            await conn.execute(insert(workflow_events).values(event(late_row, "late")))
        await notifier.run_once()
        assert [b["reason"] for b in setup.receiver.to(f"/{hook.name}")] == ["late"]
        await transaction.commit()
    await notifier.run_once()
    assert [b["reason"] for b in setup.receiver.to(f"/{hook.name}")] == ["late", "early"]
    async with setup.engine.db.transaction() as conn:
        cursor = await conn.scalar(
            select(notification_cursors.c.event_id).where(
                notification_cursors.c.target == hook.name
            )
        )
    assert cursor is not None
    assert cursor >= early_id


async def test_a_missing_id_holds_the_cursor_until_it_settles(setup: Setup) -> None:
    """An id that never commits (a rolled-back INSERT) keeps the stored cursor below it
    until it has been missing for `settle` seconds of the notifier's clock; meanwhile
    the events above it are delivered."""
    if setup.engine.db.backend == "sqlite":
        pytest.skip("SQLite hands a rolled-back id out again: it leaves no gap")
    hook = setup.hook("gap", events=["error"])
    notifier = setup.notifier(hook, settle=30.0)
    await notifier.run_once()
    row = (await setup.engine.get(await setup.workflow(["noop"]))).row
    values = {
        "workflow_id": row.id,
        "workflow_name": row.name,
        "kind": "error",
        "actor": "sql@host",
        "at": utc_now(),
    }
    async with setup.engine.db.engine.connect() as conn:
        transaction = await conn.begin()
        result = await conn.execute(insert(workflow_events).values(values))
        missing = result.inserted_primary_key[0]
        await transaction.rollback()
    async with setup.engine.db.transaction() as conn:
        await conn.execute(insert(workflow_events).values({**values, "reason": "above"}))

    async def cursor() -> int:
        async with setup.engine.db.transaction() as conn:
            value = await conn.scalar(
                select(notification_cursors.c.event_id).where(
                    notification_cursors.c.target == hook.name
                )
            )
        return int(value)

    await notifier.run_once()
    assert [b["reason"] for b in setup.receiver.to(f"/{hook.name}")] == ["above"]
    assert await cursor() == missing - 1
    setup.ticker.now += 31.0
    await notifier.run_once()
    assert await cursor() > missing


async def test_a_restarted_notifier_sends_what_the_dead_one_recorded(setup: Setup) -> None:
    """Deliveries recorded by a daemon that died before sending are sent by the next
    notifier (a daemon started again reads from the stored cursor, not from now)."""
    hook = setup.hook("restart", events=["error"])
    dead = setup.notifier(hook, daemon_id="dead")
    await dead.run_once()
    first = await setup.failed_workflow("one")
    await dead.record()  # recorded, never sent
    second = await setup.failed_workflow("two")  # committed, never read by it
    fresh = setup.notifier(hook, daemon_id="fresh")
    await fresh.run_once()
    assert sorted(b["workflow"] for b in setup.receiver.to(f"/{hook.name}")) == sorted(
        [first, second]
    )


async def test_the_post_carries_the_configured_headers(setup: Setup) -> None:
    """Headers of the webhook's config (an Authorization token) go with every POST."""
    hook = setup.hook("auth", events=["error"], headers={"Authorization": "Bearer s3cret"})
    notifier = setup.notifier(hook)
    await notifier.run_once()
    await setup.failed_workflow()
    await notifier.run_once()
    await eventually(lambda: setup.receiver.to(f"/{hook.name}"), what="the POST")
    [request] = [r for r in setup.receiver.requests if r.path == f"/{hook.name}"]
    assert request.headers["Authorization"] == "Bearer s3cret"
    assert request.headers["Content-Type"] == "application/json"


async def test_old_sent_and_failed_deliveries_are_pruned(setup: Setup) -> None:
    """Deliveries sent or failed longer than `[notify] keep` ago are deleted; one still to
    be retried is kept however old."""
    sent = setup.hook("pruned-sent", events=["error"])
    failing = setup.hook("pruned-failed", events=["error"], retries=0)
    retrying = setup.hook("kept-pending", events=["error"], retries=5, backoff=3600.0)
    setup.receiver.script(f"/{failing.name}", 500)
    setup.receiver.script(f"/{retrying.name}", 500)
    notifier = setup.notifier(sent, failing, retrying)
    await notifier.run_once()
    await setup.failed_workflow()
    await notifier.run_once()
    await notifier.prune()  # nothing of this test's is a week old yet
    for target in (sent.name, failing.name, retrying.name):
        assert len(await setup.deliveries(target)) == 1

    setup.clock.ahead = timedelta(days=7, hours=1)
    assert await notifier.prune() >= 2
    assert await setup.deliveries(sent.name) == []
    assert await setup.deliveries(failing.name) == []
    [kept] = await setup.deliveries(retrying.name)
    assert kept.state == "pending"


async def test_an_interrupted_step_is_notified(setup: Setup) -> None:
    """A non-idempotent step found cut off by its owner's death: the webhook asking for
    `interrupted` and `error` is told of both events, each saying the workflow is in
    error at that step."""
    hook = setup.hook("crashes", events=["interrupted", "error"])
    notifier = setup.notifier(hook)
    await notifier.run_once()
    name = await setup.workflow([{"step": "record", "args": {"key": "k"}}, "noop"])
    row = (await setup.engine.get(name)).row
    long_ago = utc_now() - timedelta(seconds=120)
    async with setup.engine.db.transaction() as conn:  # its owner died in step 0
        assert await claims.workflow_claim_by_id(
            conn, row.id, owner="crashed-daemon", now=long_ago, lease=60
        )
        await step_store.step_start(conn, row.id, 0, long_ago)
    with pytest.raises(StepError, match="interrupted"):
        await setup.engine.run(name)
    await notifier.run_once()

    # Sent at once, they may arrive in either order: the events' ids order them.
    bodies = sorted(setup.receiver.to(f"/{hook.name}"), key=lambda body: body["id"])
    assert [(b["event"], b["state"], b["position"], b["step"]) for b in bodies] == [
        ("interrupted", "error", 0, "record"),
        ("error", "error", 0, "record"),
    ]
    assert bodies[0]["text"].startswith(
        f"wfed: workflow {name!r} had a step interrupted (not re-run) at step 0 'record'"
    )


async def test_a_hanging_webhook_holds_no_more_than_its_share(setup: Setup) -> None:
    """Six messages to a webhook that hangs: four are under way at once, and a message to
    another webhook is sent meanwhile; closing the notifier cuts the hung POSTs short and
    hands their deliveries back, unclaimed."""
    hanging = setup.hook("hogging", events=["error"], timeout=60, retries=0)
    healthy = setup.hook("meanwhile", events=["completed"])
    setup.receiver.script(f"/{hanging.name}", *[HANG] * 6)
    notifier = setup.notifier(hanging, healthy, final_grace=0.0)
    await notifier.run_once()
    for i in range(6):
        await setup.failed_workflow(f"e{i}")
    await notifier.record()
    await notifier.deliver(wait=False)
    await eventually(lambda: setup.receiver.hanging == 4, what="four hung POSTs")

    done = await setup.workflow(["noop"])
    await setup.engine.run(done)
    await notifier.record()
    sent = await notifier.deliver(wait=True)
    assert [(s.target, s.outcome) for s in sent] == [(healthy.name, "sent")]
    assert len(setup.receiver.to(f"/{hanging.name}")) == 4

    await notifier.close()
    rows = await setup.deliveries(hanging.name)
    assert [(r.state, r.claimed_by) for r in rows] == [("pending", None)] * 6


async def test_a_stop_requested_with_sql_is_notified(setup: Setup) -> None:
    """`UPDATE workflows SET requested = 'stop'` on a pending workflow: the owner that
    would claim it stops it instead, recording the event, which is notified."""
    hook = setup.hook("sql-stop", events=["stopped"])
    notifier = setup.notifier(hook)
    await notifier.run_once()
    name = await setup.workflow(["noop"])
    async with setup.engine.db.transaction() as conn:
        await conn.execute(
            update(workflows).where(workflows.c.name == name).values(requested="stop")
        )
    with pytest.raises(WorkflowHalted):
        await setup.engine.run(name)
    await notifier.run_once()
    [body] = setup.receiver.to(f"/{hook.name}")
    assert (body["workflow"], body["state"], body["event"]) == (name, "stopped", "stopped")


LOCK_WAIT_SECONDS = 1
"""The notifier's sessions' lock wait limit in the lock-wait test."""


def short_lock_waits(db: Database) -> None:
    """Sessions of `db` give up a row lock wait after LOCK_WAIT_SECONDS (MariaDB error
    1205, PostgreSQL 55P03), as a session would under a busy server's own limit."""

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        statement = (
            f"SET lock_timeout = '{LOCK_WAIT_SECONDS}s'"
            if db.backend == "postgresql"
            else f"SET SESSION innodb_lock_wait_timeout = {LOCK_WAIT_SECONDS}"
        )
        cursor = dbapi_connection.cursor()
        cursor.execute(statement)
        cursor.close()

    event.listen(db.engine.sync_engine, "connect", on_connect)


async def test_an_outcome_write_that_waits_for_a_lock_is_retried_not_sent_again(
    setup: Setup,
) -> None:
    """Another session holds the delivery's row while the POST is answered: the write of
    `sent` gives up its lock wait, is tried again once the row is free, and the delivery
    is sent once and recorded as sent by this notifier (not left claimed, to be sent again
    by another daemon once the claim expires)."""
    if setup.engine.db.backend == "sqlite":
        pytest.skip("SQLite has no row locks: a writer waits for the file (busy_timeout)")
    hook = setup.hook("locked", events=["error"])
    setup.receiver.script(f"/{hook.name}", GATED)
    with capture_logs() as logs:
        notifier = setup.notifier(hook)
        short_lock_waits(notifier.db)
        await notifier.run_once()
        await setup.failed_workflow()
        await notifier.record()
        sending = asyncio.create_task(notifier.deliver(wait=True))
        await eventually(lambda: setup.receiver.to(f"/{hook.name}"), what="the POST")
        [row] = await setup.deliveries(hook.name)
        async with setup.engine.db.engine.connect() as blocker:
            await blocker.execute(
                select(notification_deliveries.c.id)
                .where(notification_deliveries.c.id == row.id)
                .with_for_update()
            )
            setup.receiver.gate.set()

            def retried() -> bool:
                return any(line["event"] == "transaction_retried" for line in logs)

            await eventually(retried, what="the outcome's write to give up a lock wait")
            await blocker.rollback()
        sent = await sending
    assert [s.outcome for s in sent] == ["sent"]
    assert len(setup.receiver.to(f"/{hook.name}")) == 1
    [row] = await setup.deliveries(hook.name)
    assert (row.state, row.attempts, row.claimed_by) == ("sent", 1, None)
