"""What a webhook is told and about which events, the `[notify]` config's checks, and the
event scan that reads ids committed out of order without skipping one (all pure)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from wfed.config import WebhookConfig, parse_config
from wfed.engine import notifications
from wfed.engine.notify_scan import EventScan
from wfed.errors import ConfigError
from wfed.store.notifications import NotifiableEvent
from wfed.store.rows import EventRow

AT = datetime(2026, 11, 30, 2, 40, 1, 123456)


def item(
    kind: str,
    *,
    position: int | None = 2,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
    queue: str | None = "default",
    step: str | None = "run_cmd",
    actor: str = "host1:4242",
) -> NotifiableEvent:
    event = EventRow(
        id=41,
        workflow_id=7,
        workflow_name="maint-42",
        position=position,
        kind=kind,
        actor=actor,
        at=AT,
        reason=reason,
        detail=detail or {},
    )
    return NotifiableEvent(event, queue, step)


def hook(**options: Any) -> WebhookConfig:
    options.setdefault("name", "oncall")
    options.setdefault("url", "https://hooks.example/x")
    return WebhookConfig(**options)


@pytest.mark.parametrize(
    ("kind", "detail", "names", "state"),
    [
        ("error", {}, {"error"}, "error"),
        ("invalid", {}, {"error"}, "error"),
        ("paused", {}, {"paused"}, "paused"),
        ("paused", {"gate": "pause"}, {"paused", "gate"}, "paused"),
        ("stopped", {}, {"stopped"}, "stopped"),
        ("completed", {}, {"completed"}, "completed"),
        ("step_interrupted", {"rerun": True}, {"interrupted"}, "running"),
        ("step_interrupted", {"rerun": False}, {"interrupted"}, "error"),
        ("claimed", {}, set(), "running"),
        ("resumed", {}, set(), "running"),
    ],
)
def test_event_kinds_map_to_the_names_webhooks_ask_for(
    kind: str, detail: dict[str, Any], names: set[str], state: str
) -> None:
    """Each stored kind answers to the documented names and leaves the documented state."""
    event = item(kind, detail=detail).event
    assert notifications.names_of(event) == names
    assert notifications.state_after(event) == state


def test_a_webhook_wants_its_events_in_its_queues() -> None:
    """Events and queues both filter; no queues means every queue; a deleted workflow's
    event (no queue known) goes only to webhooks of every queue."""
    errors = hook(events=["error"])
    assert notifications.wants(errors, item("error"))
    assert not notifications.wants(errors, item("completed"))
    narrow = hook(events=["error"], queues=["db"])
    assert not notifications.wants(narrow, item("error", queue="default"))
    assert notifications.wants(narrow, item("error", queue="db"))
    assert not notifications.wants(narrow, item("error", queue=None))
    assert notifications.wants(errors, item("error", queue=None))


def test_recipients_leave_out_events_at_or_below_a_webhook_cursor() -> None:
    """A webhook whose cursor was already past the event when read is not given it."""
    hooks = [hook(name="a", events=["error"]), hook(name="b", events=["error"])]
    assert notifications.recipients(hooks, item("error"), {"a": 40, "b": 41}) == ["a"]


def test_the_json_payload_says_what_happened() -> None:
    """The JSON body names the workflow, state, event, step, reason, actor and time."""
    body = notifications.body(
        hook(events=["error"]), item("error", reason="run_cmd failed: exit 1")
    )
    assert body == {
        "id": 41,
        "webhook": "oncall",
        "event": "error",
        "kind": "error",
        "workflow": "maint-42",
        "workflow_id": 7,
        "queue": "default",
        "state": "error",
        "position": 2,
        "step": "run_cmd",
        "reason": "run_cmd failed: exit 1",
        "actor": "host1:4242",
        "requested_by": None,
        "at": "2026-11-30T02:40:01.123Z",
        "detail": {},
        "text": "wfed: workflow 'maint-42' failed at step 2 'run_cmd': run_cmd failed: exit 1 "
        "(by host1:4242)",
    }


def test_slack_gets_one_line_naming_the_operator_of_a_request() -> None:
    """A stop honoured by a daemon names the operator who asked, not the daemon."""
    stopped = item(
        "stopped", reason="change freeze", detail={"requested_by": "alice@ops1"}, position=1
    )
    assert notifications.body(hook(format="slack"), stopped) == {
        "text": "wfed: workflow 'maint-42' stopped at step 1 'run_cmd': change freeze "
        "(by alice@ops1)"
    }


def test_text_of_a_gate_and_of_a_completion() -> None:
    """A gate says so with its prompt; a completion names no step."""
    gate = item("paused", reason="approve the restart?", detail={"gate": "pause"}, step=None)
    assert notifications.text(gate) == (
        "wfed: workflow 'maint-42' paused at a gate at step 2: approve the restart? (by host1:4242)"
    )
    done = item("completed", position=None)
    assert notifications.text(done) == "wfed: workflow 'maint-42' completed (by host1:4242)"


def test_a_long_reason_is_cut_in_the_text_line_and_kept_whole_in_json() -> None:
    """The one line stays readable; the JSON keeps the whole reason."""
    long = "x" * 5000
    body = notifications.payload(item("error", reason=long), webhook="oncall")
    assert body["reason"] == long
    assert len(body["text"]) < 1100
    assert "…" in body["text"]


@pytest.mark.parametrize(
    ("notify", "message"),
    [
        ({"webhooks": [{"name": "a", "url": "ftp://x"}]}, "[notify] webhooks.0.url"),
        ({"webhooks": [{"name": "a", "url": "http://x", "events": ["boom"]}]}, "events.0"),
        ({"webhooks": [{"name": "a", "url": "http://x", "format": "xml"}]}, "format"),
        ({"webhooks": [{"name": "a", "url": "http://x", "timeout": 0}]}, "timeout"),
        ({"webhooks": [{"name": "a", "url": "http://x", "retries": -1}]}, "retries"),
        ({"webhooks": [{"name": "a", "url": "http://x", "colour": 1}]}, "unknown key"),
        ({"webhooks": [{"url": "http://x"}]}, "webhooks.0.name"),
        (
            {"webhooks": [{"name": "a", "url": "http://x"}, {"name": "a", "url": "http://y"}]},
            "a given twice",
        ),
        ({"max_age": "soon"}, "[notify] max_age"),
        ({"poll_interval": 0}, "[notify] poll_interval"),
    ],
)
def test_bad_notify_config_names_the_key(notify: dict[str, Any], message: str) -> None:
    """A wrong value in [notify] is a ConfigError naming the key."""
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_config({"notify": notify})


def test_notify_config_defaults() -> None:
    """Integers are seconds; a webhook asks for the halts by default, as JSON."""
    config = parse_config(
        {"notify": {"webhooks": [{"name": "a", "url": "https://h/x", "timeout": 3}]}}
    )
    [webhook] = config.notify.webhooks
    assert webhook.timeout == 3.0
    assert webhook.events == ["error", "paused", "stopped", "interrupted"]
    assert (webhook.format, webhook.retries, webhook.queues) == ("json", 3, [])
    assert config.notify.webhook("a") is webhook
    assert config.notify.webhook("b") is None


# -- the event scan ---------------------------------------------------------------------


def test_scan_reads_on_and_settles_what_it_read() -> None:
    """Ids read in order move both positions up together."""
    scan = EventScan(settled=10)
    assert scan.take([11, 12, 13], now=0.0, settle=60.0) == [11, 12, 13]
    assert (scan.settled, scan.read_to, scan.gaps) == (13, 13, {})


def test_scan_waits_for_a_gap_and_takes_it_when_it_commits() -> None:
    """A missing id is asked for again, holds `settled` below it, and is returned as new
    when it appears; what was read already is not returned twice."""
    scan = EventScan(settled=10)
    assert scan.take([11, 13, 14], now=0.0, settle=60.0) == [11, 13, 14]
    assert (scan.settled, scan.read_to) == (11, 14)
    assert scan.gaps_to_ask() == [12]
    assert scan.take([12, 13, 14, 15], now=5.0, settle=60.0) == [12, 15]
    assert (scan.settled, scan.read_to, scan.gaps) == (15, 15, {})


def test_scan_gives_a_gap_up_after_settle() -> None:
    """An id missing for `settle` seconds (a rolled-back insert) no longer holds
    `settled`; one that then appears after all is still returned."""
    scan = EventScan(settled=0)
    scan.take([1, 3], now=100.0, settle=60.0)
    scan.take([], now=159.0, settle=60.0)
    assert scan.settled == 1
    scan.take([], now=160.0, settle=60.0)
    assert (scan.settled, scan.gaps) == (3, {})


def test_scan_copy_is_independent() -> None:
    """A pass works on a copy, adopted only once its transaction committed."""
    scan = EventScan(settled=5)
    copy = scan.copy()
    copy.take([6, 8], now=0.0, settle=1.0)
    assert (scan.settled, scan.read_to, scan.gaps, scan.read) == (5, 5, {}, set())


def test_scan_keeps_a_bounded_number_of_gaps_over_a_jump_of_ids() -> None:
    """A jump of a million ids (a sequence moved on) is not a million gaps to wait for."""
    scan = EventScan(settled=0)
    scan.take([1, 1_000_002], now=0.0, settle=60.0)
    assert len(scan.gaps) <= 10_000
    scan.take([], now=61.0, settle=60.0)
    assert scan.settled == 1_000_002
