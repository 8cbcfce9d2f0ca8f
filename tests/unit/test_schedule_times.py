"""Cron expressions in a time zone, as naive UTC ticks: validation, daylight-saving days
in Europe/Paris, and what is due (on time or missed) at a given moment."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from wfed.engine.schedule_times import CronTimes, InvalidSchedule, workflow_name

PARIS = "Europe/Paris"
GRACE = timedelta(seconds=60)


@pytest.mark.parametrize(
    ("cron", "timezone", "message"),
    [
        ("0 2 * *", PARIS, "must have 5 fields"),
        ("0 2 * * * * *", PARIS, "must have 5 fields"),
        ("61 2 * * *", PARIS, "Bad minute"),
        ("0 25 * * *", PARIS, "Bad hour"),
        ("0 2 30 2 *", PARIS, "Bad day-of-month"),
        ("0 2 * * *", "Europe/Nowhere", "unknown time zone 'Europe/Nowhere'"),
        ("0 2 * * *", "../etc/passwd", "unknown time zone"),
        ("0 2 * * *", "", "give an IANA name"),
    ],
)
def test_a_bad_expression_or_zone_is_refused_naming_it(
    cron: str, timezone: str, message: str
) -> None:
    """A malformed cron expression or an unknown time zone is InvalidSchedule saying which."""
    with pytest.raises(InvalidSchedule, match=message):
        CronTimes.of(cron, timezone)


def test_ticks_are_utc_instants_of_local_times() -> None:
    """02:00 in Paris is 01:00 UTC in winter and 00:00 UTC in summer."""
    times = CronTimes.of("0 2 * * *", PARIS)
    assert times.upcoming(datetime(2026, 1, 10, 12, 0), 2) == [
        datetime(2026, 1, 11, 1, 0),
        datetime(2026, 1, 12, 1, 0),
    ]
    assert times.after(datetime(2026, 7, 10, 12, 0)) == datetime(2026, 7, 11, 0, 0)


def test_spring_forward_a_time_that_does_not_exist_fires_once_at_three() -> None:
    """On 2026-03-29 Paris goes from 02:00 CET to 03:00 CEST: a 02:30 job fires once, at
    03:00 CEST (01:00 UTC), then at 02:30 CEST on the following days."""
    times = CronTimes.of("30 2 * * *", PARIS)
    ticks = times.upcoming(datetime(2026, 3, 27, 12, 0), 4)
    assert ticks == [
        datetime(2026, 3, 28, 1, 30),  # 02:30 CET
        datetime(2026, 3, 29, 1, 0),  # 03:00 CEST: 02:30 does not exist
        datetime(2026, 3, 30, 0, 30),  # 02:30 CEST
        datetime(2026, 3, 31, 0, 30),
    ]
    assert [times.local(t).strftime("%H:%M %Z") for t in ticks[:3]] == [
        "02:30 CET",
        "03:00 CEST",
        "02:30 CEST",
    ]


def test_fall_back_a_time_that_happens_twice_fires_once() -> None:
    """On 2026-10-25 Paris goes from 03:00 CEST back to 02:00 CET, so 02:30 happens twice;
    and 01:30 the night before the change is plain. A 02:30 job fires once that day, at
    the first 02:30 (CEST)."""
    times = CronTimes.of("30 2 * * *", PARIS)
    ticks = times.upcoming(datetime(2026, 10, 24, 12, 0), 3)
    assert ticks == [
        datetime(2026, 10, 25, 0, 30),  # 02:30 CEST, the first of the two
        datetime(2026, 10, 26, 1, 30),  # 02:30 CET
        datetime(2026, 10, 27, 1, 30),
    ]


def test_fall_back_asked_during_the_repeated_hour_does_not_fire_again() -> None:
    """Asked for the next tick between the two 02:30s of the fall-back night (at 02:15
    CET, after the first 02:30 CEST), the answer is the next day: the tick already
    passed in real time is never handed back."""
    times = CronTimes.of("30 2 * * *", PARIS)
    second_two_fifteen = datetime(2026, 10, 25, 1, 15)  # 02:15 CET
    assert times.after(second_two_fifteen) == datetime(2026, 10, 26, 1, 30)
    assert times.latest(second_two_fifteen) == datetime(2026, 10, 25, 0, 30)


def test_an_hourly_job_follows_real_hours_across_the_change() -> None:
    """An hourly job runs on elapsed time: both 02:00 of the fall-back night fire."""
    times = CronTimes.of("0 * * * *", PARIS)
    ticks = times.upcoming(datetime(2026, 10, 24, 23, 30), 3)
    assert ticks == [
        datetime(2026, 10, 25, 0, 0),
        datetime(2026, 10, 25, 1, 0),
        datetime(2026, 10, 25, 2, 0),
    ]
    assert [times.local(t).strftime("%H:%M %Z") for t in ticks] == [
        "02:00 CEST",
        "02:00 CET",
        "03:00 CET",
    ]


def test_latest_agrees_with_forward_ticks_on_the_spring_forward_day() -> None:
    """The last tick at or before a moment is one forward iteration gives: 03:00 CEST on
    the spring-forward day, and the tick itself when asked at its exact instant."""
    times = CronTimes.of("30 2 * * *", PARIS)
    assert times.latest(datetime(2026, 3, 29, 12, 0)) == datetime(2026, 3, 29, 1, 0)
    assert times.latest(datetime(2026, 3, 29, 1, 0)) == datetime(2026, 3, 29, 1, 0)
    assert times.latest(datetime(2026, 3, 29, 0, 59)) == datetime(2026, 3, 28, 1, 30)


def test_due_on_time_ticks_each_fire() -> None:
    """Every tick within the grace is on time, oldest first, and the schedule goes on
    from the first tick after now."""
    times = CronTimes.of("*/10 * * * * *", "UTC")
    now = datetime(2026, 5, 1, 12, 0, 25)
    due = times.due(datetime(2026, 5, 1, 12, 0, 0), now, GRACE)
    assert due.missed is None
    assert due.on_time == [
        datetime(2026, 5, 1, 12, 0, 0),
        datetime(2026, 5, 1, 12, 0, 10),
        datetime(2026, 5, 1, 12, 0, 20),
    ]
    assert due.next_fire_at == datetime(2026, 5, 1, 12, 0, 30)


def test_due_missed_ticks_collapse_to_the_latest() -> None:
    """After three days without a daemon, a nightly job has one missed tick to tell of
    (the latest), none on time, and goes on with tomorrow's."""
    times = CronTimes.of("0 2 * * *", PARIS)
    now = datetime(2026, 5, 4, 9, 0)
    due = times.due(datetime(2026, 5, 1, 0, 0), now, GRACE)
    assert due.missed == datetime(2026, 5, 4, 0, 0)
    assert due.on_time == []
    assert due.next_fire_at == datetime(2026, 5, 5, 0, 0)


