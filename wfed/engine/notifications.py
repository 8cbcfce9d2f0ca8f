"""What a webhook is told, and about which events: pure functions over event rows.

A webhook asks for names of what happened (`[notify] webhooks.events`); each maps to
stored event kinds (`workflow_events.kind`, `EventKind`):

| name          | event kinds                        | the workflow is then          |
|---------------|------------------------------------|-------------------------------|
| `error`       | `error`, `invalid`                 | `error`                       |
| `paused`      | `paused` (operator, gate, window)  | `paused`                      |
| `gate`        | `paused` at a pause step's gate    | `paused`                      |
| `stopped`     | `stopped`                          | `stopped`                     |
| `completed`   | `completed`                        | `completed`                   |
| `interrupted` | `step_interrupted`                 | `running` (re-run) or `error` |
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from wfed.config import NotifyEventName, WebhookConfig
from wfed.engine.json_values import iso, jsonable
from wfed.states import EventKind, WorkflowState
from wfed.store.notifications import NotifiableEvent
from wfed.store.rows import EventRow

_NAMES_OF_KIND: dict[str, tuple[NotifyEventName, ...]] = {
    EventKind.ERROR: ("error",),
    EventKind.INVALID: ("error",),
    EventKind.PAUSED: ("paused",),
    EventKind.STOPPED: ("stopped",),
    EventKind.COMPLETED: ("completed",),
    EventKind.STEP_INTERRUPTED: ("interrupted",),
}

NOTIFIABLE_KINDS: frozenset[str] = frozenset(_NAMES_OF_KIND)
"""The event kinds any webhook may be told of."""

_STATE_AFTER: dict[str, WorkflowState] = {
    EventKind.ERROR: WorkflowState.ERROR,
    EventKind.INVALID: WorkflowState.ERROR,
    EventKind.PAUSED: WorkflowState.PAUSED,
    EventKind.STOPPED: WorkflowState.STOPPED,
    EventKind.COMPLETED: WorkflowState.COMPLETED,
}

TEXT_MAX = 1000
"""Characters of the reason quoted in the one-line text (Slack shows the whole message)."""


def names_of(event: EventRow) -> frozenset[NotifyEventName]:
    """The names a webhook may ask for that `event` answers to."""
    names: set[NotifyEventName] = set(_NAMES_OF_KIND.get(event.kind, ()))
    if event.kind == EventKind.PAUSED and event.detail.get("gate"):
        names.add("gate")
    return frozenset(names)


def wants(hook: WebhookConfig, item: NotifiableEvent) -> bool:
    """Whether `hook` is to be told of the event: one of its events, one of its queues.
    A workflow deleted before its event was read has no queue any more: only the
    webhooks of every queue are told."""
    if not names_of(item.event) & set(hook.events):
        return False
    return not hook.queues or item.queue in hook.queues


def state_after(event: EventRow) -> WorkflowState:
    """The state the event left the workflow in."""
    if event.kind == EventKind.STEP_INTERRUPTED:
        return WorkflowState.RUNNING if event.detail.get("rerun") else WorkflowState.ERROR
    return _STATE_AFTER.get(event.kind, WorkflowState.RUNNING)


def _name(event: EventRow) -> str:
    """The most telling name of the event (`gate` rather than `paused`)."""
    names = names_of(event)
    if "gate" in names:
        return "gate"
    return next(iter(sorted(names)), event.kind)


def _step_words(event: EventRow, step: str | None) -> str:
    if event.position is None:
        return ""
    named = f" {step!r}" if step else ""
    return f" at step {event.position}{named}"


def text(item: NotifiableEvent) -> str:
    """One line for people: what happened to which workflow, where, why, by whom."""
    event = item.event
    where = _step_words(event, item.step)
    what = {
        "error": "failed",
        "gate": "paused at a gate",
        "paused": "paused",
        "stopped": "stopped",
        "completed": "completed",
        "interrupted": (
            "had a step interrupted (re-run)"
            if event.detail.get("rerun")
            else "had a step interrupted (not re-run)"
        ),
    }.get(_name(event), event.kind)
    line = f"wfed: workflow {event.workflow_name!r} {what}{where}"
    reason = " ".join((event.reason or "").split())
    if reason:
        cut = reason if len(reason) <= TEXT_MAX else reason[: TEXT_MAX - 1] + "…"
        line += f": {cut}"
    who = event.detail.get("requested_by") or event.actor
    return f"{line} (by {who})"


def payload(item: NotifiableEvent, *, webhook: str) -> dict[str, Any]:
    """The JSON document a `json` webhook receives (its keys are documented)."""
    event = item.event
    return {
        "id": event.id,
        "webhook": webhook,
        "event": _name(event),
        "kind": event.kind,
        "workflow": event.workflow_name,
        "workflow_id": event.workflow_id,
        "queue": item.queue,
        "state": state_after(event).value,
        "position": event.position,
        "step": item.step,
        "reason": event.reason,
        "actor": event.actor,
        "requested_by": event.detail.get("requested_by"),
        "at": iso(event.at),
        "detail": jsonable(event.detail),
        "text": text(item),
    }


def body(hook: WebhookConfig, item: NotifiableEvent) -> dict[str, Any]:
    """What is POSTed to `hook` about the event, in its format."""
    if hook.format == "slack":
        return {"text": text(item)}
    return payload(item, webhook=hook.name)


def test_body(hook: WebhookConfig, *, actor: str, at: datetime) -> dict[str, Any]:
    """The message of `wfectl notify test NAME`, in the webhook's format."""
    line = f"wfed: test message to webhook {hook.name!r} (by {actor})"
    if hook.format == "slack":
        return {"text": line}
    return {"id": None, "webhook": hook.name, "event": "test", "at": iso(at), "text": line}


def recipients(
    hooks: Iterable[WebhookConfig], item: NotifiableEvent, read_from: dict[str, int]
) -> list[str]:
    """The webhooks to be told of the event: those that want it and had not read past
    it before (`read_from`: how far each one's cursor was when this daemon started)."""
    return [
        hook.name
        for hook in hooks
        if item.event.id > read_from.get(hook.name, 0) and wants(hook, item)
    ]
