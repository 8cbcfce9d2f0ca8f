"""The notifier: a daemon's service that tells webhooks of workflow events
(docs/notifications.md).

A pass does two things, each a short transaction:

1. **Record.** Read the events committed since the last pass (`EventScan`: one range scan
   of the events' primary key, gaps asked for again until they settle), and INSERT a
   pending delivery per (event, webhook that wants it). The unique key (event_id, target)
   refuses a pair recorded already, by this daemon or another, so each event gets one
   delivery per webhook across the fleet. How far the events are read is stored per
   webhook (`notification_cursors`), so a daemon that died between a commit and its
   send, or a transition made by wfectl or plain SQL, is caught up by whichever daemon
   reads next.
2. **Deliver.** Claim due deliveries (`FOR UPDATE SKIP LOCKED`; a claim expires, so a
   dead daemon's are taken over), POST each in a task of its own with the webhook's
   timeout, and write the outcome under the claim: `sent`, due again after a backoff,
   or `failed` once the retries are spent.

The runners never wait for any of it: the daemon wakes the notifier when a workflow's
turn ended (committed), so the daemon that made a transition is normally the one that
sends it; otherwise the notifier polls every `[notify] poll_interval`. A webhook that
fails or hangs is logged and counted (`wfed_notifications_total`), never more.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import structlog

from wfed.clock import Clock, utc_now
from wfed.config import NotifyConfig, WebhookConfig
from wfed.daemon.loops import OUTAGE_BACKOFF_MAX, describe, ridden_out, ride_out, wait_any, wait_for
from wfed.engine import notifications
from wfed.engine.notify_scan import EventScan
from wfed.engine.webhook import WebhookFailed, client, post
from wfed.metrics import Metrics
from wfed.store import notifications as store
from wfed.store.database import Database, run_retrying
from wfed.store.faults import TRANSIENT, Fault, classify

if TYPE_CHECKING:
    import httpx

log = structlog.get_logger("wfed.daemon")

GAP_SETTLE = 60.0
"""Seconds a missing event id is waited for before the stored cursors pass it: longer
than any transaction that writes events lasts (a daemon's are cut at half a lease)."""
EVENT_BATCH = 500
"""Events read per pass at most (a pass reads on at once when it got that many)."""
IN_FLIGHT_MAX = 16
"""POSTs of one daemon under way at once."""
PER_WEBHOOK_MAX = 4
"""POSTs to one webhook under way at once: a webhook that hangs holds no more sending
slots than that, and the others' messages go on."""
CLAIM_MARGIN = 30.0
"""Seconds a claim outlives the webhook's timeout (the POST and the write of its outcome)
unless told otherwise; a daemon passes its lease: a claimer not heard of for that long is
taken for dead, like the owner of a workflow."""
FINAL_GRACE = 5.0
"""Seconds a stopping daemon waits for its POSTs under way (the rest are cut short and
handed back, for any daemon to send)."""
OUTAGE_RETRY_FIRST = 0.2
"""Seconds before the outcome of a POST is written again after an outage or a lost reply
(doubled each time)."""
PRUNE_INTERVAL = 3600.0
"""Seconds between two deletions of old deliveries by one daemon."""
PRUNE_BATCH = 1000
"""Deliveries deleted per transaction."""


@dataclass(frozen=True)
class Sent:
    """What became of one delivery a pass sent."""

    delivery_id: int
    target: str
    outcome: str
    """sent, retried, failed, or lost (the claim was taken over: nothing written)."""
    error: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What a POST of a claimed delivery came to, as its owner writes it."""

    delivery: store.DeliveryRow
    owner: str
    at: datetime
    error: str | None
    retry_at: datetime | None

    def landed_in(self, row: store.DeliveryRow | None) -> bool:
        """Whether `row`, read after a lost reply, holds this outcome's write (the claim
        let go, one attempt more, and this outcome's own time stamp)."""
        if row is None or row.claimed_by is not None:
            return False
        if row.attempts != self.delivery.attempts + 1:
            return False
        if self.error is None:
            return row.state == "sent" and row.sent_at == self.at
        return row.state != "sent" and row.next_attempt_at == self.retry_at


@dataclass(frozen=True)
class NotifierPass:
    """What one `run_once` did."""

    recorded: int
    sent: list[Sent]


class Notifier:
    """One daemon's notifier; `run_once()` for tests, `run()` in the daemon."""

    def __init__(
        self,
        db: Database,
        config: NotifyConfig,
        *,
        daemon_id: str,
        metrics: Metrics,
        clock: Clock = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        settle: float = GAP_SETTLE,
        batch: int = EVENT_BATCH,
        final_grace: float = FINAL_GRACE,
        claim_margin: float = CLAIM_MARGIN,
    ) -> None:
        self.db = db
        self.config = config
        self.hooks: dict[str, WebhookConfig] = {hook.name: hook for hook in config.webhooks}
        self.daemon_id = daemon_id
        self.metrics = metrics
        self.clock = clock
        self.monotonic = monotonic
        self.settle = settle
        self.batch = batch
        self.final_grace = final_grace
        self.claim_margin = claim_margin
        self.log = log.bind(daemon=daemon_id)
        self._woken = asyncio.Event()
        self._scan: EventScan | None = None
        self._read_from: dict[str, int] = {}
        """Each webhook's cursor when this notifier first read it: the events at or
        below were another notifier's to record (or history, for a new webhook)."""
        self._stored = 0
        self._sending: dict[int, tuple[str, asyncio.Task[Sent]]] = {}
        """Deliveries being POSTed: their webhook and their task."""
        self._http: httpx.AsyncClient | None = None
        self._pruned_at: float | None = None

    @property
    def targets(self) -> list[str]:
        return list(self.hooks)

    def wake(self) -> None:
        """A transition was committed: look for its events now, not at the next poll."""
        self._woken.set()

    # -- recording --------------------------------------------------------------------

    async def _open(self) -> EventScan:
        """Read the webhooks' cursors, making those missing at the newest event."""
        if not self.hooks:
            return EventScan(settled=0)
        async with self.db.transaction() as conn:
            cursors = await store.cursors_read(conn, self.targets)
            missing = [target for target in self.targets if target not in cursors]
            if missing:
                newest = await store.events_newest_id(conn)
                await store.cursors_create(conn, missing, newest, self.clock())
                cursors = await store.cursors_read(conn, self.targets)
        self._read_from = cursors
        self._stored = min(cursors.values())
        return EventScan(settled=self._stored)

    async def record(self) -> tuple[int, bool]:
        """Record the deliveries of the events committed since the last read: how many
        (event, webhook) pairs were offered, and whether more events wait to be read."""
        if self._scan is None:
            self._scan = await self._open()

        scan = self._scan.copy()
        now = self.clock()
        oldest = now - self.config.oldest()
        # The read is one statement on its own (an idle pass costs that one round trip);
        # the deliveries are then recorded in a transaction, and the scan adopted once it
        # committed. Reading an event twice is harmless: the unique key refuses it.
        async with self.db.autocommit() as conn:
            items = await store.events_after(
                conn, scan.read_to, also=scan.gaps_to_ask(), limit=self.batch
            )
        fresh = set(scan.take([i.event.id for i in items], self.monotonic(), self.settle))
        pairs = [
            (item.event.id, target)
            for item in items
            if item.event.id in fresh
            and item.event.kind in notifications.NOTIFIABLE_KINDS
            and isinstance(item.event.at, datetime)
            and item.event.at >= oldest
            for target in notifications.recipients(self.hooks.values(), item, self._read_from)
        ]
        if pairs or scan.settled > self._stored:

            async def write() -> None:
                async with self.db.transaction() as conn:
                    await store.deliveries_record(conn, pairs, now)
                    if scan.settled > self._stored:
                        await store.cursors_advance(conn, self.targets, scan.settled, now)

            await run_retrying(write)
        self._scan = scan
        self._stored = max(self._stored, scan.settled)
        return len(pairs), len(items) >= self.batch

    # -- delivering -------------------------------------------------------------------

    async def deliver(self, *, wait: bool = True) -> list[Sent]:
        """Claim the due deliveries (as many as free sending slots) and POST each in a
        task; with `wait`, wait for them and return what became of each."""
        free = IN_FLIGHT_MAX - len(self._sending)
        busy = Counter(target for target, _ in self._sending.values())
        open_to = {t: PER_WEBHOOK_MAX - busy[t] for t in self.targets if busy[t] < PER_WEBHOOK_MAX}
        if free <= 0 or not open_to:
            return []
        now = self.clock()
        async with self.db.autocommit() as conn:
            if not await store.deliveries_due(conn, list(open_to), now):
                return []
        longest = max(hook.timeout for hook in self.hooks.values())
        until = now + timedelta(seconds=longest + self.claim_margin)

        async def claim() -> tuple[list[store.DeliveryRow], dict[int, store.NotifiableEvent]]:
            claimed: list[store.DeliveryRow] = []
            async with self.db.transaction() as conn:
                # A claim per webhook (a few): each takes no more than its free slots.
                for target, slots in open_to.items():
                    claimed += await store.deliveries_claim(
                        conn,
                        [target],
                        owner=self.daemon_id,
                        now=now,
                        until=until,
                        limit=min(slots, free - len(claimed)),
                        skip_locked=self.db.supports_skip_locked,
                    )
                events = await store.events_by_id(conn, [d.event_id for d in claimed])
            return claimed, events

        claimed, events = await run_retrying(claim)
        tasks = []
        for delivery in claimed:
            item = events.get(delivery.event_id)
            task = asyncio.create_task(self._send(delivery, item, until))
            self._sending[delivery.id] = (delivery.target, task)
            task.add_done_callback(functools.partial(self._sent, delivery.id))
            tasks.append(task)
        if not wait or not tasks:
            return []
        return list(await asyncio.gather(*tasks))

    def _sent(self, delivery_id: int, _task: asyncio.Task[Sent]) -> None:
        self._sending.pop(delivery_id, None)

    async def _send(
        self, delivery: store.DeliveryRow, item: store.NotifiableEvent | None, until: datetime
    ) -> Sent:
        hook = self.hooks[delivery.target]
        attempt = delivery.attempts + 1
        error: str | None = None
        final = False
        workflow = item.event.workflow_name if item is not None else None
        if item is None:
            error, final = "its event was deleted before it was sent", True
        else:
            try:
                if self._http is None:
                    self._http = client()
                await post(self._http, hook, notifications.body(hook, item))
            except WebhookFailed as exc:
                error = str(exc)
            except Exception as exc:  # whatever went wrong, a message is never fatal
                self.log.exception("notification_crashed", webhook=hook.name)
                error = describe(exc)
        now = self.clock()
        retry_at = None
        if error is not None and not final and attempt <= hook.retries:
            delay = min(hook.backoff * 2 ** (attempt - 1), hook.backoff_max)
            retry_at = now + timedelta(seconds=delay)
        try:
            held = await self._record_outcome(
                Outcome(delivery, self.daemon_id, now, error, retry_at), until
            )
        except Exception as exc:
            # The database stayed away while the claim lasted (or a privilege is
            # missing): the claim expires and the delivery is tried again, so a POST that
            # went through may be sent twice, which the payload's `id` lets a receiver tell.
            self.log.warning("notification_unrecorded", webhook=hook.name, error=describe(exc))
            return Sent(delivery.id, hook.name, "lost", error)
        outcome = "sent" if error is None else "retried" if retry_at is not None else "failed"
        if not held:
            outcome = "lost"
        self._count(hook.name, outcome, delivery, workflow, attempt, error, retry_at, now)
        return Sent(delivery.id, hook.name, outcome, error)

    async def _record_outcome(self, outcome: Outcome, until: datetime) -> bool:
        """Write what became of a POST under this daemon's claim: whether the claim still
        held. A deadlock or a lock wait is tried again at once; an outage or a lost reply
        is waited out while the claim lasts (after that another daemon may send it
        again), and after a lost reply the row is read before anything is written again:
        the write may have landed."""
        delay = OUTAGE_RETRY_FIRST
        uncertain = False
        while True:
            try:
                if uncertain:
                    async with self.db.autocommit() as conn:
                        row = await store.delivery_read(conn, outcome.delivery.id)
                    if row is None or row.claimed_by != self.daemon_id:
                        return outcome.landed_in(row)
                    uncertain = False
                return bool(await run_retrying(functools.partial(self._write_outcome, outcome)))
            except Exception as exc:
                fault = classify(exc)
                if fault not in TRANSIENT:
                    raise
                if self.clock() + timedelta(seconds=delay) >= until:
                    raise
                uncertain = uncertain or fault is Fault.LOST_REPLY
                self.log.info("notification_outcome_retried", error=describe(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, OUTAGE_BACKOFF_MAX)

    async def _write_outcome(self, outcome: Outcome) -> bool:
        delivery_id, owner = outcome.delivery.id, outcome.owner
        async with self.db.transaction() as conn:
            if outcome.error is None:
                return await store.delivery_sent(conn, delivery_id, owner=owner, now=outcome.at)
            return await store.delivery_failed(
                conn, delivery_id, owner=owner, error=outcome.error, retry_at=outcome.retry_at
            )

    def _count(
        self,
        webhook: str,
        outcome: str,
        delivery: store.DeliveryRow,
        workflow: str | None,
        attempt: int,
        error: str | None,
        retry_at: datetime | None,
        now: datetime,
    ) -> None:
        where = {"webhook": webhook, "delivery": delivery.id, "workflow": workflow}
        if outcome == "lost":
            self.log.warning("notification_claim_lost", **where)
            return
        self.metrics.notifications.labels(webhook, outcome).inc()
        if outcome == "sent":
            self.log.info("notification_sent", attempt=attempt, **where)
        elif outcome == "retried" and retry_at is not None:
            self.log.warning(
                "notification_retry",
                attempt=attempt,
                error=error,
                retry_in=round((retry_at - now).total_seconds(), 3),
                **where,
            )
        else:
            self.log.error("notification_failed", attempts=attempt, error=error, **where)

    # -- keeping the table small --------------------------------------------------------

    async def prune(self) -> int:
        """Delete the deliveries sent or failed longer than `[notify] keep` ago, a batch
        at a time: how many went."""
        before = self.clock() - self.config.kept()
        pruned = 0
        while True:
            async with self.db.transaction() as conn:
                count = await store.deliveries_prune(conn, before, limit=PRUNE_BATCH)
            pruned += count
            if count < PRUNE_BATCH:
                break
        if pruned:
            self.log.info("notifications_pruned", count=pruned)
        return pruned

    async def _prune_now_and_then(self) -> None:
        now = self.monotonic()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_INTERVAL:
            return
        self._pruned_at = now
        await self.prune()

    # -- the service ------------------------------------------------------------------

    async def run_once(self) -> NotifierPass:
        """One pass: record the new events' deliveries (all of them), then send what is
        due and wait for the POSTs."""
        recorded = 0
        more = True
        while more:
            count, more = await self.record()
            recorded += count
        return NotifierPass(recorded, await self.deliver(wait=True))

    async def run(self, finished: asyncio.Event) -> None:
        """Pass after pass until `finished` (the daemon's drain is over), at once when
        woken, else every poll interval; then wait a little for the POSTs under way."""
        delay = self.config.poll_interval
        try:
            while not finished.is_set():
                self._woken.clear()
                try:
                    _, more = await self.record()
                    await self.deliver(wait=False)
                    await self._prune_now_and_then()
                except Exception as exc:
                    if ridden_out(exc):
                        delay = await ride_out(
                            self.log, self.metrics, "notify", exc, delay, finished
                        )
                        continue
                    # A table or a privilege missing (grants older than the notifications),
                    # or a bug: notifications are never a reason to stop running
                    # workflows. Said loudly, and tried again now and then.
                    self.log.exception("notify_failed", retry_in=OUTAGE_BACKOFF_MAX)
                    self.metrics.database_errors.labels(type(exc).__name__).inc()
                    await wait_for(finished, OUTAGE_BACKOFF_MAX)
                    continue
                delay = self.config.poll_interval
                if not more:
                    await wait_any(finished, self._woken, self.config.poll_interval)
        finally:
            await self.close()

    async def close(self) -> None:
        """Wait up to `final_grace` seconds for the POSTs under way, cancel the rest and hand
        their deliveries back (another daemon need not wait for the claims to expire),
        close."""
        if self._sending:
            tasks = [task for _, task in self._sending.values()]
            await asyncio.wait(tasks, timeout=self.final_grace)
        cut = list(self._sending)
        for _, task in list(self._sending.values()):
            task.cancel()
        if self._sending:
            await asyncio.wait([task for _, task in self._sending.values()])
        if cut:
            try:
                async with self.db.transaction() as conn:
                    await store.deliveries_release(conn, cut, owner=self.daemon_id)
            except Exception as exc:  # best effort: the claims expire anyway
                self.log.warning("notifications_unreleased", error=describe(exc))
        if self._http is not None:
            with contextlib.suppress(Exception):
                await self._http.aclose()
            self._http = None