def test_due_nothing_before_the_next_tick() -> None:
    """Before its next tick a schedule has nothing due and keeps its next tick."""
    times = CronTimes.of("0 2 * * *", PARIS)
    due = times.due(datetime(2026, 5, 5, 0, 0), datetime(2026, 5, 4, 23, 59), GRACE)
    assert (due.missed, due.on_time, due.next_fire_at) == (None, [], datetime(2026, 5, 5, 0, 0))


def test_workflow_names_carry_the_tick_in_utc() -> None:
    """A tick's workflow is named after the schedule and the tick (seconds for 6 fields)."""
    tick = datetime(2026, 11, 30, 1, 0, 5)
    assert workflow_name("backup", tick, seconds=False) == "backup-20261130T0100Z"
    assert workflow_name("backup", tick, seconds=True) == "backup-20261130T010005Z"


def test_a_six_field_job_at_a_fixed_time_follows_the_same_daylight_saving_rules() -> None:
    """With a seconds field, a job at a fixed time of day still fires once on both days:
    at 03:00:05 CEST when 02:30:05 does not exist, at the first 02:30:05 when it happens
    twice."""
    times = CronTimes.of("5 30 2 * * *", PARIS)
    assert times.upcoming(datetime(2026, 3, 28, 12, 0), 2) == [
        datetime(2026, 3, 29, 1, 0, 5),
        datetime(2026, 3, 30, 0, 30, 5),
    ]
    assert times.upcoming(datetime(2026, 10, 24, 12, 0), 2) == [
        datetime(2026, 10, 25, 0, 30, 5),
        datetime(2026, 10, 26, 1, 30, 5),
    ]
    assert times.latest(datetime(2026, 3, 29, 1, 0, 4)) == datetime(2026, 3, 28, 1, 30, 5)
    assert times.latest(datetime(2026, 3, 29, 1, 0, 5)) == datetime(2026, 3, 29, 1, 0, 5)
