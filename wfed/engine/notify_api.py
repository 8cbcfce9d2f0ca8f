"""The Engine's notification operations: the deliveries recorded for the webhooks, and a
test message to one webhook (part of `wfed.Engine`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wfed.clock import Clock
from wfed.engine import views
from wfed.errors import WfedError
from wfed.store.database import Database

if TYPE_CHECKING:
    from wfed.config import WebhookConfig

DELIVERY_STATES = ("pending", "sent", "failed")


class Notifications:
    """`Engine.notifications` and `Engine.notify_test`."""

    db: Database
    actor: str
    clock: Clock

    async def notifications(
        self, *, state: str | None = None, limit: int = 100
    ) -> list[views.DeliveryView]:
        """Deliveries of events to webhooks, newest first (of one state: pending, sent,
        failed), each with its event's workflow and kind."""
        if state is not None and state not in DELIVERY_STATES:
            raise WfedError(f"no delivery state {state!r}: use one of {', '.join(DELIVERY_STATES)}")
        # The deliveries' store loads here: no other wfectl command reads it.
        from wfed.store import notifications as notification_store  # noqa: PLC0415

        async with self.db.transaction() as conn:
            rows = await notification_store.deliveries_list(conn, state=state, limit=limit)
            events = await notification_store.events_by_id(conn, [r.event_id for r in rows])
        found = []
        for row in rows:
            item = events.get(row.event_id)
            found.append(
                views.DeliveryView(
                    id=row.id,
                    webhook=row.target,
                    state=row.state,
                    attempts=row.attempts,
                    next_attempt_at=row.next_attempt_at,
                    claimed_by=row.claimed_by,
                    last_error=row.last_error,
                    created_at=row.created_at,
                    sent_at=row.sent_at,
                    event_id=row.event_id,
                    workflow=item.event.workflow_name if item else None,
                    kind=item.event.kind if item else None,
                    at=item.event.at if item else None,
                )
            )
        return found

    async def notify_test(self, hook: WebhookConfig) -> int:
        """POST a test message to `hook` now, in its format (nothing is recorded): the
        HTTP status, or WfedError saying why it failed."""
        # httpx loads here: no other wfectl command needs it.
        from wfed.engine import notifications, webhook  # noqa: PLC0415

        body = notifications.test_body(hook, actor=self.actor, at=self.clock())
        async with webhook.client() as http:
            try:
                return await webhook.post(http, hook, body)
            except webhook.WebhookFailed as exc:
                # Not its URL: a chat webhook's URL is its secret.
                raise WfedError(f"webhook {hook.name!r}: {exc}") from None
