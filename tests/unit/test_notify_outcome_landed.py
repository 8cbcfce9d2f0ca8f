"""After a lost reply to the write of a POST's outcome, the notifier reads the delivery
back and decides from the row whether its write landed: it must tell its own write from
a row still under its claim and from another daemon's later attempt."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from wfed.daemon.notifier import Outcome
from wfed.store.notifications import DeliveryRow

AT = datetime(2026, 11, 30, 6, 0, 0, 123456, tzinfo=UTC)
CLAIMED = DeliveryRow(
    id=7,
    event_id=70,
    target="oncall",
    state="pending",
    attempts=1,
    next_attempt_at=AT - timedelta(seconds=5),
    claimed_by="d1",
    claimed_until=AT + timedelta(seconds=40),
    last_error="HTTP 500",
    created_at=AT - timedelta(minutes=1),
    sent_at=None,
)


def test_a_sent_outcome_landed_when_the_row_is_sent_at_its_time() -> None:
    outcome = Outcome(CLAIMED, "d1", AT, None, None)
    row = replace(CLAIMED, state="sent", attempts=2, claimed_by=None, sent_at=AT)
    assert outcome.landed_in(row)


def test_a_row_still_claimed_did_not_take_the_write() -> None:
    assert not Outcome(CLAIMED, "d1", AT, None, None).landed_in(CLAIMED)


def test_another_daemons_later_send_is_not_this_write() -> None:
    outcome = Outcome(CLAIMED, "d1", AT, None, None)
    later = AT + timedelta(seconds=41)
    assert not outcome.landed_in(
        replace(CLAIMED, state="sent", attempts=2, claimed_by=None, sent_at=later)
    )
    assert not outcome.landed_in(
        replace(CLAIMED, state="sent", attempts=3, claimed_by=None, sent_at=AT)
    )


def test_a_retry_landed_when_the_row_is_due_at_its_retry_time() -> None:
    retry_at = AT + timedelta(seconds=10)
    outcome = Outcome(CLAIMED, "d1", AT, "HTTP 502", retry_at)
    written = replace(CLAIMED, attempts=2, claimed_by=None, next_attempt_at=retry_at)
    assert outcome.landed_in(written)
    assert not outcome.landed_in(replace(written, next_attempt_at=AT))


def test_a_pruned_delivery_is_no_landed_write() -> None:
    assert not Outcome(CLAIMED, "d1", AT, None, None).landed_in(None)
